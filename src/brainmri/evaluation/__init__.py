"""Evaluation: metrics with bootstrap confidence intervals, and tests for comparing methods."""

from brainmri.evaluation.metrics import (
    ECE_BINS,
    LOWER_IS_BETTER,
    METRICS,
    bootstrap_ci,
    classification_metrics,
    interval_statement,
    summarize,
)
from brainmri.evaluation.stats import corrected_resampled_ttest, holm, mcnemar

__all__ = [
    "ECE_BINS",
    "LOWER_IS_BETTER",
    "METRICS",
    "bootstrap_ci",
    "classification_metrics",
    "corrected_resampled_ttest",
    "holm",
    "interval_statement",
    "mcnemar",
    "summarize",
]
