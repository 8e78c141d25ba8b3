"""Benchmark reports: figures as PNG and one self-contained HTML page.

After ``brainmri benchmark``, with its ``results`` dict and pooled predictions::

    write_figures(results, predictions, out_dir)  # out_dir/figures/*.png
    write_report(results, predictions, out_dir)   # out_dir/report.html
"""

from __future__ import annotations

from brainmri.report.charts import figure_png
from brainmri.report.figures import (
    confusion_matrix_figure,
    metric_comparison_figure,
    reliability_figure,
    render_figures,
    roc_curves_figure,
    write_figures,
)
from brainmri.report.html import render_report, write_report

__all__ = [
    "confusion_matrix_figure",
    "figure_png",
    "metric_comparison_figure",
    "reliability_figure",
    "render_figures",
    "render_report",
    "roc_curves_figure",
    "write_figures",
    "write_report",
]
