"""Preprocessing shared by every method: crop to the head, resize, normalise.

Each step is optional; the :class:`Preprocess` settings are written next to
every result so a run can be repeated exactly.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

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
    """

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
            from skimage.transform import resize

            image = resize(image, (self.size, self.size), order=1, anti_aliasing=True, preserve_range=True)
        return normalize_intensity(image, self.clip_percentiles)


def crop_to_head(image: np.ndarray, margin: int = 2) -> np.ndarray:
    """Crop to the bounding box of the largest bright connected component.

    Returns the image unchanged when it is constant or the component is tiny
    (under 1% of the image), which would mean the threshold found no head.

    >>> img = np.zeros((10, 10)); img[3:6, 4:8] = 1.0
    >>> crop_to_head(img, margin=0).shape
    (3, 4)
    """
    from skimage.filters import threshold_otsu
    from skimage.measure import label, regionprops

    if image.min() == image.max():
        return image
    mask = image > threshold_otsu(image)
    labels = label(mask, connectivity=2)
    regions = regionprops(labels)
    if not regions:
        return image
    largest = max(regions, key=lambda r: r.area)
    if largest.area < 0.01 * image.size:
        return image
    r0, c0, r1, c1 = largest.bbox
    r0, c0 = max(r0 - margin, 0), max(c0 - margin, 0)
    r1, c1 = min(r1 + margin, image.shape[0]), min(c1 + margin, image.shape[1])
    return image[r0:r1, c0:c1]


def normalize_intensity(image: np.ndarray, clip_percentiles: tuple[float, float] | None = (0.5, 99.5)) -> np.ndarray:
    """Clip to percentiles (optional) and scale to [0, 1] as float32.

    >>> normalize_intensity(np.array([[0.0, 5.0], [10.0, 20.0]]), None).tolist()
    [[0.0, 0.25], [0.5, 1.0]]
    """
    if clip_percentiles is not None:
        low, high = np.percentile(image, clip_percentiles)
    else:
        low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros(image.shape, dtype=np.float32)
    return ((np.clip(image, low, high) - low) / (high - low)).astype(np.float32)
