"""Classification metrics of predicted probabilities, with bootstrap confidence intervals.

* :func:`classification_metrics` scores one set of predictions: the
  :data:`METRICS`, per-class rates and the confusion matrix.
* :func:`bootstrap_ci` gives percentile bootstrap intervals for every metric,
  resampling items or, when ``groups`` is given, whole groups (subjects or
  duplicate clusters), so that near-copies of an image do not pass for
  independent evidence.
* :func:`summarize` combines both into the JSON-ready block that reports use,
  with the reliability bins of the calibration and what the bootstrap
  resampled; :func:`interval_statement` says the latter in words.

Conventions
-----------
The predicted class is the argmax of the probabilities. A class absent from
``y_true`` has no per-class figures (``None``: its recall, precision and F1
have nothing to count, and leaving its specificity out keeps every average
over the same classes), and the macro averages ``sensitivity``,
``specificity``, ``precision`` and ``macro_f1`` are means over the classes
present in ``y_true``, never zero-filled for the others (a test set of
brain-tumor-mri without its copies of training images has no ``notumor``
item). ``balanced_accuracy`` follows
:func:`sklearn.metrics.balanced_accuracy_score`: the mean recall over the
classes present in ``y_true``; it equals ``sensitivity`` except in a bootstrap
resample that misses a class present in ``y_true``, where ``sensitivity``
counts that class's recall as 0 and ``balanced_accuracy`` leaves it out. With a
single class present, ``specificity`` (per class and averaged) is undefined:
NaN, or ``None`` per class. The precision of a present class that is never
predicted counts as 0, as scikit-learn's ``zero_division=0`` does.

``auc`` is the one-vs-rest macro ROC AUC (scikit-learn's
``roc_auc_score(multi_class="ovr", average="macro")``): the mean over the
classes present in ``y_true`` of the AUC of "this class against the rest",
scored by its own probability column. With two classes it is the binary AUC
of the second column. It is NaN when fewer than two classes are present.

``brier`` and ``ece`` measure calibration: whether the probabilities mean what
they say. Both are 0 for perfect predictions and lower is better
(:data:`LOWER_IS_BETTER`). ``brier`` is the multiclass Brier score in Brier's
own normalisation, the mean over items of the sum over classes of
``(p_ic - y_ic) ** 2`` with ``y_ic`` 1 for the true class and 0 otherwise; it
ranges from 0 to 2 (twice the one-column binary score of
:func:`sklearn.metrics.brier_score_loss` with two classes). ``ece`` is the
expected calibration error of the top-class probability (the confidence) over
:data:`ECE_BINS` equal-width bins ``((b - 1) / 15, b / 15]``, b = 1, ..., 15:
``sum_b |B_b| / n * |acc(B_b) - conf(B_b)|``, where ``acc`` is the share of
items of the bin classified correctly and ``conf`` their mean confidence. It
ranges from 0 to 1. Both read the rows of ``proba`` as probabilities.

Everything is computed from item weights (1 for each item; the number of
times an item was drawn in a bootstrap resample) with :func:`numpy.bincount`,
so a resample costs a few passes over the data and the point estimate and
the bootstrap share one code path. The AUC is the Mann-Whitney statistic
(ties count one half), which is exactly the area under the ROC curve.

References
----------
B. Efron and R. J. Tibshirani, *An Introduction to the Bootstrap*, Chapman &
Hall, 1993 (percentile intervals; chapter 13).

G. W. Brier, "Verification of forecasts expressed in terms of probability",
Monthly Weather Review 78(1):1-3, 1950.
DOI: 10.1175/1520-0493(1950)078<0001:VOFEIT>2.0.CO;2

C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On Calibration of Modern
Neural Networks", Proceedings of the 34th International Conference on
Machine Learning (ICML), PMLR 70:1321-1330, 2017 (expected calibration error,
reliability diagrams).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brainmri.errors import ConfigError

#: Names of the metrics, in the order every result lists them.
METRICS = (
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "auc",
    "sensitivity",
    "specificity",
    "precision",
    "brier",
    "ece",
)

#: The metrics of :data:`METRICS` where a lower value is better; higher is better for the others.
LOWER_IS_BETTER = frozenset({"brier", "ece"})

#: Equal-width bins of the top-class probability for ``ece`` and the reliability diagram (Guo et al. use 15).
ECE_BINS = 15

#: Largest distance of a row sum of ``proba`` from 1 that is accepted (saved predictions have 6 decimals).
_SUM_TOLERANCE = 1e-3

#: Per-class rates, in the order ``per_class`` lists them (followed by ``support``).
RATES = ("sensitivity", "specificity", "precision", "f1")


def classification_metrics(y_true: Sequence[str], proba, classes: Sequence[str]) -> dict:
    """Score predicted class probabilities against true labels.

    Parameters
    ----------
    y_true : sequence of str, length n
        True class of every item; each must be one of ``classes``.
    proba : array-like of float, shape (n, n_classes)
        Predicted probabilities; column ``j`` belongs to ``classes[j]``. Every
        value lies in [0, 1] and every row sums to 1 (within 0.001).
    classes : sequence of str, length n_classes >= 2
        Class names, unique.

    Returns
    -------
    dict
        ``{"metrics": {name: float}, "per_class": {class: {"sensitivity",
        "specificity", "precision", "f1": float or None, "support": int}},
        "confusion": {"labels": list of str, "matrix": list of lists of int}}``.
        ``metrics`` has every name in :data:`METRICS`; ``matrix[i][j]`` counts
        items of class ``labels[i]`` predicted as ``labels[j]``. Values are
        plain Python numbers; ``auc`` is NaN when fewer than two classes occur
        in ``y_true``; the rates of a class absent from ``y_true`` are None. See
        the module docstring for how undefined rates count.

    Raises
    ------
    ConfigError
        If the shapes disagree, a label is not in ``classes`` or ``proba`` does
        not hold probabilities.

    Examples
    --------
    >>> out = classification_metrics(["a", "a", "b"], [[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]], ["a", "b"])
    >>> out["confusion"]["matrix"]
    [[1, 1], [0, 1]]
    >>> out["metrics"]["accuracy"], out["metrics"]["balanced_accuracy"], out["metrics"]["auc"]
    (0.6666666666666666, 0.75, 1.0)

    Calibration, by hand: the confidences 0.9 (right) and 0.92 (wrong) share
    the bin (13/15, 14/15] = (0.867, 0.933], accuracy 1/2 against mean
    confidence 0.91; 0.7 and 0.6 (both right) sit alone in theirs. ECE =
    2/4 * 0.41 + 1/4 * 0.3 + 1/4 * 0.4 = 0.38. Brier: the squared errors of
    the rows are 0.02, 2 * 0.92 ** 2 = 1.6928, 0.18 and 0.32, mean 0.5532.

    >>> out = classification_metrics(["a", "b", "b", "b"], [[0.9, 0.1], [0.92, 0.08], [0.3, 0.7], [0.4, 0.6]], ["a", "b"])
    >>> round(out["metrics"]["ece"], 4), round(out["metrics"]["brier"], 4)
    (0.38, 0.5532)
    """
    scorer, classes = _scorer(y_true, proba, classes)
    return _point_estimate(scorer, classes)


def bootstrap_ci(
    y_true: Sequence[str],
    proba,
    classes: Sequence[str],
    *,
    groups=None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int | None = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap confidence intervals of every metric.

    Parameters
    ----------
    y_true, proba, classes
        As in :func:`classification_metrics`.
    groups : array-like, length n, optional
        Group id of every item (subject, duplicate cluster). When given, each
        resample draws as many groups as there are, with replacement, and
        takes every item of each drawn group (cluster bootstrap); otherwise it
        draws n items with replacement.
    n_boot : int, default 1000
        Number of resamples.
    alpha : float, default 0.05
        The interval covers ``1 - alpha``: its ends are the ``alpha / 2`` and
        ``1 - alpha / 2`` quantiles of the resampled values.
    seed : int or None, default 0
        Seed of the random generator; the same seed gives the same intervals.

    Returns
    -------
    dict of str to (float, float)
        ``{metric: (low, high)}`` for every name in :data:`METRICS`.
        Resamples where a metric is undefined (the AUC of a resample with a
        single class) are left out; a metric undefined in every resample gets
        ``(nan, nan)``.

    Raises
    ------
    ConfigError
        On invalid inputs (see :func:`classification_metrics`), ``groups`` of
        the wrong length, ``n_boot < 1`` or ``alpha`` outside (0, 1).
    """
    scorer, _ = _scorer(y_true, proba, classes)
    return _bootstrap(scorer, groups=groups, n_boot=n_boot, alpha=alpha, seed=seed)[0]


