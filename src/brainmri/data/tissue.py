"""Tissue classes of a slice by fuzzy C-means on its intensity histogram, and a random contrast per tissue.

:func:`fuzzy_cmeans_1d` is the FCM of the ``fcm-dwt-dnn`` features
(:mod:`brainmri.features.fcm`, where the reason it runs on the histogram is
given) and of the ``tissue-contrast`` augmentation
(:mod:`brainmri.training.augment`); it lives here, below both.

:func:`tissue_centres` gives the centres of a slice's intensity classes.
On an MRI slice the darkest class is the background and the others are
tissues (cerebrospinal fluid, grey and white matter, lesion), whose order
depends on the sequence: CSF is dark on T1 and bright on T2 and FLAIR.
:func:`random_tissue_contrast` gives every class a new random intensity
(SynthSeg's idea, Billot et al. 2023, on one slice's histogram instead of a
label map) so that a network cannot tell the sequence from the order of the
tissues. Memberships of a one-dimensional FCM are a function of the
intensity alone, so the new image is a piecewise-linear curve of the old
one through the (centre, new intensity) points.

References
----------
J. C. Bezdek, R. Ehrlich and W. Full, "FCM: the fuzzy c-means clustering
algorithm", Computers & Geosciences 10(2-3):191-203, 1984.
DOI: 10.1016/0098-3004(84)90020-7

B. Billot, D. N. Greve, O. Puonti et al., "SynthSeg: segmentation of brain
MRI scans of any contrast and resolution without retraining", Medical
Image Analysis 86:102789, 2023. DOI: 10.1016/j.media.2023.102789
"""

from __future__ import annotations

import numpy as np

_EPS = np.finfo(np.float64).eps


def _memberships(distances: np.ndarray, m: float) -> np.ndarray:
    """FCM memberships from point-to-centre distances, shape (n_clusters, n_points).

    ``u[k, j] = d[k, j]^(-2/(m-1)) / sum_i d[i, j]^(-2/(m-1))``, computed as
    scikit-fuzzy's ``normalize_power_columns`` does (scaled first, so that a
    point on a centre gives membership 1 instead of an overflow).
    """
    x = distances / distances.max(axis=0, keepdims=True)
    x = np.fmax(x, _EPS)
    x = (x / x.min(axis=0, keepdims=True)) ** (-2.0 / (m - 1.0))
    return x / x.sum(axis=0, keepdims=True)


def fuzzy_cmeans_1d(
    values, weights, centres, *, m: float = 2.0, error: float = 0.005, max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray, int]:
    """Fuzzy C-means of weighted 1D values (a histogram), as ``skfuzzy.cmeans`` on the repeated values.

    Parameters
    ----------
    values : array-like of shape (n_values,)
        Distinct values (e.g. the intensities of a histogram's bins).
    weights : array-like of shape (n_values,)
        How many points have each value (positive).
    centres : array-like of shape (n_clusters,)
        Initial centres; the initial memberships follow from them.
    m : float
        Fuzzifier, > 1.
    error : float
        Stop when the Frobenius norm of the membership change, counted over
        the repeated points, is below this.
    max_iter : int

    Returns
    -------
    centres : ndarray of float64, shape (n_clusters,)
    memberships : ndarray of float64, shape (n_clusters, n_values)
        Columns sum to 1.
    n_iter : int

    Examples
    --------
    >>> c, u, _ = fuzzy_cmeans_1d([0.0, 1.0], [3, 1], [0.2, 0.8])
    >>> np.round(c, 3).tolist(), u.argmax(axis=0).tolist()
    ([0.0, 1.0], [0, 1])
    """
    x = np.asarray(values, dtype=np.float64)
    w = np.asarray(weights, dtype=np.float64)
    centres = np.asarray(centres, dtype=np.float64)
    u = _memberships(np.fmax(np.abs(x[None, :] - centres[:, None]), _EPS), m)
    for n_iter in range(1, max_iter + 1):  # noqa: B007 (the count of iterations is returned after the loop)
        previous = u
        um = np.fmax(previous / previous.sum(axis=0, keepdims=True), _EPS) ** m * w
        centres = um @ x / um.sum(axis=1)
        u = _memberships(np.fmax(np.abs(x[None, :] - centres[:, None]), _EPS), m)
        if np.sqrt((w * (u - previous) ** 2).sum()) < error:
            break
    return centres, u, n_iter


