"""Classification metrics of predicted probabilities, with bootstrap confidence intervals.

* :func:`classification_metrics` scores one set of predictions: the
  :data:`METRICS`, per-class rates and the confusion matrix.
* :func:`bootstrap_ci` gives percentile bootstrap intervals for every metric,
  resampling items or, when ``groups`` is given, whole groups (subjects or
  duplicate clusters), so that near-copies of an image do not pass for
  independent evidence.
* :func:`summarize` combines both into the JSON-ready block that reports use.

Conventions
-----------
The predicted class is the argmax of the probabilities. A rate whose
denominator is zero (the recall of a class absent from ``y_true``, the
precision of a class never predicted) counts as 0, as scikit-learn's
``zero_division=0`` does, and the macro averages ``sensitivity``,
``specificity``, ``precision`` and ``macro_f1`` are plain means over all
``classes``. ``balanced_accuracy`` follows
:func:`sklearn.metrics.balanced_accuracy_score`: the mean recall over the
classes present in ``y_true``. The two therefore differ only when a class is
absent from ``y_true``.

``auc`` is the one-vs-rest macro ROC AUC (scikit-learn's
``roc_auc_score(multi_class="ovr", average="macro")``): the mean over the
classes present in ``y_true`` of the AUC of "this class against the rest",
scored by its own probability column. With two classes it is the binary AUC
of the second column. It is NaN when fewer than two classes are present.

Everything is computed from item weights (1 for each item; the number of
times an item was drawn in a bootstrap resample) with :func:`numpy.bincount`,
so a resample costs a few passes over the data and the point estimate and
the bootstrap share one code path. The AUC is the Mann-Whitney statistic
(ties count one half), which is exactly the area under the ROC curve.

References
----------
B. Efron and R. J. Tibshirani, *An Introduction to the Bootstrap*, Chapman &
Hall, 1993 (percentile intervals; chapter 13).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brainmri.errors import ConfigError

#: Names of the metrics, in the order every result lists them.
METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auc", "sensitivity", "specificity", "precision")

#: Per-class rates, in the order ``per_class`` lists them (followed by ``support``).
_RATES = ("sensitivity", "specificity", "precision", "f1")


def classification_metrics(y_true: Sequence[str], proba, classes: Sequence[str]) -> dict:
    """Score predicted class probabilities against true labels.

    Parameters
    ----------
    y_true : sequence of str, length n
        True class of every item; each must be one of ``classes``.
    proba : array-like of float, shape (n, n_classes)
        Predicted probabilities; column ``j`` belongs to ``classes[j]``. Rows
        need not sum to 1 (only the argmax and the ranking within a column
        matter).
    classes : sequence of str, length n_classes >= 2
        Class names, unique.

    Returns
    -------
    dict
        ``{"metrics": {name: float}, "per_class": {class: {"sensitivity",
        "specificity", "precision", "f1": float, "support": int}},
        "confusion": {"labels": list of str, "matrix": list of lists of int}}``.
        ``metrics`` has every name in :data:`METRICS`; ``matrix[i][j]`` counts
        items of class ``labels[i]`` predicted as ``labels[j]``. Values are
        plain Python numbers; ``auc`` is NaN when fewer than two classes occur
        in ``y_true``. See the module docstring for how undefined rates count.

    Raises
    ------
    ConfigError
        If the shapes disagree, a label is not in ``classes`` or ``proba`` is
        not finite.

    Examples
    --------
    >>> out = classification_metrics(["a", "a", "b"], [[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]], ["a", "b"])
    >>> out["confusion"]["matrix"]
    [[1, 1], [0, 1]]
    >>> out["metrics"]["accuracy"], out["metrics"]["balanced_accuracy"], out["metrics"]["auc"]
    (0.6666666666666666, 0.75, 1.0)
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
    return _bootstrap(scorer, groups=groups, n_boot=n_boot, alpha=alpha, seed=seed)


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
        "confusion": ..., "n": int}`` with ``per_class`` and ``confusion`` as
        in :func:`classification_metrics` and ``n`` the number of items. All
        numbers are plain Python ``float`` / ``int`` (NaN where undefined), so
        the result can be written with :func:`json.dump`.
    """
    scorer, classes = _scorer(y_true, proba, classes)
    point = _point_estimate(scorer, classes)
    intervals = _bootstrap(scorer, groups=groups, n_boot=n_boot, alpha=0.05, seed=seed)
    metrics = {
        name: {"value": value, "ci_low": intervals[name][0], "ci_high": intervals[name][1]}
        for name, value in point["metrics"].items()
    }
    return {"metrics": metrics, "per_class": point["per_class"], "confusion": point["confusion"], "n": scorer.n}


class _Scorer:
    """The metrics of fixed predictions under item weights.

    Everything that does not depend on the weights (the confusion-matrix cell
    of each item, the rank of each item's score in every AUC column) is
    computed once here; :meth:`values` then costs a few :func:`numpy.bincount`
    calls, which is what makes thousands of bootstrap resamples cheap.
    """

    def __init__(self, codes: np.ndarray, proba: np.ndarray):
        self.n, self.k = proba.shape
        self.cells = codes * self.k + np.argmax(proba, axis=1)
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

    def values(self, weights: np.ndarray) -> np.ndarray:
        """Every metric of :data:`METRICS`, in that order, as a float array."""
        cm = self.confusion(weights)
        rates, support = _rates(cm)
        metrics = {
            "accuracy": np.trace(cm) / cm.sum(),
            "balanced_accuracy": rates["sensitivity"][support > 0].mean(),
            "macro_f1": rates["f1"].mean(),
            "auc": self.auc(weights),
            "sensitivity": rates["sensitivity"].mean(),
            "specificity": rates["specificity"].mean(),
            "precision": rates["precision"].mean(),
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
    per_class = {
        cls: {**{name: float(rates[name][j]) for name in _RATES}, "support": int(support[j])}
        for j, cls in enumerate(classes)
    }
    return {
        "metrics": {name: float(v) for name, v in zip(METRICS, scorer.values(weights))},
        "per_class": per_class,
        "confusion": {"labels": list(classes), "matrix": cm.astype(int).tolist()},
    }


def _bootstrap(
    scorer: _Scorer, *, groups, n_boot: int, alpha: float, seed: int | None
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of :meth:`_Scorer.values` over item or cluster resamples."""
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
    return intervals


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
    distinct, inverse = np.unique(labels, return_inverse=True)
    index = {cls: j for j, cls in enumerate(classes)}
    unknown = [label for label in distinct.tolist() if label not in index]
    if unknown:
        raise ConfigError(f"y_true has labels that are not in classes {classes}: {unknown}")
    codes = np.array([index[label] for label in distinct.tolist()])[inverse.ravel()]
    return _Scorer(codes, proba), classes
