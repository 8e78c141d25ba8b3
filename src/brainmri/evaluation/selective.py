"""Selective classification: the accuracy kept when a model abstains on the items it scores as least trustworthy.

A flag that sets predictions aside (the out-of-distribution score of
:mod:`brainmri.robust.ood`, or a low confidence) is worth what it buys: the
accuracy of the predictions it keeps, against the share it keeps. The
risk-coverage curve (Geifman and El-Yaniv 2017) orders the items by a
score, keeps the ``coverage`` share with the lowest scores and reports
their accuracy; a useful score gives a curve that rises as coverage falls,
a useless one a flat curve at the overall accuracy. Its area (here the mean
accuracy over the coverages) summarises it in one number. Written here
because scikit-learn has no selective-classification metric; it is a
sort and a cumulative sum.

References
----------
Y. Geifman and R. El-Yaniv, "Selective classification for deep neural
networks", NeurIPS 30, 4878-4887, 2017.
"""

from __future__ import annotations

import numpy as np

#: Coverages at which the curve is reported: 10 %, 20 %, ... 100 % of the items.
COVERAGES = tuple(round(0.1 * k, 1) for k in range(1, 11))


def risk_coverage(right, score, coverages=COVERAGES) -> dict:
    """Accuracy of the items kept when only the ``coverage`` share with the lowest ``score`` is kept.

    Parameters
    ----------
    right : array-like of bool, shape (n,)
        Whether each prediction is right.
    score : array-like of float, shape (n,)
        Higher means less trustworthy (an OOD score, or 1 - confidence).
        Ties are broken by input order (a stable sort), so the result does
        not depend on chance.
    coverages : sequence of float in (0, 1]

    Returns
    -------
    dict
        ``{"coverage": list of float, "accuracy": list of float,
        "mean_accuracy": float}``: for each coverage c, the accuracy of the
        ``max(1, round(c * n))`` items kept; ``mean_accuracy`` is their
        mean (the area under the accuracy-coverage curve). Empty lists and
        None for n = 0.

    Examples
    --------
    >>> out = risk_coverage([True, True, False, False], [0.1, 0.2, 0.9, 0.3], coverages=(0.5, 0.75, 1.0))
    >>> out["accuracy"], out["mean_accuracy"]
    ([1.0, 0.6667, 0.5], 0.7222)
    """
    right = np.asarray(right, dtype=bool)
    score = np.asarray(score, dtype=np.float64)
    if right.shape != score.shape or right.ndim != 1:
        raise ValueError(f"right and score must be 1-D arrays of one length, got {right.shape} and {score.shape}")
    if not len(right):
        return {"coverage": [], "accuracy": [], "mean_accuracy": None}
    kept_right = np.cumsum(right[np.argsort(score, kind="stable")])
    counts = [max(1, int(round(c * len(right)))) for c in coverages]
    accuracy = [round(float(kept_right[k - 1] / k), 4) for k in counts]
    return {
        "coverage": [float(c) for c in coverages],
        "accuracy": accuracy,
        "mean_accuracy": round(float(np.mean(accuracy)), 4),
    }