def histogram_fcm(
    image: np.ndarray, n_clusters: int, *, m: float = 2.0, error: float = 0.005, max_iter: int = 100
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fuzzy C-means of a slice's intensities, run on its 256-bin histogram (:func:`fuzzy_cmeans_1d`).

    Initial centres are spread evenly over the intensity range, so the
    result needs no seed.

    Parameters
    ----------
    image : ndarray of shape (H, W)
        Values in [0, 1] (values outside are clipped).
    n_clusters, m, error, max_iter
        See :func:`fuzzy_cmeans_1d`.

    Returns
    -------
    levels : ndarray of int64, shape (H, W)
        The 8-bit level of every pixel.
    present : ndarray of int64, shape (n_values,)
        The levels that occur.
    centres : ndarray of float64, shape (n_clusters,)
        In the order FCM returns them (not sorted).
    memberships : ndarray of float64, shape (n_clusters, n_values)
        Of each present level.
    """
    levels = np.rint(np.clip(np.asarray(image, dtype=np.float64), 0.0, 1.0) * 255).astype(np.int64)
    counts = np.bincount(levels.ravel(), minlength=256)
    present = np.flatnonzero(counts)
    values = present / 255.0
    start = values[0] + (values[-1] - values[0]) * (np.arange(n_clusters) + 0.5) / n_clusters
    centres, u, _ = fuzzy_cmeans_1d(values, counts[present], start, m=m, error=error, max_iter=max_iter)
    return levels, present, centres, u


def tissue_centres(image: np.ndarray, n_clusters: int = 4) -> np.ndarray:
    """Increasing centres of the ``n_clusters`` intensity classes of a slice (:func:`histogram_fcm`).

    Examples
    --------
    >>> np.round(tissue_centres(np.array([[0.0, 0.0], [0.5, 1.0]]), 3), 2).tolist()
    [0.0, 0.5, 1.0]
    """
    return np.sort(histogram_fcm(image, n_clusters)[2])


def random_tissue_contrast(image: np.ndarray, new_levels: np.ndarray) -> np.ndarray:
    """The slice with its intensity classes moved to ``new_levels``; the darkest class (background) stays.

    Parameters
    ----------
    image : ndarray of shape (H, W)
        Values in [0, 1].
    new_levels : ndarray of shape (n_clusters - 1,)
        New intensities, in [0, 1], of the classes above the darkest, in the
        order of their centres (:func:`tissue_centres`). Any order, so a
        bright tissue may become dark: inverting curves are part of it.

    Returns
    -------
    ndarray of float32, shape (H, W)
        Values in [0, 1]. Between centres the curve is linear; below the
        darkest it is the identity; above the brightest it keeps slope 1.

    Examples
    --------
    >>> image = np.array([[0.0, 0.2], [0.5, 0.9]])
    >>> (random_tissue_contrast(image, np.array([0.9, 0.5, 0.1])) * 100).round().astype(int).tolist()
    [[0, 90], [50, 10]]
    """
    n = len(new_levels) + 1
    centres = tissue_centres(image, n)
    if np.any(np.diff(centres) < 1 / 255):  # fewer distinct classes than asked (a flat slice): leave it
        return np.asarray(image, dtype=np.float32)
    top = centres[-1]
    knots = np.concatenate([[0.0], centres, [1.0]]) if centres[0] > 0 else np.concatenate([centres, [1.0]])
    levels = np.concatenate([[0.0] if centres[0] > 0 else [], [centres[0]], new_levels, [new_levels[-1] + 1.0 - top]])
    out = np.interp(np.asarray(image, dtype=np.float64), knots, levels)
    return np.clip(out, 0.0, 1.0).astype(np.float32)
