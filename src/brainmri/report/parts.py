"""The parts every HTML report of brainmri is made of: the style, escaping, number formats, tables, figures.

The benchmark report (:mod:`brainmri.report.html`), the tuning report and the
region report build their pages from these, so that they read alike; every
string that comes from data goes through :func:`escape_html`.
"""

from __future__ import annotations

import base64
import math
from html import escape

import numpy as np

from brainmri.evaluation.coverage import coverage_statements

#: Display names of metrics; also their column order (others follow, sorted).
METRIC_NAMES = {
    "n_train": "training items",
    "n_test": "test items",
    "accuracy": "accuracy",
    "balanced_accuracy": "balanced accuracy",
    "macro_f1": "macro F1",
    "auc": "AUC",
    "sensitivity": "sensitivity",
    "specificity": "specificity",
    "precision": "precision",
    "brier": "Brier score",
    "ece": "ECE",
    "mean_confidence": "mean confidence",
    "f1": "F1",
    "support": "support",
}


#: Metrics drawn by :func:`metric_comparison_figure`, with their axis labels (all higher-is-better).
CHART_METRICS = {k: METRIC_NAMES[k] for k in ("accuracy", "balanced_accuracy", "macro_f1", "auc")}


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       max-width: 1100px; margin: 2rem auto; padding: 0 1rem; color: #1f2328; line-height: 1.5; }
h1 { margin-bottom: 0.2rem; }
h2 { border-bottom: 2px solid #d0d7de; padding-bottom: 0.2rem; margin-top: 2.5rem; }
h3 { margin-top: 2rem; }
.meta { color: #57606a; margin-top: 0; }
table { border-collapse: collapse; margin: 0.8rem 0; font-size: 0.92rem; }
th, td { border: 1px solid #d0d7de; padding: 0.3rem 0.6rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; }
tbody tr:nth-child(even) { background: #fafbfc; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.table-wrap { max-width: 100%; overflow-x: auto; }
.ci { display: block; font-size: 0.8em; color: #57606a; }
.callout { border-left: 5px solid #d97706; background: #fff8e6; padding: 0.6rem 1rem; margin: 1rem 0; }
.callout.alert { border-left-color: #cf222e; background: #ffebe9; }
.callout ul { margin: 0.3rem 0; padding-left: 1.2rem; }
figure { margin: 1rem 0; }
figure img { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
.figures { display: flex; flex-wrap: wrap; gap: 1rem; align-items: flex-start; }
.figures figure { flex: 1 1 420px; }
figcaption { color: #57606a; font-size: 0.88rem; }
pre { background: #f6f8fa; border: 1px solid #d0d7de; padding: 0.8rem; overflow-x: auto; font-size: 0.85rem; }
nav ul { columns: 2; }
.small { color: #57606a; font-size: 0.88rem; }
"""


def escape_html(value) -> str:
    """Escape anything for HTML text or attribute values."""
    return escape(str(value), quote=True)


def is_number(x) -> bool:
    return isinstance(x, (int, float, np.number)) and not isinstance(x, bool)


def number(x) -> str:
    """A number to 3 decimals (integers as they are); NaN or missing as ``n/a``."""
    if x is None or (is_number(x) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(int(x))
    if is_number(x):
        return f"{x:.3f}"
    return escape_html(x)


def p_value(x) -> str:
    """A p-value: 3 decimals, or ``&lt; 0.001`` below that."""
    if is_number(x) and math.isfinite(x) and x < 0.001:
        return "&lt; 0.001"
    return number(x)


def metric_cell(m) -> str:
    """``{"value", "ci_low", "ci_high"}`` as ``0.953 [0.941, 0.964]``, the interval on a line of its own."""
    if not isinstance(m, dict):
        return number(m)
    lo, hi = m.get("ci_low"), m.get("ci_high")
    if lo is None and hi is None:
        return number(m.get("value"))
    return f'{number(m.get("value"))} <span class="ci">[{number(lo)}, {number(hi)}]</span>'


def metric_value(m) -> float:
    """The value of a metric (dict or number) as a float, NaN when missing."""
    v = m.get("value") if isinstance(m, dict) else m
    return float(v) if is_number(v) and math.isfinite(v) else math.nan


def yes_no(flag) -> str:
    return "n/a" if flag is None else ("yes" if flag else "no")


def metric_label(key: str) -> str:
    return METRIC_NAMES.get(key, key.replace("_", " "))


def ordered_metrics(keys) -> list[str]:
    """Keys in the order of :data:`METRIC_NAMES`, unknown ones after, sorted."""
    keys = list(dict.fromkeys(keys))
    return [k for k in METRIC_NAMES if k in keys] + sorted(k for k in keys if k not in METRIC_NAMES)


def table(header: list[str] | None, rows: list[list[str]], numeric_from: int = 1) -> str:
    """A table from cells that are already HTML; columns from ``numeric_from`` on are right-aligned.

    The table scrolls sideways inside the page when it is wider than the page.
    """
    head = "<thead><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr></thead>" if header else ""
    body = "".join(
        "<tr>"
        + "".join(f'<td class="num">{c}</td>' if j >= numeric_from else f"<td>{c}</td>" for j, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f'<div class="table-wrap"><table>{head}<tbody>{body}</tbody></table></div>'


def key_values(pairs: list[tuple[str, str]]) -> str:
    return table(None, [[f"<strong>{escape_html(k)}</strong>", v] for k, v in pairs], numeric_from=2)


def image(png: bytes, alt: str, caption: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{escape_html(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{escape_html(alt)}">{cap}</figure>'


#: Columns of per-class and per-fold tables that count items.
COUNTS = ("n_train", "n_test", "support")


def dict_table(items: dict[str, dict] | list[dict], first: str, *, summary: bool = False) -> str:
    """A table with one row per dict; ``first`` names the row-label column.

    ``summary`` adds mean and standard deviation rows (over the dicts); those
    of the count columns (:data:`COUNTS`) are rounded to integers.
    """
    if isinstance(items, dict):
        items = [{first: k, **v} for k, v in items.items()]
    keys = ordered_metrics(k for it in items for k in it if k != first)
    rows = [[escape_html(it.get(first, ""))] + [number(it.get(k)) for k in keys] for it in items]
    if summary and len(items) > 1:
        values = [np.array([metric_value(it.get(k)) for it in items]) for k in keys]
        for stat, fn in (("mean", np.mean), ("sd", lambda v: np.std(v, ddof=1))):
            rows.append(
                [f"<em>{stat}</em>"]
                + [
                    "" if np.isnan(v).any() else f"{fn(v):.0f}" if k in COUNTS else number(float(fn(v)))
                    for k, v in zip(keys, values, strict=True)
                ]
            )
    return table([escape_html(first)] + [escape_html(metric_label(k)) for k in keys], rows)


def coverage_callout(methods: dict, suffix: str = "") -> str:
    """A warning that says how a test part (``suffix``, as in :func:`coverage_statements`) of these methods lacks
    a class, so that its figures are not read as covering every class; empty when it lacks none."""
    statements = coverage_statements(methods, suffix)
    if not statements:
        return ""
    return (
        '<div class="callout"><strong>Not every class is in the test.</strong> '
        + " ".join(f"The {escape_html(statement)}." for statement in statements)
        + "</div>"
    )
