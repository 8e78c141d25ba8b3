"""Evaluation: metrics with bootstrap confidence intervals, and tests for comparing methods."""

from brainmri.evaluation.metrics import METRICS, bootstrap_ci, classification_metrics, summarize
from brainmri.evaluation.stats import corrected_resampled_ttest, holm, mcnemar

__all__ = [
    "METRICS",
    "bootstrap_ci",
    "classification_metrics",
    "corrected_resampled_ttest",
    "holm",
    "mcnemar",
    "summarize",
]
