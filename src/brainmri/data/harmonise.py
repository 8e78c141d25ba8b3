"""Intensity harmonisation: the same tissue at the same value, whatever scanner, sequence or export made the image.

Options of :class:`~brainmri.data.preprocess.Preprocess` (``--harmonise``,
``--n4``), applied to every image after the resize and the scaling to [0, 1],
inside the head mask of :func:`~brainmri.data.head.head_mask`:

``zscore``
    :func:`zscore_in_head`: the intensities inside the head get mean 0 and
    standard deviation 1, then ``[-ZSCORE_RANGE, ZSCORE_RANGE]`` is mapped
    linearly onto [0, 1] (clipped), because every feature extractor and
    network of brainmri takes images in [0, 1]. Inside the head the output has
    mean 0.5 and standard deviation ``1 / (2 * ZSCORE_RANGE)`` (a little less
    where values beyond the range are clipped). It removes a per-image
    affine change of intensity measured on the head alone, so the share of
    background or a bright label does not move it.

``nyul``
    Histogram standardisation (Nyúl and Udupa 1999; Nyúl, Udupa and Zhang
    2000): a piecewise-linear map that sends the image's own intensity
    percentiles inside the head (:data:`PERCENTILES`, the first and last
    being the cut-offs ``pc1``, ``pc2``) onto standard-scale landmarks. The
    landmarks are learned on the training images only
    (:class:`HistogramStandardizer`: every training image's percentiles
    mapped linearly from [pc1, pc2] onto [0, 1], then averaged), so unlike
    z-scoring it also undoes a monotone non-linear change such as a gamma
    curve. Learning them is a ``fit``: the first step of every method
    (:class:`~brainmri.features.extract.ImageFeatures`,
    :class:`~brainmri.training.arrays.ImageArrays`) calls
    :func:`learn_landmarks` on the training items of each fold, and the test
    items are mapped with those landmarks.

``n4``
    N4 bias-field correction (Tustison et al. 2010, SimpleITK's
    ``N4BiasFieldCorrectionImageFilter``), :func:`n4_correct`: the smooth
    multiplicative field of the receive coil is estimated inside the head
    and divided out, before the other steps.

The landmarks and the map are written here with numpy rather than taken from
TorchIO's ``HistogramStandardization``: its ``train`` reads image files
(NIfTI volumes), so thousands of preprocessed 2D slices in memory would first
have to be written to disk, and the map itself is one ``np.interp``.

References
----------
L. G. Nyúl and J. K. Udupa, "On standardizing the MR image intensity scale",
Magnetic Resonance in Medicine 42(6):1072-1081, 1999.
DOI: 10.1002/(SICI)1522-2594(199912)42:6<1072::AID-MRM11>3.0.CO;2-M

L. G. Nyúl, J. K. Udupa and X. Zhang, "New variants of a method of MRI scale
standardization", IEEE Transactions on Medical Imaging 19(2):143-150, 2000.
DOI: 10.1109/42.836373

N. J. Tustison, B. B. Avants, P. A. Cook, Y. Zheng, A. Egan, P. A. Yushkevich
and J. C. Gee, "N4ITK: improved N3 bias correction", IEEE Transactions on
Medical Imaging 29(6):1310-1320, 2010. DOI: 10.1109/TMI.2010.2046908
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from itertools import pairwise

import numpy as np

from brainmri.errors import ConfigError

logger = logging.getLogger(__name__)

#: Values of ``--harmonise``.
HARMONISE = ("none", "zscore", "nyul")

#: z-scores from ``-ZSCORE_RANGE`` to ``ZSCORE_RANGE`` are mapped onto [0, 1].
ZSCORE_RANGE = 3.0

#: Percentiles inside the head that the Nyúl map aligns: the cut-offs pc1 = 1 and pc2 = 99 and the deciles
#: (TorchIO's defaults; Nyúl et al. 2000 found deciles the best of their variants).
PERCENTILES = (1.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0, 99.0)


def zscore_in_head(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Z-scores inside ``mask``, mapped from ``[-ZSCORE_RANGE, ZSCORE_RANGE]`` onto [0, 1] (clipped).

    Parameters
    ----------
    image : ndarray of shape (H, W)
    mask : ndarray of bool, shape (H, W)
        The head (:func:`~brainmri.data.head.head_mask`).

    Returns
    -------
    ndarray of float32, shape (H, W)
        Inside the mask: mean 0.5, standard deviation ``1 / (2 * ZSCORE_RANGE)``
        before clipping. A constant head gives 0.5 everywhere in it.

    >>> out = zscore_in_head(np.array([[0.0, 2.0], [4.0, 9.0]]), np.array([[True, True], [True, False]]))
    >>> [round(v, 3) for v in out.ravel().tolist()]
    [0.296, 0.5, 0.704, 1.0]
    """
    inside = image[mask]
    mean, sd = float(inside.mean()), float(inside.std())
    z = (image - mean) / sd if sd > 0 else np.zeros_like(image)
    return np.clip((z + ZSCORE_RANGE) / (2 * ZSCORE_RANGE), 0.0, 1.0).astype(np.float32)


