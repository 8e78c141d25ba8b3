"""Read MRI images and volumes into float32 arrays with their metadata.

One entry point, :func:`read_image`, dispatches on the file type:

* 2D images (PNG, JPEG, BMP, TIFF), 8- or 16-bit, grayscale or RGB holding
  grayscale content, through Pillow;
* DICOM through pydicom (rescale slope/intercept applied, MONOCHROME1
  inverted, multi-frame files returned as a stack of slices), and a DICOM
  series (a folder of slices) as one volume (:mod:`brainmri.data.dicom`);
* NIfTI through nibabel (3D volumes as volumes, their voxel axes put in
  RAS+ order by ``nibabel.as_closest_canonical`` so that volumes stored
  with other orientations line up; :func:`volume_slices` cuts 2D slices
  along a chosen axis). A volume whose voxels are all 0 is refused.

Every failure is a :class:`~brainmri.errors.DataError` whose message names the
file and says what to do.

Every image is checked against a pixel limit before it is decoded, from its
header (:data:`MAX_PIXELS`, or ``max_pixels=``; ``--max-pixels`` on the
command line; voxels for a volume): a PNG of 30000 x 30000 pixels takes
855 KB on disk and about 3.6 GB once decoded to float32, the classic
decompression bomb, and a 900 KB ``.nii.gz`` can declare as much. Pillow's own guard
(``Image.MAX_IMAGE_PIXELS``) raises an exception that is not a brainmri error
and warns at half its limit; this module applies its own limit instead, so
a bomb is one unreadable file with a clear reason.
"""

from __future__ import annotations

import errno
import os
import stat
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from brainmri.data.dicom import find_series, read_dicom_file, read_series
from brainmri.data.formats import SUPPORTED_SUFFIXES, ImageMeta, check_pixel_count, image_format, one_line
from brainmri.errors import ConfigError, DataError

#: Default pixel limit of a 2D image (width x height); larger images are refused
#: undecoded. 200 MP is ten times a 4096 x 4096 scan; an image above half the
#: limit is read but reported (see :func:`brainmri.data.scan.scan_dataset`).
MAX_PIXELS = 200_000_000


#: Smallest side, in pixels, of an image that brainmri reads as a scan (for a volume: of its two largest
#: sides). The smallest MRI slices in public sets are 128 px.
MIN_SIDE = 16


def degenerate_reason(array: np.ndarray) -> str | None:
    """Why an image as read cannot be an MRI scan, or None when it can be one.

    Two kinds are refused wherever brainmri reads images to learn from or to
    predict (audit, benchmark, train, predict, explain, serve): an image with
    a side below :data:`MIN_SIDE` pixels (icons, placeholders, thumbnails),
    and a uniform one (every pixel the same: a blank export, an empty
    slice), which holds no anatomy and would get a confident class.

    >>> degenerate_reason(np.zeros((64, 64)))
    'blank image: every pixel is 0 (no anatomy); remove it'
    >>> degenerate_reason(np.zeros((1, 200)))
    '1x200 image is too small to be an MRI slice (a side below 16 px); remove it'
    >>> degenerate_reason(np.eye(64)) is None
    True
    """
    if array.ndim >= 2 and sorted(array.shape)[-2] < MIN_SIDE:
        return f"{'x'.join(map(str, array.shape))} image is too small to be an MRI slice (a side below {MIN_SIDE} px); remove it"
    if array.size and array.min() == array.max():
        return f"blank image: every {'voxel' if array.ndim == 3 else 'pixel'} is {float(array.flat[0]):g} (no anatomy); remove it"
    return None


def check_max_pixels(max_pixels) -> int:
    """Validate a pixel limit (``--max-pixels``) and return it.

    >>> check_max_pixels(1000)
    1000
    """
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, (int, np.integer)) or max_pixels < 1:
        raise ConfigError(f"--max-pixels must be a positive integer (pixels of one image), got {max_pixels!r}")
    return int(max_pixels)


def size_and_channels(shape: tuple[int, ...], mode: str) -> tuple[str, str]:
    """Size and channel count of an image as stored (its ``original_shape`` and ``mode``), as text.

    A volume's size names its three sides; a 2D image's its first two, and
    a third axis counts channels.

    >>> size_and_channels((256, 256, 3), "RGB"), size_and_channels((91, 109, 91), "volume")
    (('256x256', '3'), ('91x109x91', '1'))
    """
    if item_kind(shape, mode) == "volumes":
        return "x".join(str(side) for side in shape if side > 1), "1"
    return "x".join(map(str, shape[:2])), str(shape[2] if len(shape) == 3 else 1)


