"""The section of the benchmark report on one method: what it is, its parameters, scores, calibration and figures.

:func:`method_section` returns the HTML fragment of one method (its anchor from
:func:`brainmri.report.sections.method_anchor`); :func:`brainmri.report.html.render_report`
puts one per method under "Methods", and the tuning report reuses it for its
best configuration.
"""

from __future__ import annotations

import json
import math

from brainmri.evaluation.coverage import TEST_PARTS
from brainmri.report.parts import (
    coverage_callout,
    dict_table,
    escape_html,
    image,
    is_number,
    metric_cell,
    metric_label,
    metric_value,
    number,
    ordered_metrics,
    table,
)
from brainmri.report.sections import method_anchor


def _calibration(m: dict) -> str:
    """Mean confidence against accuracy, with the ECE and Brier score; empty without a calibration block."""
    calibration = m.get("calibration")
    if not calibration:
        return ""
    metrics = m.get("metrics", {})
    confidence, accuracy = calibration.get("mean_confidence"), metric_value(metrics.get("accuracy"))
    gap = (confidence - accuracy) * 100 if is_number(confidence) else math.nan
    if math.isnan(gap):
        verdict = ""
    elif abs(gap) < 0.05:
        verdict = " (as confident as it is accurate)"
    else:
        verdict = f" ({'over' if gap > 0 else 'under'}confident by {abs(gap):.1f} percentage points)"
    return (
        f"<h4>Calibration</h4><p>Mean confidence (top-class probability) {number(confidence)} at accuracy "
        f"{number(accuracy)}{verdict}; ECE {metric_cell(metrics.get('ece'))}, Brier score {metric_cell(metrics.get('brier'))} "
        "(lower is better for both; 0 when every probability is right).</p>"
    )


def method_section(name: str, index: int, m: dict, figures: dict[str, bytes]) -> str:
    """The section of method ``name`` (the ``index``-th of the run) from its results ``m`` and the report's figures:
    summary, reference, parameters, metrics, per-class and per-fold tables, timing, calibration and its figures."""
    parts = [f'<h3 id="{method_anchor(name, index)}">{escape_html(name)}</h3>']
    if m.get("summary"):
        parts.append(f"<p>{escape_html(m['summary'])}</p>")
    if m.get("reference"):
        parts.append(f'<p class="small">Reference: {escape_html(m["reference"])}</p>')
    parts.append(_parameters(m.get("params") or {}))
    parts.append(_metrics(m))
    parts.append(_breakdowns(m))
    parts.append(_calibration(m))
    parts.append(_figures(name, figures))
    parts.append(_pictures(name, m, figures))
    return "".join(parts)


def _parameters(params: dict) -> str:
    """The method's parameters as a table, each value as written (JSON unless a string)."""
    return "<h4>Parameters</h4>" + (
        table(
            ["parameter", "value"],
            [
                [escape_html(k), escape_html(v if isinstance(v, str) else json.dumps(v, default=str))]
                for k, v in params.items()
            ],
            numeric_from=2,
        )
        if params
        else "<p>Defaults of the method.</p>"
    )


def _metrics(m: dict) -> str:
    """Every metric with its interval, beside its value on the deduplicated test items where the results have it,
    and under them the warning that a test part lacks a class where one does."""
    metrics, dedup = m.get("metrics", {}), m.get("metrics_deduplicated") or {}
    header = ["metric", "all test items" if dedup else "value [CI]"] + (["deduplicated test items"] if dedup else [])
    rows = [
        [escape_html(metric_label(k)), metric_cell(metrics[k])]
        + ([metric_cell(dedup.get(k)) if k in dedup else "n/a"] if dedup else [])
        for k in ordered_metrics(metrics)
    ]
    statements = "".join(coverage_callout({"": m}, suffix) for suffix in TEST_PARTS)
    return "<h4>Metrics</h4>" + table(header, rows) + statements


def _breakdowns(m: dict) -> str:
    """The per-class and per-fold tables and the timing, each where the results have it."""
    parts = []
    if m.get("per_class"):
        parts.append("<h4>Per class</h4>" + dict_table(m["per_class"], "class"))
    if m.get("per_fold"):
        parts.append("<h4>Per fold</h4>" + dict_table(m["per_fold"], "fold", summary=True))
    timing = m.get("timing_s") or {}
    if timing:
        parts.append(
            '<p class="small">Time (s): '
            + ", ".join(f"{escape_html(k)} {number(v)}" for k, v in timing.items())
            + "</p>"
        )
    return "".join(parts)


def _figures(name: str, figures: dict[str, bytes]) -> str:
    """The method's confusion matrix, ROC curves, reliability diagram and learning curves that were drawn."""
    reliability = (
        "Below the diagonal the method is overconfident, above it underconfident; "
        "the bars count the test items in each confidence bin."
    )
    images = [
        image(figures[key], f"{kind} of {name}", caption)
        for key, kind, caption in (
            (f"confusion/{name}", "confusion matrix", ""),
            (f"roc/{name}", "ROC curves", ""),
            (f"reliability/{name}", "reliability diagram", reliability),
            (
                f"learning/{name}",
                "learning curves",
                "Per epoch on the grouped validation part of the training data; the weights of the best epoch are kept.",
            ),
        )
        if key in figures
    ]
    if not images:
        return ""
    return '<div class="figures">' + "".join(images) + "</div>"


def _pictures(name: str, m: dict, figures: dict[str, bytes]) -> str:
    """The method's own illustrations and its attribution maps, each under a heading that says what they show."""
    illustrations = (
        "<h4>Illustrations</h4><p>What the method computes on a few test images of the first fold, "
        "as the method draws them.</p>"
    )
    explanations = (
        "<h4>Where the method looked</h4><p>Attribution maps (Grad-CAM for networks on the images, "
        "occlusion otherwise) of the most confident correct and the most confident wrong prediction "
        "of each class in the first fold, for the class the method called. Red: what raised that "
        "class's score most. A map on the border or the skull rather than the brain is a warning "
        "that the method learned the collection, not the disease.</p>"
    )
    parts = []
    for kind, intro in (("illustration", illustrations), ("explanation", explanations)):
        pictures = [
            image(figures[key], caption, caption)
            for k, caption in enumerate(m.get(f"{kind}s") or [])
            if (key := f"{kind}/{name}/{k}") in figures
        ]
        if pictures:
            parts.append(intro + '<div class="figures">' + "".join(pictures) + "</div>")
    return "".join(parts)
