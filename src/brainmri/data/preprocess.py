"""Preprocessing shared by every method: crop to the head, resize, normalise.

Each step is optional; the :class:`Preprocess` settings are written next to
every result so a run can be repeated exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from brainmri.errors import ConfigError, DataError


@dataclass(frozen=True)
class Preprocess:
    """Settings of the shared preprocessing.

    Parameters
    ----------
    crop : bool
        Crop to the bounding box of the largest connected component above an
        Otsu threshold (the head), removing empty background and labels.
    size : int or None
        Resize to ``size x size`` pixels; None keeps the (cropped) size.
    clip_percentiles : tuple of float or None
        Clip intensities to these percentiles, then scale to [0, 1]. None
        only scales min..max to [0, 1].

    Attributes
    ----------
    version : int
        Version of the preprocessing code, part of the feature cache key
        (not a setting). Bump it in every change of :func:`crop_to_head`,
        :func:`resize`, :func:`normalize_intensity` or ``__call__`` that
        alters the output for some image, so cached features of the old
        code are never read; ``tests/features/test_versions.py`` fails
        when the output of a fixed image changes and the version does not.
    """

    version: ClassVar[int] = 1

    crop: bool = True
    size: int | None = 224
    clip_percentiles: tuple[float, float] | None = (0.5, 99.5)

    def __post_init__(self):
        if self.size is not None and (not isinstance(self.size, int) or self.size < 8):
            raise ConfigError(f"preprocess size must be an integer >= 8 or None, got {self.size!r}")
        if self.clip_percentiles is not None:
            low, high = self.clip_percentiles
            if not 0 <= low < high <= 100:
                raise ConfigError(f"clip percentiles must satisfy 0 <= low < high <= 100, got {self.clip_percentiles!r}")

    def to_dict(self) -> dict:
        return asdict(self)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Apply the steps to one 2D image.

        Parameters
        ----------
        image : ndarray, shape (H, W)

        Returns
        -------
        ndarray of float32, shape (size, size) or cropped shape, values in [0, 1]
        """
        if image.ndim != 2:
            raise DataError(
                f"expected a 2D slice, got an array of shape {image.shape}; "
                "3D volumes need a 3D method or slicing first"
            )
        image = np.asarray(image, dtype=np.float32)
        if self.crop:
            image = crop_to_head(image)
        if self.size is not None and image.shape != (self.size, self.size):
            image = resize(image, self.size)
        return normalize_intensity(image, self.clip_percentiles)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear, antialiased resize to ``size x size`` (float32).

    Pillow's float ("F") resize is used rather than ``skimage.transform.resize``
    because it is an order of magnitude faster and antialiases as well.
    """
    from PIL import Image

    return np.asarray(Image.fromarray(np.asarray(image, dtype=np.float32), mode="F").resize((size, size), Image.BILINEAR))


def otsu_threshold(image: np.ndarray) -> float:
    """Otsu's threshold from a 256-bin histogram (scikit-image's ``threshold_otsu``).

    The histogram is built with ``np.bincount`` and handed to scikit-image,
    which is 5x cheaper than letting it call ``np.histogram`` on floats.

    >>> otsu_threshold(np.array([[0.0, 0.0], [1.0, 1.0]])) < 1.0
    True
    """
    from skimage.filters import threshold_otsu

    low, high = float(image.min()), float(image.max())
    if high == low:
        return low
    scale = 255.0 / (high - low)
    counts = np.bincount(((image - low) * scale).astype(np.int64).ravel(), minlength=256)[:256]
    centers = low + (np.arange(256) + 0.5) / scale
    return float(threshold_otsu(hist=(counts, centers)))


def crop_to_head(image: np.ndarray, margin: int = 2) -> np.ndarray:
    """Crop to the bounding box of the largest bright connected component (:func:`head_box`).

    Returns ``image`` itself when no head is found.

    >>> img = np.zeros((10, 10)); img[3:6, 4:8] = 1.0
    >>> crop_to_head(img, margin=0).shape
    (3, 4)
    """
    box = head_box(image, margin)
    return image if box is None else image[box]


def head_box(image: np.ndarray, margin: int = 2) -> tuple[slice, ...] | None:
    """Bounding box of the largest bright connected component (the head), one slice per axis.

    None when the image is constant or the component is tiny (under 1% of
    the image), which would mean the threshold found no head. Images of
    128 px and more are searched at half resolution (the box is then
    accurate to 2 px, within the margin). Explanations crop lesion masks
    with the box of their image, so that masks and maps stay aligned. The
    same code boxes 2D slices and 3D volumes (:mod:`brainmri.data.volumes`).

    >>> img = np.zeros((10, 10)); img[3:6, 4:8] = 1.0
    >>> head_box(img, margin=0)
    (slice(3, 6, None), slice(4, 8, None))
    """
    from scipy import ndimage

    if image.min() == image.max():
        return None
    step = 2 if min(image.shape) >= 128 else 1
    small = image[(slice(None, None, step),) * image.ndim]
    labels, n = ndimage.label(small > otsu_threshold(small), structure=np.ones((3,) * image.ndim))
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = int(sizes.argmax())
    if sizes[largest] < 0.01 * small.size:
        return None
    box = ndimage.find_objects(labels, max_label=largest)[largest - 1]
    return tuple(slice(max(axis.start * step - margin, 0), min(axis.stop * step + margin, side))
                 for axis, side in zip(box, image.shape))


def normalize_intensity(image: np.ndarray, clip_percentiles: tuple[float, float] | None = (0.5, 99.5)) -> np.ndarray:
    """Clip to percentiles (optional) and scale to [0, 1] as float32.

    >>> normalize_intensity(np.array([[0.0, 5.0], [10.0, 20.0]]), None).tolist()
    [[0.0, 0.25], [0.5, 1.0]]
    """
    if clip_percentiles is not None:
        # Percentiles of every second row and column: 4x cheaper, same values to within noise.
        low, high = np.percentile(image[::2, ::2] if min(image.shape) >= 64 else image, clip_percentiles)
    else:
        low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros(image.shape, dtype=np.float32)
    return ((np.clip(image, low, high) - low) / (high - low)).astype(np.float32)
