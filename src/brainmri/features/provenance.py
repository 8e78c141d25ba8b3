"""What an image file says besides its anatomy: export, acquisition, contrast and background.

A classifier can reach a high score on a collection by learning where each
class's images came from rather than what a tumour looks like: the file
format, mode and JPEG tables of each source, its scanner's noise, its MR
sequence, or the text and borders around the head (Zech et al. 2018; DeGrave
et al. 2021). :func:`file_properties` measures those things for one file so
that :mod:`brainmri.evaluation.shortcuts` can ask how well they alone predict
the labels.

Groups of properties (:data:`GROUPS`):

==============  ===================================================================
group           properties
==============  ===================================================================
file metadata   format, mode, height, width, bit depth, stored bytes per pixel,
                JPEG quantisation (mean of the luminance and chrominance tables,
                number of tables, chroma subsampling; -1 when not a JPEG)
acquisition     the acquisition descriptors of
                :class:`~brainmri.features.acquisition.AcquisitionDescriptors`
                that describe the export and the scanner, not the tissue: noise,
                JPEG blockiness, ghosts, number of grey levels, background level
contrast        an estimate of the sequence from the intensities: the median of
                the head's central fifth over the head's median (ventricles and
                CSF are bright on T2-weighted slices and dark on T1-weighted
                ones), the share of the head darker than a quarter of its 99th
                percentile, the skewness of the head's intensities, and the
                other descriptors (the head's quantiles, sharpness, high
                frequencies). A lesion moves all of these, so this group is
                *informational* (:data:`INFORMATIONAL`): its score is reported,
                never flagged as a shortcut by itself
background      the image with the head (dilated by 4% of the frame) replaced by the
                background's median: its 16x16 thumbnail; the share of black
                background, the mean of
                the outer 2-pixel ring, the share of background brighter than the
                head's median (text, markers), the head's area share and its
                offset from the frame's centre
==============  ===================================================================

Everything is measured on the image as read, scaled to [0, 1] by its own
minimum and maximum (a 3D volume by its middle slice along the last axis).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainmri.data.head import head_mask
from brainmri.data.io import read_image
from brainmri.data.preprocess import resize
from brainmri.errors import DataError
from brainmri.features.acquisition import AcquisitionDescriptors

#: Side of the background thumbnail.
BACKGROUND_THUMB = 16
#: Categorical properties and their per-class breakdown in the audit.
CATEGORICAL = ("format", "mode", "size", "bit_depth", "jpeg_tables", "contrast_class", "background_class")
_FILE = ["format", "mode", "height", "width", "bit_depth", "bytes_per_pixel", "jpeg_luma_q", "jpeg_chroma_q"]
_FILE += ["jpeg_n_tables", "jpeg_subsampling"]
_DESCRIPTORS = AcquisitionDescriptors().fit()
_ACQUISITION = [f"acq_{name}" for name in _DESCRIPTORS.get_feature_names_out()]
#: Descriptors of the export and the scanner, which a lesion does not change (noise, JPEG blocks, ghosts, grey
#: levels, the background's level); the head's quantiles, sharpness and high frequencies move with the lesion.
_EXPORT = [f"acq_{name}" for name in ("bg_mean", "bg_std", "noise", "blockiness", "ghost_half", "ghost_quarter")]
_EXPORT += ["acq_grey_levels"]
_CONTRAST = ["centre_to_head", "dark_head_share", "head_skewness"]
_CONTRAST += [name for name in _ACQUISITION if name not in _EXPORT]
_BACKGROUND = ["black_background_share", "border_mean", "bright_background_share", "head_area_share"]
_BACKGROUND += ["head_offset_x", "head_offset_y"]
_BACKGROUND += [f"bg_pixel_{k}" for k in range(BACKGROUND_THUMB * BACKGROUND_THUMB)]
#: The property groups, each a list of column names of :attr:`FileProperties.values`.
GROUPS = {"file metadata": _FILE, "acquisition": _EXPORT, "background": _BACKGROUND, "contrast": _CONTRAST}
#: Groups that anatomy moves too (a bright lesion brightens the head and its centre): their score is reported, but
#: a score above chance is not by itself a shortcut.
INFORMATIONAL = ("contrast",)
#: Every column, in order.
NAMES = _FILE + _ACQUISITION + _CONTRAST[:3] + _BACKGROUND


@dataclass(frozen=True)
class FileProperties:
    """The properties of one file: ``values`` (float32, one per :data:`NAMES`) and ``labels`` (the categorical ones
    as text, for the per-class breakdown)."""

    values: np.ndarray
    labels: dict[str, str]


def file_properties(path: str | Path, *, max_pixels: int | None = None) -> FileProperties:
    """Measure one file (see the module docstring).

    Raises
    ------
    DataError
        When the file cannot be read (as :func:`~brainmri.data.io.read_image`).
    """
    path = Path(path)
    array, meta = read_image(path, max_pixels=max_pixels)
    plane = array if array.ndim == 2 else np.take(array, array.shape[-1] // 2, axis=-1)
    plane = np.asarray(plane, dtype=np.float32)
    low, span = float(plane.min()), float(plane.max() - plane.min())
    x = (plane - low) / span if span > 0 else np.zeros_like(plane)
    height, width = plane.shape
    tables = _jpeg_tables(path) if meta.format == "jpeg" else None
    luma, chroma, n_tables, sampling = tables if tables else (-1.0, -1.0, 0, -1)
    file_values = [
        _code(meta.format),
        _code(meta.mode),
        height,
        width,
        meta.bit_depth,
        path.stat().st_size / max(height * width, 1),
        luma,
        chroma,
        n_tables,
        sampling,
    ]
    acquisition = _DESCRIPTORS.transform([x])[0]
    head = head_mask(x) if span > 0 else np.ones(x.shape, dtype=bool)
    contrast, centre_ratio = _contrast(x, head)
    background, black_share = _background(x, head)
    labels = {
        "format": meta.format,
        "mode": meta.mode,
        "size": f"{height}x{width}",
        "bit_depth": str(meta.bit_depth),
        "jpeg_tables": f"luma {luma:.0f}, chroma {chroma:.0f}" if tables else "not a JPEG",
        "contrast_class": "bright centre (T2-like)" if centre_ratio > 1 else "dark centre (T1-like)",
        "background_class": "black" if black_share >= 0.5 else "not black",
    }
    values = np.concatenate([np.asarray(file_values, dtype=np.float64), acquisition, contrast, background])
    return FileProperties(np.nan_to_num(values).astype(np.float32), labels)


def _code(text: str) -> float:
    """A stable number for a category (the classifier's trees split on it; the value itself means nothing)."""
    import zlib

    return float(zlib.crc32(text.encode()) % 1_000_003)


def _jpeg_tables(path: Path) -> tuple[float, float, int, int] | None:
    """Mean luminance and chrominance quantisation step, number of tables and chroma subsampling of a JPEG."""
    from PIL import Image, JpegImagePlugin

    try:
        with Image.open(path) as im:
            tables = getattr(im, "quantization", None) or {}
            sampling = JpegImagePlugin.get_sampling(im)
    except (OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"{path}: cannot read its JPEG tables ({exc}); re-export or remove it") from None
    if not tables:
        return None
    means = [float(np.mean(tables[k])) for k in sorted(tables)]
    return means[0], (means[1] if len(means) > 1 else -1.0), len(means), int(sampling)


def _contrast(x: np.ndarray, head: np.ndarray) -> tuple[np.ndarray, float]:
    inside = x[head] if head.any() else x.ravel()
    rows, cols = np.nonzero(head) if head.any() else np.indices(x.shape).reshape(2, -1)
    r0, r1, c0, c1 = rows.min(), rows.max() + 1, cols.min(), cols.max() + 1
    dr, dc = (r1 - r0) * 2 // 5, (c1 - c0) * 2 // 5
    centre = x[r0 + dr : r1 - dr, c0 + dc : c1 - dc]
    median = float(np.median(inside))
    ratio = float(np.median(centre)) / median if centre.size and median > 0 else 1.0
    dark = float((inside < 0.25 * np.percentile(inside, 99)).mean())
    std = float(inside.std())
    skew = float(((inside - inside.mean()) ** 3).mean() / std**3) if std > 0 else 0.0
    return np.array([ratio, dark, skew]), ratio


def _background(x: np.ndarray, head: np.ndarray) -> tuple[np.ndarray, float]:
    from scipy import ndimage

    grow = max(1, round(0.04 * max(x.shape)))
    near_head = ndimage.maximum_filter(head, size=2 * grow + 1) if head.any() and not head.all() else head
    outside = x[~near_head]
    black = float((outside <= 1 / 255).mean()) if outside.size else 0.0
    ring = np.r_[x[:2].ravel(), x[-2:].ravel(), x[:, :2].ravel(), x[:, -2:].ravel()]
    median = float(np.median(x[head])) if head.any() else 0.5
    bright = float((outside > median).mean()) if outside.size else 0.0
    rows, cols = np.nonzero(head)
    offset_y = (rows.mean() / x.shape[0] - 0.5) if rows.size else 0.0
    offset_x = (cols.mean() / x.shape[1] - 0.5) if cols.size else 0.0
    # The head is filled with the background's median, not black: a black hole would show the head's outline
    # (its size, the view plane), which is not what this group measures.
    fill = float(np.median(outside)) if outside.size else 0.0
    thumb = resize(np.where(near_head, fill, x), BACKGROUND_THUMB).ravel()
    stats = [black, float(ring.mean()), bright, float(head.mean()), offset_x, offset_y]
    return np.concatenate([stats, thumb]), black