def item_kind(shape: tuple[int, ...], mode: str) -> str:
    """``"volumes"`` for a NIfTI volume (three sides above 1), else ``"slices"``.

    >>> item_kind((91, 109, 91), "volume"), item_kind((64, 64, 1), "volume"), item_kind((3, 64, 64), "MONOCHROME2")
    ('volumes', 'slices', 'slices')
    """
    return "volumes" if mode == "volume" and sum(side > 1 for side in shape) == 3 else "slices"


def read_image(path: str | Path, *, max_pixels: int | None = None) -> tuple[np.ndarray, ImageMeta]:
    """Read one image or volume.

    Parameters
    ----------
    path : str or Path
        A PNG, JPEG, BMP, TIFF, DICOM or NIfTI file, or a DICOM series: a
        folder holding one, or ``folder/<SeriesInstanceUID>``
        (:mod:`brainmri.data.dicom`).
    max_pixels : int, optional
        Refuse images with more pixels than this (a volume: voxels; a
        multi-frame DICOM: frames x pixels), from the file's header before
        decoding it; defaults to :data:`MAX_PIXELS`.

    Returns
    -------
    array : ndarray of float32
        ``(H, W)`` for 2D images and single-frame DICOM, ``(frames, H, W)``
        for multi-frame DICOM, ``(X, Y, Z)`` in RAS+ order for NIfTI volumes
        and DICOM series. Values keep
        their stored scale (0-255 for 8-bit, 0-65535 for 16-bit, physical
        units for DICOM after rescale).
    meta : ImageMeta

    Raises
    ------
    DataError
        The file is missing, a symlink loop, not readable by this user, of an
        unsupported type, truncated or corrupt, too large (``max_pixels``),
        made of several frames (GIF, APNG, multi-page TIFF), holds colour
        content, has no pixel data or contains NaNs; a DICOM series that is
        4D, mixed, has missing slices or no geometry.
    ConfigError
        ``max_pixels`` is not a positive integer.
    """
    path = Path(path)
    max_pixels = check_max_pixels(MAX_PIXELS if max_pixels is None else max_pixels)
    series = find_series(path)
    array, meta = read_series(series, max_pixels) if series is not None else _read_file(path, max_pixels)
    if not np.all(np.isfinite(array)):
        raise DataError(f"{path}: contains NaN or infinite values; fix or remove the file")
    return array, meta


def _read_file(path: Path, max_pixels: int) -> tuple[np.ndarray, ImageMeta]:
    problem = file_problem(path)
    if problem:
        raise DataError(f"{path}: {problem}")
    kind = image_format(path)
    if kind is None:
        raise DataError(
            f"{path}: not a supported image type ({path.suffix or 'no suffix'}); "
            f"use one of {', '.join(SUPPORTED_SUFFIXES)} or remove the file"
        )
    if kind == "nifti":
        return _read_nifti(path, kind, max_pixels)
    if kind == "dicom":
        return read_dicom_file(path, max_pixels)
    return _read_pil(path, kind, max_pixels)


def file_problem(path: str | Path) -> str | None:
    """Why ``path`` cannot be opened as a file, or None when it can.

    Tells apart a missing file, a symlink that loops or points nowhere, a
    folder, and a file without read permission: each has another fix.

    >>> file_problem("no/such/file.png")
    'file not found; check the path'
    """
    path = Path(path)
    try:
        kind = os.stat(path).st_mode
        if stat.S_ISDIR(kind):
            return "a folder, not an image file"
        if not stat.S_ISREG(kind):
            # Opening a FIFO waits for a writer, forever; a device may never end.
            what = "a FIFO (named pipe)" if stat.S_ISFIFO(kind) else "a socket" if stat.S_ISSOCK(kind) else "a device"
            return f"{what}, not a regular file; skipped, remove it from the dataset"
        with open(path, "rb"):
            return None
    except PermissionError:
        return "permission denied; make the file readable (chmod a+r) or remove it from the dataset"
    except IsADirectoryError:
        return "a folder, not an image file"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return "symlink loop (the link leads back to itself); point it at a real file or remove it"
        if path.is_symlink():
            return f"broken symlink to {os.readlink(path)}; point it at a real file or remove it"
        return "file not found; check the path"


def volume_slices(volume: np.ndarray, axis: int = 2) -> list[np.ndarray]:
    """Cut a 3D volume into 2D slices along ``axis``.

    >>> [s.shape for s in volume_slices(np.zeros((4, 5, 2)), axis=2)]
    [(4, 5), (4, 5)]
    """
    if volume.ndim != 3:
        raise DataError(f"expected a 3D volume, got an array of shape {volume.shape}")
    if axis not in (0, 1, 2):
        raise DataError(f"slice axis must be 0, 1 or 2, got {axis}")
    return [np.take(volume, i, axis=axis) for i in range(volume.shape[axis])]


