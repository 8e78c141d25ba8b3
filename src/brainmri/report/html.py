"""The benchmark report: one self-contained HTML file.

:func:`render_report` turns the ``results`` of ``brainmri benchmark`` and its
pooled predictions into a page that needs nothing else: CSS inline, every
figure a base64 PNG, no script, no external link. Every string that comes from
the data is escaped. Sections, in order: protocol (its notes first), results
(chart, comparison table, pairwise tests), robustness to acquisition shifts
(with ``--shift``), dataset, audit, one section per method, and the
configuration as JSON so the run can be repeated.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from brainmri.files import write_text
from brainmri.report.comparison_sections import comparison_section, cost_section, pairwise_section
from brainmri.report.figures import render_figures
from brainmri.report.method_sections import method_section
from brainmri.report.parts import CSS, escape_html
from brainmri.report.robustness_sections import ood_section, shift_section
from brainmri.report.sections import (
    audit_section,
    dataset_section,
    method_anchor,
    preprocessing_text,
    protocol_section,
)

logger = logging.getLogger(__name__)


# ---------------------------------------------------------------- formatting


# ---------------------------------------------------------------- sections


def _header(results: dict) -> str:
    config = results.get("config", {})
    methods = ", ".join(escape_html(m) for m in results["methods"])
    return (
        "<h1>brainmri benchmark report</h1>"
        f'<p class="meta">Created {escape_html(results.get("created", "n/a"))} with brainmri '
        f"{escape_html(results.get('brainmri_version', 'n/a'))} &middot; data "
        f"<code>{escape_html(config.get('data', results.get('dataset', {}).get('path', 'n/a')))}</code>"
        f" &middot; methods: {methods}"
        f" &middot; preprocessing: {escape_html(preprocessing_text(config.get('preprocess') or {}))}</p>"
    )


def _contents(results: dict) -> str:
    items = [
        ("protocol", "Protocol"),
        ("results", "Results"),
        ("pairwise", "Pairwise comparisons"),
        ("dataset", "Dataset"),
        ("audit", "Audit"),
    ]
    if results.get("shift"):
        items.insert(2, ("shift", "Robustness to shifts"))
    if any("ood" in m for m in results["methods"].values()):
        items.insert(3 if results.get("shift") else 2, ("ood", "Unlike the training data"))
    items += [(method_anchor(name, k), escape_html(name)) for k, name in enumerate(results["methods"])]
    items.append(("config", "Configuration"))
    return "<nav><ul>" + "".join(f'<li><a href="#{a}">{t}</a></li>' for a, t in items) + "</ul></nav>"


def _config(results: dict) -> str:
    text = json.dumps(results.get("config", {}), indent=2, default=str)
    return (
        '<h2 id="config">Configuration</h2>'
        "<p>The settings of this run; with the same data and brainmri version they reproduce it.</p>"
        f"<pre>{escape_html(text)}</pre>"
    )


# ---------------------------------------------------------------- public


def render_report(results: dict, predictions: dict[str, dict], figures: dict[str, bytes] | None = None) -> str:
    """Render the benchmark report as one self-contained HTML document.

    Parameters
    ----------
    results : dict
        The benchmark results (the content of ``results.json``).
    predictions : dict of str to dict
        Method name -> ``{"y_true", "proba", "classes"}`` pooled over folds, for
        the ROC curves (see :func:`brainmri.report.figures.render_figures`).
    figures : dict of str to bytes, optional
        Figures already drawn by ``render_figures``; drawn here when None.

    Returns
    -------
    str
        The HTML page: inline CSS, figures as ``data:image/png;base64`` URIs,
        no script and no external resource; every string from ``results`` is
        escaped. Numbers have 3 decimals; NaN or missing values read ``n/a``.
    """
    if figures is None:
        figures = render_figures(results, predictions)
    body = [
        _header(results),
        _contents(results),
        protocol_section(results),
        comparison_section(results, figures),
        cost_section(results),
        shift_section(results, figures),
        ood_section(results, figures),
        pairwise_section(results),
        dataset_section(results),
        audit_section(results),
        '<h2 id="methods">Methods</h2>',
        *(method_section(name, k, m, figures) for k, (name, m) in enumerate(results["methods"].items())),
        _config(results),
    ]
    title = f"brainmri benchmark report ({escape_html(results.get('created', ''))})"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{CSS}</style>\n</head>\n<body>\n" + "\n".join(body) + "\n</body>\n</html>\n"
    )


def write_report(
    results: dict, predictions: dict[str, dict], out_dir: str | Path, figures: dict[str, bytes] | None = None
) -> Path:
    """Write :func:`render_report` to ``out_dir/report.html`` atomically and return its path."""
    path = write_text(Path(out_dir) / "report.html", render_report(results, predictions, figures))
    logger.info("wrote %s", path)
    return path