def image_landmarks(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The :data:`PERCENTILES` of ``image`` inside ``mask``, made strictly increasing (float64)."""
    values = np.percentile(image[mask], PERCENTILES)
    # Flat stretches of the histogram (a saturated head) give equal percentiles; np.interp needs increasing points.
    return np.maximum.accumulate(values) + np.arange(len(values)) * 1e-9


def apply_landmarks(image: np.ndarray, mask: np.ndarray, landmarks: Sequence[float]) -> np.ndarray:
    """Nyúl's map: the image's percentiles inside ``mask`` onto the standard ``landmarks``, piecewise linearly.

    Parameters
    ----------
    image : ndarray of shape (H, W)
    mask : ndarray of bool, shape (H, W)
    landmarks : sequence of float
        Standard-scale landmarks of :data:`PERCENTILES`, from 0 to 1
        (:attr:`HistogramStandardizer.landmarks_`).

    Returns
    -------
    ndarray of float32, shape (H, W)
        Values in [0, 1]: below the image's pc1 (the background) 0, above
        its pc2 1.

    A gamma curve (squared intensities) mapped back onto evenly spaced landmarks:

    >>> x = np.linspace(0, 1, 101).reshape(1, 101)
    >>> out = apply_landmarks(x ** 2, np.ones(x.shape, dtype=bool), np.linspace(0, 1, len(PERCENTILES)))
    >>> [round(float(out[0, k]), 2) for k in (0, 30, 50, 70, 100)]
    [0.0, 0.3, 0.5, 0.7, 1.0]
    """
    own = image_landmarks(image, mask)
    return np.interp(image, own, np.asarray(landmarks, dtype=np.float64)).astype(np.float32)


def check_landmarks(landmarks) -> tuple[float, ...]:
    """Validate Nyúl landmarks (one per :data:`PERCENTILES`, from 0 to 1, non-decreasing) and return them as a tuple.

    Raises
    ------
    ConfigError
    """
    try:
        values = tuple(float(v) for v in landmarks)
    except (TypeError, ValueError):
        values = ()
    if (
        len(values) != len(PERCENTILES)
        or values[0] != 0.0
        or values[-1] != 1.0
        or any(b < a for a, b in pairwise(values))
    ):
        raise ConfigError(
            f"Nyúl landmarks must be {len(PERCENTILES)} non-decreasing numbers from 0 to 1 (one per "
            f"percentile {', '.join(f'{p:g}' for p in PERCENTILES)}), got {landmarks!r}; "
            "learn them with the method's fit, or train the bundle again"
        )
    return values


def n4_correct(
    image: np.ndarray, mask: np.ndarray, *, fit_size: int = 64, iterations: Sequence[int] = (25, 25, 25)
) -> np.ndarray:
    """The image with N4's bias field, estimated inside ``mask``, divided out (Tustison et al. 2010).

    The field is smooth, so it is fitted on the image shrunk to about
    ``fit_size`` pixels (an integer factor), over ``len(iterations)``
    B-spline fitting levels, and evaluated at full size. N4 works on the logarithm, so the image is first
    made positive (shifted so that its minimum is 1% of its range); the
    shift is undone afterwards.

    Parameters
    ----------
    image : ndarray of shape (H, W)
    mask : ndarray of bool, shape (H, W)

    Returns
    -------
    ndarray of float32, shape (H, W)

    Raises
    ------
    ConfigError
        SimpleITK is not installed.
    """
    try:
        import SimpleITK as sitk
    except ImportError:
        raise ConfigError("--n4 needs SimpleITK: pip install 'brainmri[harmonise]'") from None
    image = np.asarray(image, dtype=np.float32)
    low, high = float(image.min()), float(image.max())
    if high == low or mask.sum() < 16:
        return image
    offset = low - 0.01 * (high - low)
    positive = sitk.GetImageFromArray(image - offset)
    head = sitk.GetImageFromArray(mask.astype(np.uint8))
    n4 = sitk.N4BiasFieldCorrectionImageFilter()
    n4.SetMaximumNumberOfIterations([int(i) for i in iterations])
    n4.SetNumberOfThreads(1)  # one image is small; the workers of the feature step run images side by side
    shrink = [max(round(min(image.shape) / fit_size), 1)] * 2
    n4.Execute(sitk.Shrink(positive, shrink), sitk.Shrink(head, shrink))
    log_field = sitk.GetArrayFromImage(n4.GetLogBiasFieldAsImage(positive))
    return ((image - offset) / np.exp(log_field) + offset).astype(np.float32)
