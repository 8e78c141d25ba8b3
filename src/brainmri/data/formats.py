"""What every reader shares: the supported file types, :class:`ImageMeta` and the pixel limit's check.

The lowest module of the readers: :mod:`brainmri.data.io` (one image file),
:mod:`brainmri.data.dicom` (DICOM files and series) and the callers that
only need a file's type import from here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from brainmri.errors import DataError

PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")
SUPPORTED_SUFFIXES = PIL_SUFFIXES + DICOM_SUFFIXES + NIFTI_SUFFIXES


@dataclass(frozen=True)
class ImageMeta:
    """What is known about an image besides its pixels.

    Attributes
    ----------
    path : str
        The file read (for a DICOM series: its folder, or ``folder/<SeriesInstanceUID>``).
    format : str
        ``"png"``, ``"jpeg"``, ``"bmp"``, ``"tiff"``, ``"dicom"`` or ``"nifti"``.
    original_shape : tuple of int
        Shape of the array as stored (before any channel reduction; a DICOM
        series: rows, columns, slices).
    mode : str
        Pillow mode (``"L"``, ``"RGB"``, ``"I;16"``...), DICOM photometric
        interpretation, or ``"volume"`` for NIfTI volumes and DICOM series.
    bit_depth : int
        Bits per stored sample (8, 16, 32...).
    spacing : tuple of float or None
        Pixel or voxel spacing in mm where the file records it.
    """

    path: str
    format: str
    original_shape: tuple[int, ...]
    mode: str
    bit_depth: int
    spacing: tuple[float, ...] | None = None
    extra: dict = field(default_factory=dict, compare=False)


def image_format(path: str | Path) -> str | None:
    """Return the reader name for ``path`` from its suffix, or None if unsupported.

    >>> image_format("a/b/scan.nii.gz"), image_format("x.JPG"), image_format("notes.txt")
    ('nifti', 'jpeg', None)
    """
    name = str(path).lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    for suffix in PIL_SUFFIXES:
        if name.endswith(suffix):
            return {"jpg": "jpeg", "tif": "tiff"}.get(suffix[1:], suffix[1:])
    return None


def one_line(exc: BaseException) -> str:
    """A library's own message, on one line (nibabel's span two), for our one-line errors."""
    return " ".join(str(exc).split())


def check_pixel_count(path: Path, shape: tuple[int, ...], max_pixels: int) -> None:
    """Refuse, from its header's ``shape``, an image whose pixels (voxels, frames x pixels) exceed ``max_pixels``.

    Raises
    ------
    DataError
        The message names the file, its size and the option that raises the limit.
    """
    count = int(np.prod([int(side) for side in shape], dtype=np.int64)) if len(shape) else 0
    if count > max_pixels:
        what = "values" if len([side for side in shape if side > 1]) > 2 else "pixels"
        raise DataError(
            f"{path}: {'x'.join(map(str, shape))} image has {count:,} {what}, above the limit of {max_pixels:,} "
            f"(a decompression bomb, or a scan larger than expected); remove it, or raise the limit with "
            f"--max-pixels {count}"
        )
