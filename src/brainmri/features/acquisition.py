"""Image-level acquisition descriptors: how an image was acquired and exported, whatever it shows.

A method's embedding describes anatomy and texture as that method sees it;
an image that was blurred, down-sampled, smeared by motion or ghosts, or
re-compressed can keep an embedding like the training ones (the GLCM
features of ``glcm-svm`` barely move under blur or motion). These few
numbers describe the acquisition instead, so that the out-of-distribution
score (:mod:`brainmri.robust.ood`) sees such changes for every method.

They are computed on the image as read, only scaled to [0, 1] by its own
minimum and maximum (:data:`DESCRIPTOR_PREPROCESS`: no head crop, no
resize, no clipping, which would hide the sharpness, noise, block grid and
background that they measure) and rounded to 8 bits, so that an image held
as floats or at 16 bits is not by itself unlike 8-bit training files (on
brain-tumor-mri every shifted array, held as floats, was told apart from the
8-bit JPEG files, an artefact of the benchmark rather than a detection).

============  ==================================================================
descriptor    what it measures
============  ==================================================================
q5 ... q95    intensity quantiles (5, 25, 50, 75, 95 %) inside the head mask
              (Otsu threshold, holes filled): contrast, gamma, windowing
bg_mean,      mean and standard deviation outside the head: ghosts and motion
bg_std        put signal into the air, noise lifts it, inversion brightens it
laplacian     log variance of the Laplacian (Pech-Pacheco et al. 2000): sharpness
hf_share      log share of the spectrum's energy above a quarter of the
              sampling frequency: blur, down-sampling, JPEG smoothing
noise         log noise sigma from the finest wavelet details' median absolute
              deviation (Donoho and Johnstone 1994, scikit-image ``estimate_sigma``)
blockiness    log ratio of the mean absolute step across the 8-pixel JPEG block
              boundaries to the step elsewhere, rows times columns
ghost_half,   mean background where the head shifted by half (a quarter) of the
ghost_quarter field of view along either axis falls, less the rest of the
              background, the larger of the two axes: N/2 (N/4) ghosts
grey_levels   log number of distinct grey levels (of 256): bit depth
============  ==================================================================

The Laplacian, spectrum, block and ghost measures are a line or two of
NumPy/SciPy each; no installed library wraps them.

References
----------
J. L. Pech-Pacheco, G. Cristóbal, J. Chamorro-Martínez and J. Fernández-Valdivia,
"Diatom autofocusing in brightfield microscopy: a comparative study", ICPR 2000.
https://doi.org/10.1109/ICPR.2000.903548

D. L. Donoho and I. M. Johnstone, "Ideal spatial adaptation by wavelet
shrinkage", Biometrika 81(3):425-455, 1994. https://doi.org/10.1093/biomet/81.3.425
"""

from __future__ import annotations

import numpy as np

from brainmri.data.head import otsu_threshold
from brainmri.data.preprocess import Preprocess
from brainmri.features.base import ImageTransformer

#: The preprocessing of the descriptors: the image as read, scaled to [0, 1] by its minimum and maximum.
DESCRIPTOR_PREPROCESS = Preprocess(crop=False, size=None, clip_percentiles=None)

#: Size of a JPEG block in pixels.
JPEG_BLOCK = 8


class AcquisitionDescriptors(ImageTransformer):
    """The acquisition descriptors of 2D images in [0, 1]: float64 of shape (n_images, 14).

    See the module docstring for what each column measures.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> image = np.zeros((64, 64)); image[16:48, 16:48] = 0.8
    >>> noisy = np.clip(image + rng.normal(0, 0.05, image.shape), 0, 1)
    >>> d = AcquisitionDescriptors().fit().transform([image, noisy])
    >>> d.shape
    (2, 14)
    >>> bool(d[1, 9] > d[0, 9])  # the noise column
    True
    """

    version = 1

    def _names(self) -> list[str]:
        return [
            "q5",
            "q25",
            "q50",
            "q75",
            "q95",
            "bg_mean",
            "bg_std",
            "laplacian",
            "hf_share",
            "noise",
            "blockiness",
            "ghost_half",
            "ghost_quarter",
            "grey_levels",
        ]

    def _extract(self, image: np.ndarray) -> np.ndarray:
        from scipy import ndimage
        from skimage.restoration import estimate_sigma

        # A uniform image has no noise to estimate (scikit-image gives NaN): its noise is 0. Only such images'
        # descriptors changed, and a cache holding their NaN is damaged and recomputed, so the version stays.
        levels = np.round(np.clip(image, 0.0, 1.0) * 255)
        x = levels / 255
        head = ndimage.binary_fill_holes(x > otsu_threshold(x))
        inside = x[head] if head.any() else x.ravel()
        outside = x[~head] if (~head).any() else np.zeros(1)
        power = np.abs(np.fft.fft2(x - x.mean())) ** 2
        fy, fx = np.meshgrid(np.fft.fftfreq(x.shape[0]), np.fft.fftfreq(x.shape[1]), indexing="ij")
        high = power[np.hypot(fy, fx) > 0.25].sum() / max(power.sum(), 1e-12)
        ghosts = [_ghost(x, head, axis, part) for part in (2, 4) for axis in (0, 1)]
        return np.r_[
            np.percentile(inside, [5, 25, 50, 75, 95]),
            outside.mean(),
            outside.std(),
            np.log(ndimage.laplace(x).var() + 1e-12),
            np.log(high + 1e-12),
            np.log(np.nan_to_num(estimate_sigma(x)) + 1e-6),
            np.log(_blockiness(x, 1) * _blockiness(x, 0)),
            max(ghosts[:2]),
            max(ghosts[2:]),
            # The distinct grey levels counted on the 256 integer levels: np.unique's count, without its sort
            # (1.4 of 9 ms per 224 px image).
            np.log(np.count_nonzero(np.bincount(levels.astype(np.uint8).ravel(), minlength=256))),
        ]


def _blockiness(x: np.ndarray, axis: int) -> float:
    """Mean absolute step across the JPEG block boundaries along ``axis`` over the mean step elsewhere."""
    step = np.abs(np.diff(x, axis=axis)).mean(axis=1 - axis)
    boundary = np.zeros(len(step), dtype=bool)
    boundary[JPEG_BLOCK - 1 :: JPEG_BLOCK] = True
    if not boundary.any() or boundary.all():
        return 1.0
    return float((step[boundary].mean() + 1e-6) / (step[~boundary].mean() + 1e-6))


def _ghost(x: np.ndarray, head: np.ndarray, axis: int, part: int) -> float:
    """Mean background where the head moved by ``1/part`` of the field of view along ``axis`` falls, less the mean
    of the rest of the background (0 without both): the N/``part`` ghost of a periodic signal change."""
    moved = np.roll(head, x.shape[axis] // part, axis=axis)
    ghost, rest = ~head & moved, ~head & ~moved
    return float(x[ghost].mean() - x[rest].mean()) if ghost.any() and rest.any() else 0.0
