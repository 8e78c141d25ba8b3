"""Significance tests for comparing methods.

* :func:`mcnemar` compares two methods on the same test items (exact test on
  the items where exactly one of them is right).
* :func:`corrected_resampled_ttest` compares per-fold scores of two methods
  across cross-validation folds, with Nadeau and Bengio's correction for the
  overlap between training sets.
* :func:`holm` adjusts the p-values of many pairwise comparisons.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from brainmri.errors import ConfigError


def mcnemar(correct_a, correct_b) -> dict:
    """Exact McNemar test of two methods scored on the same items.

    Only the discordant items matter: ``n01`` where A is right and B wrong,
    ``n10`` where A is wrong and B right. Under the null hypothesis of equal
    accuracy each discordant item goes either way with probability 1/2, so
    the p-value is the two-sided binomial test of ``n10`` out of
    ``n01 + n10`` (:func:`scipy.stats.binomtest`).

    Parameters
    ----------
    correct_a, correct_b : array-like of bool, shape (n,)
        Whether method A (resp. B) classified each item correctly, items in
        the same order. 0/1 integers are accepted.

    Returns
    -------
    dict
        ``{"n01": int, "n10": int, "p_value": float, "statistic": float}``.
        ``p_value`` is 1.0 when there are no discordant items. ``statistic``
        is the chi-square statistic with Edwards' continuity correction,
        ``max(|n01 - n10| - 1, 0) ** 2 / (n01 + n10)`` (0.0 without discordant
        items), given for reference only: the p-value comes from the exact test.

    Raises
    ------
    ConfigError
        If the arrays are not one-dimensional, differ in length or hold
        values other than True/False (0/1).

    References
    ----------
    Q. McNemar, "Note on the sampling error of the difference between
    correlated proportions or percentages", Psychometrika 12:153-157, 1947.
    DOI: 10.1007/BF02295996

    Examples
    --------
    >>> out = mcnemar([True, True, True, False], [False, False, True, False])
    >>> out["n01"], out["n10"], out["p_value"]
    (2, 0, 0.5)
    """
    a, b = _as_bool(correct_a, "correct_a"), _as_bool(correct_b, "correct_b")
    if a.shape != b.shape:
        raise ConfigError(f"correct_a and correct_b must score the same items, got lengths {a.size} and {b.size}")
    n01, n10 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    discordant = n01 + n10
    if discordant == 0:
        return {"n01": 0, "n10": 0, "p_value": 1.0, "statistic": 0.0}
    return {
        "n01": n01,
        "n10": n10,
        "p_value": float(stats.binomtest(n10, discordant, 0.5).pvalue),
        "statistic": max(abs(n01 - n10) - 1, 0) ** 2 / discordant,
    }


# Hand-written because no maintained library implements the correction (scipy's
# ttest_rel is the uncorrected paired test, which is far too liberal across
# overlapping training sets). Nadeau, C. and Bengio, Y. (2003), "Inference for the
# generalization error", Machine Learning 52:239-281.
def corrected_resampled_ttest(scores_a, scores_b, *, n_train, n_test) -> dict:
    """Nadeau-Bengio corrected resampled t-test of per-fold scores.

    The scores of the k folds are not independent (training sets overlap), so
    the variance of the mean difference ``d = a - b`` is inflated from
    ``var(d) / k`` to ``(1 / k + r) * var(d)``, with ``var(d)`` the sample
    variance (ddof=1) and ``r = n_test / n_train``. When the folds differ in
    size (grouped folds always do), ``r`` is the mean over folds of each
    fold's own ``n_test_j / n_train_j``, which is Nadeau and Bengio's ratio
    when all folds are equal. The statistic ``mean(d) / sqrt((1 / k + r) *
    var(d))`` is compared with Student's t with ``k - 1`` degrees of
    freedom, two-sided.

    Parameters
    ----------
    scores_a, scores_b : array-like of float, shape (k,), k >= 2
        A score of methods A and B on each fold (the same folds, in order).
    n_train, n_test : int or array-like of int, shape (k,)
        Training and test set sizes of each fold, in the order of the
        scores; a single int stands for every fold (for k-fold
        cross-validation ``n_test / n_train`` is about ``1 / (k - 1)``).

    Returns
    -------
    dict
        ``{"mean_difference": float, "statistic": float, "p_value": float,
        "df": int, "size_ratio": float}`` (``size_ratio`` is ``r``). When all
        differences are equal (zero variance) the test is degenerate: a zero
        difference gives ``statistic`` NaN and ``p_value`` 1.0; a non-zero
        one gives ``statistic`` +-inf and ``p_value`` 0.0.

    Raises
    ------
    ConfigError
        For fewer than 2 folds, score arrays of different lengths, non-finite
        scores, non-positive ``n_train`` / ``n_test`` or sizes not given for
        every fold.

    References
    ----------
    C. Nadeau and Y. Bengio, "Inference for the generalization error",
    Machine Learning 52:239-281, 2003. DOI: 10.1023/A:1024068626366

    Examples
    --------
    Differences 0.125 and 0.375 (mean 0.25, variance 0.03125) over folds of
    75/25 and 100/25 items: ``r = (1/3 + 1/4) / 2 = 7/24`` and
    ``t = 0.25 / sqrt((1/2 + 7/24) * 0.03125) = 1.589``.

    >>> out = corrected_resampled_ttest([0.875, 0.875], [0.75, 0.5], n_train=[75, 100], n_test=[25, 25])
    >>> round(out["size_ratio"], 4), round(out["statistic"], 3), out["df"]
    (0.2917, 1.589, 1)
    """
    a = np.asarray(scores_a, dtype=float)
    b = np.asarray(scores_b, dtype=float)
    if a.ndim != 1 or b.ndim != 1 or a.size != b.size:
        raise ConfigError(
            f"scores_a and scores_b must be 1-D with one score per fold, got shapes {a.shape} and {b.shape}"
        )
    if a.size < 2:
        raise ConfigError(f"the corrected t-test needs at least 2 folds, got {a.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ConfigError("scores_a and scores_b must be finite, got NaN or infinite values")
    k = a.size
    n_train, n_test = _fold_sizes(n_train, "n_train", k), _fold_sizes(n_test, "n_test", k)
    ratio = float(np.mean(n_test / n_train))
    d = a - b
    mean = float(d.mean())
    if np.all(d == d[0]):
        statistic = float("nan") if mean == 0 else float(np.copysign(np.inf, mean))
        p_value = 1.0 if mean == 0 else 0.0
    else:
        statistic = mean / float(np.sqrt((1 / k + ratio) * d.var(ddof=1)))
        p_value = float(2 * stats.t.sf(abs(statistic), k - 1))
    return {"mean_difference": mean, "statistic": statistic, "p_value": p_value, "df": k - 1, "size_ratio": ratio}


def _fold_sizes(value, name: str, k: int) -> np.ndarray:
    """``value`` (an int, or one int per fold) as k positive integers."""
    values = [value] * k if np.ndim(value) == 0 else list(value)
    if len(values) != k:
        raise ConfigError(f"{name} must be one size or one size per fold ({k}), got {len(values)} sizes")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(f"{name} must hold positive integers (items in a fold), got {v!r}")
    return np.asarray(values, dtype=float)


def holm(p_values) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given.

    The i-th smallest of m p-values is multiplied by ``m - i + 1`` (i from 1),
    made non-decreasing along the sorted order and capped at 1. Rejecting
    where the adjusted value is below alpha controls the family-wise error
    rate at alpha.

    Parameters
    ----------
    p_values : array-like of float, shape (m,)
        Raw p-values in [0, 1].

    Returns
    -------
    list of float
        Adjusted p-values, same length and order (empty for empty input).

    Raises
    ------
    ConfigError
        If the input is not one-dimensional or a value lies outside [0, 1]
        (NaN included).

    References
    ----------
    S. Holm, "A simple sequentially rejective multiple test procedure",
    Scandinavian Journal of Statistics 6:65-70, 1979.

    Examples
    --------
    >>> holm([0.01, 0.04, 0.03])
    [0.03, 0.06, 0.06]
    """
    p = np.asarray(p_values, dtype=float)
    if p.ndim != 1:
        raise ConfigError(f"p_values must be a 1-D sequence, got shape {p.shape}")
    if not np.all((p >= 0) & (p <= 1)):
        raise ConfigError(f"p_values must lie in [0, 1], got {p[~((p >= 0) & (p <= 1))].tolist()}")
    m = p.size
    order = np.argsort(p, kind="stable")
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(np.maximum.accumulate((m - np.arange(m)) * p[order]), 1.0)
    return adjusted.tolist()


def _as_bool(values, name: str) -> np.ndarray:
    """``values`` as a 1-D boolean array; 0/1 are accepted."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ConfigError(f"{name} must be a 1-D array of True/False per item, got shape {arr.shape}")
    if arr.dtype != bool:
        if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
            raise ConfigError(f"{name} must hold only True/False (or 0/1), got values {np.unique(arr)[:5].tolist()}")
        arr = arr.astype(bool)
    return arr