def summarize(
    y_true: Sequence[str],
    proba,
    classes: Sequence[str],
    *,
    groups=None,
    n_boot: int = 1000,
    seed: int | None = 0,
) -> dict:
    """Metrics with 95 % bootstrap intervals, per-class rates and the confusion matrix.

    Parameters
    ----------
    y_true, proba, classes
        As in :func:`classification_metrics`.
    groups, n_boot, seed
        As in :func:`bootstrap_ci` (``alpha`` is 0.05).

    Returns
    -------
    dict
        ``{"metrics": {name: {"value", "ci_low", "ci_high"}}, "per_class": ...,
        "confusion": ..., "n": int, "calibration": {...}, "bootstrap": {...}}``
        with ``per_class`` and ``confusion`` as in
        :func:`classification_metrics` and ``n`` the number of items.

        ``calibration`` is ``{"n_bins": 15, "mean_confidence": float, "bins":
        {"count", "accuracy", "confidence": list}}``: the mean top-class
        probability, and per confidence bin (index ``b`` covers
        ``(b / 15, (b + 1) / 15]``) the number of items, the share classified correctly and their mean
        confidence (None for an empty bin), which is what ``ece`` sums and a
        reliability diagram draws.

        ``bootstrap`` is ``{"method": "percentile", "level": 0.95, "n_boot":
        int, "unit": "groups" or "items", "n_units": int}``: what the
        resamples drew. ``unit`` is ``"items"`` when ``groups`` is None or
        every group holds a single item (then the two are the same bootstrap).

        All numbers are plain Python ``float`` / ``int`` (NaN where a metric
        is undefined, None where a per-class rate is), so the result can be
        written with :func:`json.dump`.

    Examples
    --------
    >>> out = summarize(["a", "a", "b", "b"], [[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.2, 0.8]], ["a", "b"],
    ...                 groups=[0, 0, 1, 2], n_boot=10)
    >>> out["bootstrap"]["unit"], out["bootstrap"]["n_units"]
    ('groups', 3)
    >>> round(out["calibration"]["mean_confidence"], 3), out["calibration"]["bins"]["count"][8:14]
    (0.75, [1, 0, 1, 1, 0, 1])
    """
    scorer, classes = _scorer(y_true, proba, classes)
    point = _point_estimate(scorer, classes)
    intervals, n_units = _bootstrap(scorer, groups=groups, n_boot=n_boot, alpha=0.05, seed=seed)
    metrics = {
        name: {"value": value, "ci_low": intervals[name][0], "ci_high": intervals[name][1]}
        for name, value in point["metrics"].items()
    }
    count, correct, confidence = scorer.reliability(np.ones(scorer.n))
    bins = {
        "count": count.astype(int).tolist(),
        "accuracy": [float(c / n) if n else None for c, n in zip(correct, count, strict=True)],
        "confidence": [float(c / n) if n else None for c, n in zip(confidence, count, strict=True)],
    }
    return {
        "metrics": metrics,
        "per_class": point["per_class"],
        "confusion": point["confusion"],
        "n": scorer.n,
        "calibration": {"n_bins": ECE_BINS, "mean_confidence": float(confidence.sum() / scorer.n), "bins": bins},
        "bootstrap": {
            "method": "percentile",
            "level": 0.95,
            "n_boot": n_boot,
            "unit": "items" if n_units == scorer.n else "groups",
            "n_units": n_units,
        },
    }


