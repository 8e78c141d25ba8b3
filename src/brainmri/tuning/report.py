"""The report of ``brainmri tune``: one self-contained HTML file in the benchmark report's style.

Sections: the search (objective, protocol note that the test set was used
once, best-so-far curves of every sampler in one plot, parameter
importances, the best configuration and how to reuse it), then the test of
the best configuration exactly as the benchmark report shows a method
(metrics with confidence intervals, deduplicated scores, pairwise tests
between samplers with ``--compare``, confusion matrix, ROC, reliability),
then the configuration.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from brainmri.files import write_text
from brainmri.report.charts import colors, figure_png, new_figure
from brainmri.report.comparison_sections import comparison_section, pairwise_section
from brainmri.report.figures import render_figures, write_figures
from brainmri.report.method_sections import method_section
from brainmri.report.parts import CSS, escape_html, image, key_values, number, table
from brainmri.report.sections import protocol_section

logger = logging.getLogger(__name__)


def best_so_far_figure(searches: dict):
    """Best inner score after each finished trial, one line per sampler (the mean over outer folds).

    Parameters
    ----------
    searches : dict
        ``results["searches"]``: sampler -> fold -> search summary with a
        ``best_so_far`` list (None until the first complete trial).

    Returns
    -------
    matplotlib.figure.Figure
        One axes: x the number of finished trials, y the best inner score so far.
    """
    fig = new_figure(6.4, 3.6)
    ax = fig.add_subplot()
    for color, (sampler, by_fold) in zip(colors(len(searches)), searches.items(), strict=True):
        curves = [s["best_so_far"] for s in by_fold.values()]
        n = min(len(c) for c in curves)
        values = np.array([[np.nan if v is None else v for v in c[:n]] for c in curves], dtype=float)
        with np.errstate(all="ignore"):
            mean = np.nanmean(values, axis=0) if not np.isnan(values).all() else values[0]
        ax.step(np.arange(1, n + 1), mean, where="post", color=color, label=sampler)
    ax.set_xlabel("finished trials")
    ax.set_ylabel(
        "best inner score so far" + (" (mean over folds)" if any(len(b) > 1 for b in searches.values()) else "")
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    return fig


def importances_figure(importances: dict, title: str):
    """Horizontal bars of the parameter importances (largest on top)."""
    items = sorted(importances.items(), key=lambda kv: kv[1])
    fig = new_figure(6.4, 0.5 + 0.4 * max(len(items), 1))
    ax = fig.add_subplot()
    ax.barh([k for k, _ in items], [v for _, v in items], color=colors(1)[0])
    ax.set_xlabel("importance (share of the score's variance)")
    ax.set_title(title)
    ax.set_xlim(0, 1)
    return fig


def render_tune_figures(results: dict, predictions: dict) -> dict[str, bytes]:
    """The benchmark figures of the test (:func:`brainmri.report.figures.render_figures`) plus
    ``"best_so_far"`` and ``"importance/<sampler>/<fold>"``."""
    figures = render_figures(results["test"], predictions)
    figures["best_so_far"] = figure_png(best_so_far_figure(results["searches"]))
    for sampler, by_fold in results["searches"].items():
        for fold, search in by_fold.items():
            if search["importances"]["values"]:
                figures[f"importance/{sampler}/{fold}"] = figure_png(
                    importances_figure(search["importances"]["values"], f"{sampler}, {fold}: parameter importance")
                )
    return figures


def _search(results: dict, figures: dict[str, bytes]) -> str:
    config = results["config"]
    parts = [
        '<h2 id="search">Search</h2>',
        key_values(
            [
                ("method", f"{escape_html(results['method']['name'])}: {escape_html(results['method']['summary'])}"),
                ("samplers", escape_html(", ".join(config["samplers"]))),
                ("trials per study", number(config["trials"])),
                ("objective", escape_html(results["objective"])),
                ("pruner", escape_html(config["pruner"])),
                ("storage", f"<code>{escape_html(results['storage'])}</code>"),
            ]
        ),
        '<div class="callout"><strong>No selection on the test set:</strong> every configuration was scored by '
        "grouped inner cross-validation on the training part only. The test part was used once, after the "
        "search, for the configuration with the best inner score.</div>",
        image(
            figures["best_so_far"],
            "best inner score so far against finished trials",
            "Best inner score after each finished trial (pruned trials count as finished).",
        ),
    ]
    parts.append(_best_configurations(results))
    parts.append(
        f"<p><code>best_params.json</code> ({escape_html(results['best_params_from'])}) is a <code>--params</code> "
        "file: <code>brainmri train DATA --method "
        f"{escape_html(results['method']['name'])} --params best_params.json</code> or <code>brainmri benchmark DATA "
        f"--methods {escape_html(results['method']['name'])} --params best_params.json</code>.</p>"
    )
    parts.append(_importance(results, figures))
    return "".join(parts)


def _best_configurations(results: dict) -> str:
    """The table of the best configuration of each sampler and fold."""
    rows = []
    for sampler, by_fold in results["searches"].items():
        for fold, s in by_fold.items():
            params = ", ".join(
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in s["best"]["params"].items()
            )
            states = ", ".join(f"{n} {state}" for state, n in s["states"].items())
            rows.append(
                [
                    escape_html(sampler),
                    escape_html(fold),
                    number(s["n_trials"]),
                    escape_html(states),
                    number(s["best"]["value"]),
                    number(s["best"]["number"]),
                    escape_html(params),
                ]
            )
    return "<h3>Best configurations</h3>" + table(
        ["sampler", "fold", "finished trials", "states", "best inner score", "trial", "configuration"],
        rows,
        numeric_from=2,
    )


def _importance(results: dict, figures: dict[str, bytes]) -> str:
    """Parameter importance of each study: its figure, or why there is none."""
    images, notes = [], []
    for sampler, by_fold in results["searches"].items():
        for fold, s in by_fold.items():
            key = f"importance/{sampler}/{fold}"
            if key in figures:
                images.append(image(figures[key], f"parameter importance, {sampler} {fold}"))
            else:
                notes.append(
                    f"{escape_html(sampler)} {escape_html(fold)}: {escape_html(s['importances'].get('reason', 'none'))}"
                )
    parts = ["<h3>Parameter importance</h3>"]
    method = next(
        (
            s["importances"]["method"]
            for b in results["searches"].values()
            for s in b.values()
            if s["importances"]["method"]
        ),
        None,
    )
    if method:
        parts.append(f'<p class="small">{escape_html(method)}, over the complete trials of each study.</p>')
    if images:
        parts.append('<div class="figures">' + "".join(images) + "</div>")
    if notes:
        parts.append("<p>No importance for " + "; ".join(notes) + ".</p>")
    return "".join(parts)


def render_tune_report(results: dict, predictions: dict, figures: dict[str, bytes] | None = None) -> str:
    """The tune report as one self-contained HTML page (inline CSS, base64 figures, every string escaped)."""
    if figures is None:
        figures = render_tune_figures(results, predictions)
    test = results["test"]
    body = [
        "<h1>brainmri tune report</h1>",
        f'<p class="meta">Created {escape_html(results["created"])} with brainmri '
        f"{escape_html(results['brainmri_version'])} &middot; data <code>{escape_html(results['config']['data'])}</code> "
        f"&middot; method {escape_html(results['method']['name'])}</p>",
        _search(results, figures),
        protocol_section(test),
        comparison_section(test, figures),
        pairwise_section(test) if test["comparisons"] else "",
        '<h2 id="methods">Best configuration of each sampler, tested</h2>',
        *(method_section(name, k, m, figures) for k, (name, m) in enumerate(test["methods"].items())),
        '<h2 id="config">Configuration</h2><p>The settings of this tune; with the same data, brainmri version and '
        "trials in the storage they reproduce it.</p>"
        f"<pre>{escape_html(json.dumps(results['config'], indent=2, default=str))}</pre>",
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>brainmri tune report ({escape_html(results['created'])})</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_tune_report(results: dict, predictions: dict, out_dir: str | Path) -> Path:
    """Write the figures (``figures/``) and ``report.html`` of a tune into ``out_dir``, atomically."""
    figures = render_tune_figures(results, predictions)
    write_figures(results["test"], predictions, out_dir, figures)
    path = write_text(Path(out_dir) / "report.html", render_tune_report(results, predictions, figures))
    logger.info("wrote %s", path)
    return path
