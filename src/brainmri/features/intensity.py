"""First-order intensity statistics, gray-level histogram and Otsu-threshold features."""

from __future__ import annotations

import numpy as np

from brainmri.data.head import otsu_threshold
from brainmri.features.base import ImageTransformer

_PERCENTILES = (1, 10, 25, 50, 75, 90, 99)


class IntensityFeatures(ImageTransformer):
    """First-order statistics and a normalised gray-level histogram.

    Gray-level and histogram features as in Zhan et al. (2013), "Automatic
    detection of abnormal brain MR images using texture, gray-level and
    histogram features" (see :mod:`brainmri.models.classical`).

    Parameters
    ----------
    bins : int
        Histogram bins over [0, 1]; 0 leaves the histogram out.

    Output: mean, std, skewness, kurtosis, entropy (of a 256-level histogram),
    7 percentiles (to 1/256), then
    ``bins`` histogram fractions.
    """

    version = 1  # bump with every change of the output (see ImageTransformer.version)

    def __init__(self, *, bins=16):
        self.bins = bins

    def _validate(self):
        self._check(int(self.bins) >= 0, "bins", self.bins, "a non-negative integer")

    def _names(self):
        stats = ["mean", "std", "skewness", "kurtosis", "entropy"] + [f"p{p}" for p in _PERCENTILES]
        return [f"intensity_{s}" for s in stats] + [f"hist_{k}" for k in range(int(self.bins))]

    def _extract(self, image):
        # Moments and percentiles written out with numpy: scipy.stats' skew,
        # kurtosis and np.percentile cost 5x more per 224x224 image and the
        # benchmark's feature pass runs them on every image.
        values = image.ravel()
        mean = values.mean()
        dev = values - mean
        dev2 = dev * dev  # products, not **: numpy's pow is ~70x slower
        var = dev2.mean()
        std = np.sqrt(var)
        skewness = np.mean(dev2 * dev) / var**1.5 if var > 0 else 0.0
        kurt = np.mean(dev2 * dev2) / var**2 - 3.0 if var > 0 else 0.0
        counts = np.bincount(np.minimum((values * 256).astype(np.int64), 255), minlength=256) / values.size
        nz = counts[counts > 0]
        cdf = np.cumsum(counts)
        percentiles = (np.searchsorted(cdf, np.asarray(_PERCENTILES) / 100.0) + 0.5) / 256
        bins = int(self.bins)
        if bins and 256 % bins == 0:
            hist = counts.reshape(bins, -1).sum(axis=1)
        elif bins:
            hist = np.histogram(values, bins=bins, range=(0.0, 1.0))[0] / values.size
        else:
            hist = []
        return np.concatenate([[mean, std, skewness, kurt, -(nz * np.log2(nz)).sum()], percentiles, hist])


class OtsuFeatures(ImageTransformer):
    """Otsu threshold and the statistics inside and outside its mask.

    Output: threshold, foreground fraction, mean and std inside, mean and
    std outside, contrast (inside mean minus outside mean).
    """

    version = 1  # bump with every change of the output (see ImageTransformer.version)

    def _names(self):
        return [
            "otsu_threshold",
            "otsu_foreground",
            "otsu_in_mean",
            "otsu_in_std",
            "otsu_out_mean",
            "otsu_out_std",
            "otsu_contrast",
        ]

    def _extract(self, image):
        mask = otsu_mask(image)
        inside, outside = image[mask], image[~mask]
        threshold = float(image[mask].min()) if mask.any() else float(image.max())

        def stats(v):
            return (v.mean(), v.std()) if v.size else (0.0, 0.0)

        in_mean, in_std = stats(inside)
        out_mean, out_std = stats(outside)
        return np.array([threshold, mask.mean(), in_mean, in_std, out_mean, out_std, in_mean - out_mean])


def otsu_mask(image: np.ndarray) -> np.ndarray:
    """Pixels above the Otsu threshold (all False for a constant image).

    >>> otsu_mask(np.array([[0.0, 0.1], [0.9, 1.0]])).tolist()
    [[False, False], [True, True]]
    """
    if image.min() == image.max():
        return np.zeros(image.shape, dtype=bool)
    return image > otsu_threshold(image)