def interval_statement(bootstrap: dict) -> str:
    """Say in words how the intervals of :func:`summarize` were computed.

    Parameters
    ----------
    bootstrap : dict
        The ``"bootstrap"`` block of :func:`summarize`, optionally with a
        ``"groups"`` key saying what the groups are (the benchmark adds it).

    Returns
    -------
    str

    Examples
    --------
    >>> interval_statement({"level": 0.95, "n_boot": 1000, "unit": "groups", "n_units": 374, "groups": "subjects"})
    '95% percentile bootstrap, 1000 resamples, over 374 groups (subjects)'
    >>> interval_statement({"level": 0.95, "n_boot": 200, "unit": "items", "n_units": 1311})
    '95% percentile bootstrap, 200 resamples, over 1311 items'
    """
    groups = bootstrap.get("groups")
    what = f" ({groups})" if groups and bootstrap["unit"] == "groups" else ""
    return (
        f"{bootstrap['level']:.0%} percentile bootstrap, {bootstrap['n_boot']} resamples, "
        f"over {bootstrap['n_units']} {bootstrap['unit']}{what}"
    )


class _Scorer:
    """The metrics of fixed predictions under item weights.

    Everything that does not depend on the weights (the confusion-matrix cell
    of each item, the rank of each item's score in every AUC column, its
    squared error and confidence bin) is computed once here; :meth:`values`
    then costs a few :func:`numpy.bincount` calls, which is what makes
    thousands of bootstrap resamples cheap.
    """

    def __init__(self, codes: np.ndarray, proba: np.ndarray):
        self.n, self.k = proba.shape
        # The classes the macro averages run over: those of y_true, in every resample alike.
        self.present = np.bincount(codes, minlength=self.k) > 0
        predicted = np.argmax(proba, axis=1)
        self.cells = codes * self.k + predicted
        self.correct = (predicted == codes).astype(float)
        self.confidence = proba.max(axis=1)
        onehot = np.eye(self.k)[codes]
        self.squared_error = ((proba - onehot) ** 2).sum(axis=1)
        # Bin b holds the confidences in ((b - 1) / ECE_BINS, b / ECE_BINS]: count the inner edges below.
        inner_edges = np.arange(1, ECE_BINS) / ECE_BINS  # exact as decimals: 9 / 15 == 0.6
        self.bin_of = np.searchsorted(inner_edges, self.confidence, side="left")
        # One AUC column per class (one-vs-rest); with two classes only the second.
        columns = [1] if self.k == 2 else range(self.k)
        self.auc_bins = []
        for c in columns:
            # Distinct scores in increasing order index the bins; positives go to the upper half.
            ties = np.unique(proba[:, c], return_inverse=True)[1].ravel()
            n_ties = int(ties.max()) + 1
            self.auc_bins.append((ties + n_ties * (codes == c), n_ties))

    def confusion(self, weights: np.ndarray) -> np.ndarray:
        """Weighted confusion matrix, shape (k, k), float; rows are true classes."""
        return np.bincount(self.cells, weights=weights, minlength=self.k * self.k).reshape(self.k, self.k)

    def auc(self, weights: np.ndarray) -> float:
        """Mean one-vs-rest AUC over the classes where it is defined; NaN if none."""
        aucs = []
        for bins, n_ties in self.auc_bins:
            per_bin = np.bincount(bins, weights=weights, minlength=2 * n_ties)
            neg, pos = per_bin[:n_ties], per_bin[n_ties:]
            n_pos, n_neg = pos.sum(), neg.sum()
            if n_pos > 0 and n_neg > 0:
                # Each positive beats the negatives scored below it and ties with half of those level with it.
                aucs.append(pos @ (np.cumsum(neg) - 0.5 * neg) / (n_pos * n_neg))
        return float(np.mean(aucs)) if aucs else float("nan")

    def reliability(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per confidence bin: the weight of its items, of those classified correctly, and their summed confidence."""

        def per_bin(values):
            return np.bincount(self.bin_of, weights=values, minlength=ECE_BINS)

        return per_bin(weights), per_bin(weights * self.correct), per_bin(weights * self.confidence)

    def values(self, weights: np.ndarray) -> np.ndarray:
        """Every metric of :data:`METRICS`, in that order, as a float array."""
        cm = self.confusion(weights)
        rates, support = _rates(cm)
        total = weights.sum()
        _, correct, confidence = self.reliability(weights)
        present = self.present
        metrics = {
            "accuracy": np.trace(cm) / cm.sum(),
            "balanced_accuracy": rates["sensitivity"][support > 0].mean(),
            "macro_f1": rates["f1"][present].mean(),
            "auc": self.auc(weights),
            "sensitivity": rates["sensitivity"][present].mean(),
            "specificity": rates["specificity"][present].mean() if present.sum() > 1 else np.nan,
            "precision": rates["precision"][present].mean(),
            "brier": weights @ self.squared_error / total,
            # sum_b |B_b| / n * |acc(B_b) - conf(B_b)| = sum_b |correct(B_b) - confidence(B_b)| / n
            "ece": np.abs(correct - confidence).sum() / total,
        }
        return np.array([metrics[name] for name in METRICS], dtype=float)


def _rates(cm: np.ndarray) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per-class sensitivity, specificity, precision and F1 of a confusion matrix, and the support."""
    tp = np.diag(cm)
    support, predicted = cm.sum(axis=1), cm.sum(axis=0)
    fp, fn = predicted - tp, support - tp
    tn = cm.sum() - tp - fp - fn
    rates = {
        "sensitivity": _ratio(tp, support),
        "specificity": _ratio(tn, tn + fp),
        "precision": _ratio(tp, predicted),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }
    return rates, support


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` elementwise, 0 where ``den`` is 0."""
    return np.divide(num, den, out=np.zeros(np.shape(num)), where=den > 0)


def _point_estimate(scorer: _Scorer, classes: list[str]) -> dict:
    """The result of :func:`classification_metrics` (every item weighted once)."""
    weights = np.ones(scorer.n)
    cm = scorer.confusion(weights)
    rates, support = _rates(cm)
    # Undefined: every rate of a class absent from y_true, and specificity where no item is of another class.
    defined = {name: support > 0 for name in RATES}
    defined["specificity"] = defined["specificity"] & (cm.sum() - support > 0)
    per_class = {
        cls: {
            **{name: float(rates[name][j]) if defined[name][j] else None for name in RATES},
            "support": int(support[j]),
        }
        for j, cls in enumerate(classes)
    }
    return {
        "metrics": {name: float(v) for name, v in zip(METRICS, scorer.values(weights), strict=True)},
        "per_class": per_class,
        "confusion": {"labels": list(classes), "matrix": cm.astype(int).tolist()},
    }


def _bootstrap(
    scorer: _Scorer, *, groups, n_boot: int, alpha: float, seed: int | None
) -> tuple[dict[str, tuple[float, float]], int]:
    """Percentile intervals of :meth:`_Scorer.values` over item or cluster resamples, and the number of groups."""
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ConfigError(f"n_boot must be a positive integer (e.g. 1000), got {n_boot!r}")
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must lie strictly between 0 and 1 (0.05 gives 95 % intervals), got {alpha!r}")
    if groups is None:
        group_of = np.arange(scorer.n)
    else:
        groups = np.asarray(groups)
        if groups.shape != (scorer.n,):
            raise ConfigError(
                f"groups must give one group id per item ({scorer.n}), got an array of shape {groups.shape}"
            )
        group_of = np.unique(groups, return_inverse=True)[1].ravel()
    n_groups = int(group_of.max()) + 1
    rng = np.random.default_rng(seed)
    values = np.empty((n_boot, len(METRICS)))
    for b in range(n_boot):
        drawn = np.bincount(rng.integers(0, n_groups, n_groups), minlength=n_groups)
        values[b] = scorer.values(drawn[group_of])
    quantiles = [100 * alpha / 2, 100 * (1 - alpha / 2)]
    intervals = {}
    for j, name in enumerate(METRICS):
        defined = values[~np.isnan(values[:, j]), j]
        low, high = np.percentile(defined, quantiles) if defined.size else (np.nan, np.nan)
        intervals[name] = (float(low), float(high))
    return intervals, n_groups


def _scorer(y_true: Sequence[str], proba, classes: Sequence[str]) -> tuple[_Scorer, list[str]]:
    """Validate the inputs shared by the public functions and build their :class:`_Scorer`."""
    classes = list(classes)
    if len(classes) < 2 or len(set(classes)) != len(classes):
        raise ConfigError(f"classes must hold at least two distinct names, got {classes!r}")
    proba = np.asarray(proba, dtype=float)
    labels = np.asarray(list(y_true))
    if labels.ndim != 1 or labels.size == 0:
        raise ConfigError(f"y_true must be a non-empty sequence of class names, got shape {labels.shape}")
    if proba.shape != (labels.size, len(classes)):
        raise ConfigError(
            f"proba must have shape (n_items, n_classes) = ({labels.size}, {len(classes)}) to match y_true "
            f"and classes, got {proba.shape}"
        )
    if not np.isfinite(proba).all():
        raise ConfigError("proba must be finite, got NaN or infinite values")
    if proba.min() < 0 or proba.max() > 1:
        raise ConfigError(
            f"proba must hold probabilities in [0, 1], got values from {proba.min():g} to {proba.max():g}"
        )
    worst = int(np.argmax(np.abs(proba.sum(axis=1) - 1)))
    if abs(proba[worst].sum() - 1) > _SUM_TOLERANCE:
        raise ConfigError(
            f"proba must sum to 1 over the classes of each item, got {proba[worst].sum():g} in row {worst}; "
            "pass predict_proba's output, not decision scores"
        )
    distinct, inverse = np.unique(labels, return_inverse=True)
    index = {cls: j for j, cls in enumerate(classes)}
    unknown = [label for label in distinct.tolist() if label not in index]
    if unknown:
        raise ConfigError(f"y_true has labels that are not in classes {classes}: {unknown}")
    codes = np.array([index[label] for label in distinct.tolist()])[inverse.ravel()]
    return _Scorer(codes, proba), classes