#: Bits per sample of Pillow modes whose array dtype does not tell it.
_PIL_BIT_DEPTH = {"1": 1, "I;16": 16, "I;16B": 16, "I;16L": 16, "I;16N": 16}


@contextmanager
def _own_pixel_limit():
    """Switch off Pillow's global decompression-bomb guard while this module checks its own limit.

    Pillow reads ``Image.MAX_IMAGE_PIXELS`` at open time and cannot take a
    limit per call; the previous value is restored on exit. Not thread-safe
    (brainmri reads in worker processes, not threads).
    """
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _read_pil(path: Path, kind: str, max_pixels: int) -> tuple[np.ndarray, ImageMeta]:
    from PIL import Image, UnidentifiedImageError

    try:
        with _own_pixel_limit(), Image.open(path) as im:
            width, height = im.size
            check_pixel_count(path, (width, height), max_pixels)
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                raise DataError(
                    f"{path}: multi-frame image ({frames} frames, {im.format}); only its first frame would be read, "
                    "so export one slice per file"
                )
            mode = im.mode
            im.load()
            if mode in ("P", "PA", "CMYK"):
                # Stored values are palette indices or ink, not intensities.
                im = im.convert("RGBA" if mode == "PA" or "transparency" in im.info else "RGB")
            array = np.asarray(im)
    except UnidentifiedImageError:
        raise DataError(f"{path}: not a readable {kind.upper()} image; re-export or remove it") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise DataError(
            f"{path}: cannot decode ({one_line(exc)}); the file is truncated or corrupt, re-export or remove it"
        ) from None
    original_shape = array.shape
    bit_depth = _PIL_BIT_DEPTH.get(mode, 8 * array.dtype.itemsize)
    if array.ndim == 3:
        array = _gray_from_channels(array, path, mode)
    return array.astype(np.float32, copy=False), ImageMeta(str(path), kind, tuple(original_shape), mode, bit_depth)


def _gray_from_channels(array: np.ndarray, path: Path, mode: str) -> np.ndarray:
    """Reduce RGB(A) holding grayscale content to one channel (the channel mean); LA keeps L.

    MRI exported as RGB JPEG carries the same value in every channel up to
    compression noise; real colour content (a coloured overlay, a photo) would
    silently change the data, so it is refused. The check looks at every
    fourth row and column, which is plenty to see colour and 16x cheaper.
    """
    if array.shape[-1] == 2:  # LA: gray plus alpha
        return array[..., 0].astype(np.float32)
    sample = array[::4, ::4, :3].astype(np.float32)
    spread = float(np.abs(sample - sample.mean(axis=-1, keepdims=True)).mean())
    if spread > 8.0:
        raise DataError(
            f"{path}: {mode} image with colour content (mean channel spread {spread:.1f}); "
            "brainmri expects grayscale MRI, convert or remove it"
        )
    rgb = array[..., :3]
    return (rgb[..., 0].astype(np.float32) + rgb[..., 1] + rgb[..., 2]) / 3.0


def _read_nifti(path: Path, kind: str, max_pixels: int) -> tuple[np.ndarray, ImageMeta]:
    import nibabel as nib
    from nibabel.filebasedimages import ImageFileError

    try:
        img = nib.load(path)
        original_shape = tuple(img.shape)
        check_pixel_count(path, original_shape, max_pixels)  # from the header, before anything is decompressed
        if len(original_shape) == 3 and min(original_shape) > 1:
            img = nib.as_closest_canonical(img)  # volumes in RAS+ voxel order: axis flips and swaps, no resampling
        array = np.asarray(img.get_fdata(dtype=np.float32))
    except (ImageFileError, OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable NIfTI file ({one_line(exc)}); re-export or remove it") from None
    array = np.squeeze(array)
    if array.ndim not in (2, 3):
        raise DataError(
            f"{path}: NIfTI of shape {original_shape} is not a 2D slice or 3D volume; split 4D series first"
        )
    if array.ndim == 3 and not array.any():
        raise DataError(
            f"{path}: every voxel of this volume is 0 (a failed conversion or an empty mask?); re-export or remove it"
        )
    zooms = tuple(float(z) for z in img.header.get_zooms()[: array.ndim])
    bits = int(img.header.get_data_dtype().itemsize * 8)
    return array, ImageMeta(str(path), kind, tuple(original_shape), "volume", bits, zooms)
