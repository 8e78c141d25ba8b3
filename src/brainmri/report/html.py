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

import base64
import json
import logging
import math
import re
from html import escape
from pathlib import Path

import numpy as np

from brainmri.evaluation.cost import SPEED_ITEMS, format_parameters
from brainmri.evaluation.metrics import LOWER_IS_BETTER, interval_statement
from brainmri.evaluation.shift import SHIFT_METRICS, severity_label
from brainmri.files import write_text
from brainmri.report.figures import METRIC_NAMES, render_figures

logger = logging.getLogger(__name__)

_CSS = """
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


# ---------------------------------------------------------------- formatting


def _e(value) -> str:
    """Escape anything for HTML text or attribute values."""
    return escape(str(value), quote=True)


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.number)) and not isinstance(x, bool)


def _num(x) -> str:
    """A number to 3 decimals (integers as they are); NaN or missing as ``n/a``."""
    if x is None or (_is_number(x) and not math.isfinite(x)):
        return "n/a"
    if isinstance(x, (int, np.integer)) and not isinstance(x, bool):
        return str(int(x))
    if _is_number(x):
        return f"{x:.3f}"
    return _e(x)


def _p(x) -> str:
    """A p-value: 3 decimals, or ``&lt; 0.001`` below that."""
    if _is_number(x) and math.isfinite(x) and x < 0.001:
        return "&lt; 0.001"
    return _num(x)


def _metric(m) -> str:
    """``{"value", "ci_low", "ci_high"}`` as ``0.953 [0.941, 0.964]``, the interval on a line of its own."""
    if not isinstance(m, dict):
        return _num(m)
    lo, hi = m.get("ci_low"), m.get("ci_high")
    if lo is None and hi is None:
        return _num(m.get("value"))
    return f'{_num(m.get("value"))} <span class="ci">[{_num(lo)}, {_num(hi)}]</span>'


def _value(m) -> float:
    """The value of a metric (dict or number) as a float, NaN when missing."""
    v = m.get("value") if isinstance(m, dict) else m
    return float(v) if _is_number(v) and math.isfinite(v) else math.nan


def _yes_no(flag) -> str:
    return "n/a" if flag is None else ("yes" if flag else "no")


def _label(key: str) -> str:
    return METRIC_NAMES.get(key, key.replace("_", " "))


def _ordered(keys) -> list[str]:
    """Keys in the order of :data:`METRIC_NAMES`, unknown ones after, sorted."""
    keys = list(dict.fromkeys(keys))
    return [k for k in METRIC_NAMES if k in keys] + sorted(k for k in keys if k not in METRIC_NAMES)


def _table(header: list[str] | None, rows: list[list[str]], numeric_from: int = 1) -> str:
    """A table from cells that are already HTML; columns from ``numeric_from`` on are right-aligned.

    The table scrolls sideways inside the page when it is wider than the page.
    """
    head = "<thead><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr></thead>" if header else ""
    body = "".join(
        "<tr>" + "".join(f'<td class="num">{c}</td>' if j >= numeric_from else f"<td>{c}</td>" for j, c in enumerate(row)) + "</tr>"
        for row in rows
    )
    return f'<div class="table-wrap"><table>{head}<tbody>{body}</tbody></table></div>'


def _key_values(pairs: list[tuple[str, str]]) -> str:
    return _table(None, [[f"<strong>{_e(k)}</strong>", v] for k, v in pairs], numeric_from=2)


def _img(png: bytes, alt: str, caption: str = "") -> str:
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{_e(caption)}</figcaption>" if caption else ""
    return f'<figure><img src="data:image/png;base64,{data}" alt="{_e(alt)}">{cap}</figure>'


def _anchor(name: str, index: int) -> str:
    return f"method-{index}-" + re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-")


def _count(x) -> int | None:
    """An audit count given as a number, or as the list of what it counts."""
    if isinstance(x, (list, tuple)):
        return len(x)
    return x


def _best(values: list[float], key: str) -> float:
    """The best of ``values`` for metric ``key`` (lowest where lower is better); NaN when none is finite."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan
    return min(finite) if key in LOWER_IS_BETTER else max(finite)


def _intervals(results: dict) -> str:
    """How the confidence intervals were computed (every method is scored on the same test items)."""
    bootstrap = next((m["bootstrap"] for m in results["methods"].values() if m.get("bootstrap")), None)
    if bootstrap:
        return _e(interval_statement(bootstrap))
    n_boot = results.get("config", {}).get("n_boot")
    return f"95% percentile bootstrap, {_num(n_boot)} resamples (whether over items or groups is not recorded in these results)"


# ---------------------------------------------------------------- sections


def _header(results: dict) -> str:
    config = results.get("config", {})
    methods = ", ".join(_e(m) for m in results["methods"])
    return (
        "<h1>brainmri benchmark report</h1>"
        f'<p class="meta">Created {_e(results.get("created", "n/a"))} with brainmri '
        f'{_e(results.get("brainmri_version", "n/a"))} &middot; data <code>{_e(config.get("data", results.get("dataset", {}).get("path", "n/a")))}</code>'
        f" &middot; methods: {methods} &middot; preprocessing: {_e(_preprocessing(config.get('preprocess') or {}))}</p>"
    )


def _preprocessing(settings: dict) -> str:
    """The preprocessing of a run in words (``results.json`` omits the later settings at their defaults)."""
    parts = ["crop to the head" if settings.get("crop", True) else "no crop"]
    if settings.get("keep_aspect"):
        parts.append("padded to a square")
    if settings.get("size"):
        parts.append(f"{settings['size']} px")
    if settings.get("n4"):
        parts.append("N4 bias-field correction")
    harmonise = settings.get("harmonise", "none")
    parts.append({"zscore": "z-scored in the head", "nyul": "Nyúl histogram standardisation (landmarks learned on "
                  "each training split)"}.get(harmonise, "no harmonisation"))
    return ", ".join(parts)


def _contents(results: dict) -> str:
    items = [("protocol", "Protocol"), ("results", "Results"), ("pairwise", "Pairwise comparisons"),
             ("dataset", "Dataset"), ("audit", "Audit")]
    if results.get("shift"):
        items.insert(2, ("shift", "Robustness to shifts"))
    if any("ood" in m for m in results["methods"].values()):
        items.insert(3 if results.get("shift") else 2, ("ood", "Unlike the training data"))
    items += [(_anchor(name, k), _e(name)) for k, name in enumerate(results["methods"])]
    items.append(("config", "Configuration"))
    return "<nav><ul>" + "".join(f'<li><a href="#{a}">{t}</a></li>' for a, t in items) + "</ul></nav>"


def _protocol(results: dict) -> str:
    p = results.get("protocol", {})
    parts = ['<h2 id="protocol">Protocol</h2>']
    notes = p.get("notes") or []
    if notes:
        parts.append(
            '<div class="callout"><strong>Read before the numbers:</strong><ul>'
            + "".join(f"<li>{_e(n)}</li>" for n in notes)
            + "</ul></div>"
        )
    dropped = p.get("dropped_duplicates") or {}
    parts.append(
        _key_values(
            [
                ("evaluation", _e(p.get("kind", "n/a"))),
                ("folds", _num(p.get("folds"))),
                ("grouping", _e(p.get("grouping", "n/a"))),
                ("groups", _num(p.get("n_groups"))),
                ("confidence intervals", _intervals(results)),
                ("subject ids known", _yes_no(p.get("subjects_known"))),
                ("test duplicates dropped", str(sum(dropped.values())) if dropped else "none"),
                ("label map", "see below" if p.get("label_map") else "none (classes as found)"),
            ]
        )
    )
    if dropped:
        parts.append("<h3>Test items dropped as duplicates of training items</h3>")
        parts.append(_table(["class", "dropped"], [[_e(c), _num(n)] for c, n in dropped.items()]))
    if p.get("cross_dataset_leaks"):
        parts.append(_cross_dataset_leaks(p["cross_dataset_leaks"]))
    if p.get("label_map"):
        parts.append("<h3>Label map</h3>")
        parts.append(_table(["class in the data", "class used"], [[_e(a), _e(b)] for a, b in p["label_map"].items()], numeric_from=2))
    return "".join(parts)


def _cross_dataset_leaks(block: dict) -> str:
    """External test items that copy a training image: a callout, counts per class and the pairs."""
    n, of = block.get("n_leaking", 0), block.get("n_other", 0)
    parts = ["<h3>Copies of training images in the external test data</h3>"]
    if not n:
        parts.append(f"<p>None of the {_num(of)} external test items copies a training image.</p>")
        return "".join(parts)
    parts.append(
        f'<div class="callout alert"><strong>{_num(n)} of the {_num(of)} external test items copy a training image'
        "</strong> (perceptual hash and structure correlation, after decoding and resizing). A score on them "
        "measures memorisation, not generalisation.</div>"
    )
    rows = [[_e(c), _num(v["leaking"]), _num(v["of"]), _e(", ".join(f"{k} {m}" for k, m in v["matches"].items()))]
            for c, v in block.get("per_class", {}).items()]
    parts.append(_table(["external class", "copies", "of", "training classes copied"], rows))
    pairs = [[_e(x["other_path"]), _e(x["data_path"]), _num(x["similarity"]), _yes_no(x["exact"])] for x in block.get("pairs", [])]
    parts.append("<details><summary>Every copy and its closest training image</summary>"
                 + _table(["external item", "training image", "structure correlation", "exact"], pairs, numeric_from=2)
                 + "</details>")
    return "".join(parts)


def _comparison(results: dict, figures: dict[str, bytes]) -> str:
    methods = results["methods"]
    keys = _ordered(k for m in methods.values() for k in m.get("metrics", {}))
    dedup = {name: m["metrics_deduplicated"] for name, m in methods.items() if m.get("metrics_deduplicated")}
    best = {k: _best([_value(m.get("metrics", {}).get(k)) for m in methods.values()], k) for k in keys}
    best_dedup = _best([_value(d.get("accuracy")) for d in dedup.values()], "accuracy")

    def cell(m, top):
        return f"<strong>{_metric(m)}</strong>" if _value(m) == top else _metric(m)

    header = ["method"] + [_e(_label(k)) for k in keys]
    if dedup:
        header.append("accuracy (deduplicated test)")
    header.append("time (s)")
    rows = []
    for k, (name, m) in enumerate(methods.items()):
        row = [f'<a href="#{_anchor(name, k)}">{_e(name)}</a>']
        row += [cell(m.get("metrics", {}).get(key), best[key]) for key in keys]
        if dedup:
            row.append(cell(dedup[name].get("accuracy"), best_dedup) if name in dedup else "n/a")
        row.append(_num(m.get("timing_s", {}).get("total")))
        rows.append(row)

    parts = ['<h2 id="results">Results</h2>']
    if "metric_comparison" in figures:
        caption = "Bars: point estimates; whiskers: 95% confidence intervals."
        if dedup:
            caption += " Hatched: accuracy on the test items that do not duplicate a training item."
        parts.append(_img(figures["metric_comparison"], "bar chart of the headline metrics of every method", caption))
    parts.append(_table(header, rows))
    lower = ", ".join(_e(_label(k)) for k in keys if k in LOWER_IS_BETTER)
    parts.append(
        f'<p class="small">Each metric: value [95% confidence interval: {_intervals(results)}]. '
        "The best value of each column is in bold: the highest"
        + (f", or the lowest for {lower} (lower is better)" if lower else "") + ".</p>"
    )
    if dedup:
        gaps = []
        for name, d in dedup.items():
            full, clean = _value(methods[name]["metrics"].get("accuracy")), _value(d.get("accuracy"))
            gap = "n/a" if math.isnan(full - clean) else f"{(full - clean) * 100:.1f}"
            gaps.append(f"{_e(name)} {_num(full)} on all test items, {_num(clean)} without them: a gap of {gap} percentage points")
        parts.append(
            '<div class="callout alert"><strong>Duplicate inflation.</strong> Accuracy on all test items against accuracy on the '
            "test items that do not duplicate a training item: " + "; ".join(gaps) + ".</div>"
        )
    return "".join(parts)


def _cost(results: dict) -> str:
    """What each method costs (:mod:`brainmri.evaluation.cost`): network weights, fit time and inference speed."""
    costs = {name: m["cost"] for name, m in results["methods"].items() if "cost" in m}
    if not costs:
        return ""
    order = list(results["methods"])
    rows = []
    for name, c in costs.items():
        inference = c.get("inference") or {}
        rows.append([f'<a href="#{_anchor(name, order.index(name))}">{_e(name)}</a>',
                     _e(format_parameters(c.get("parameters"))), _num(c["fit_s"]["total"]),
                     _num(c["fit_s"]["per_fold"]), _num(inference.get("images_per_s"))])
    return ("<h3>Cost</h3>"
            + _table(["method", "parameters (trainable / total)", "fit (s, all folds)", "fit (s, per fold)",
                      "inference (images/s)"], rows)
            + '<p class="small">Parameters: the weights of the method\'s networks (- for a method without one; '
            "the classifier on frozen embeddings is not counted). Fit: seconds of training, without the features "
            "computed once for all methods before it. Inference: images per second of the prediction on up to "
            f"{SPEED_ITEMS} test items per fold, from the image file, without feature cache.</p>")


def _shift(results: dict, figures: dict[str, bytes]) -> str:
    """The shift benchmark: what each shift does, the mean over shifts per method, and per method the full table."""
    run = results.get("shift")
    if not run:
        return ""
    severities = run["severities"]
    methods = {name: m["shift"] for name, m in results["methods"].items() if m.get("shift")}
    parts = [
        '<h2 id="shift">Robustness to acquisition shifts</h2>',
        "<p>Each fitted method predicted its test images again, altered as another scanner, sequence or export "
        f"would alter them: {len(run['shifts'])} shifts at severities {', '.join(map(str, severities))} "
        f"(on a scale from 1, mild, to 5, severe), on "
        f"{_e(run['subset'])}. The shifts apply to the images as read, before the method's own preprocessing; "
        f"their random draws are seeded (seed {_num(run.get('seed'))}), so a rerun sees the same images.</p>",
    ]
    header = ["method", "metric", "clean"] + [_e(severity_label(s)) for s in severities]
    rows = []
    for name, shift in methods.items():
        mean = shift["mean_over_shifts"]
        for metric in SHIFT_METRICS:
            clean = mean["clean"][metric]
            cells = [f"{_num(mean[str(s)][metric])} ({(mean[str(s)][metric] - clean) * 100:+.1f})" for s in severities]
            rows.append([_e(name), _e(_label(metric)), _num(clean), *cells])
    parts.append("<h3>Mean over shifts</h3>" + _table(header, rows, numeric_from=2))
    parts.append('<p class="small">Clean: the same test items without a shift. In brackets: percentage points '
                 "gained (+) or lost (-) against clean.</p>")
    if "shift_summary" in figures:
        parts.append(_img(figures["shift_summary"], "bar chart of accuracy clean and under shifts per method",
                          "Accuracy averaged over the shifts, per severity, beside the clean accuracy."))
    parts.append(_table(["shift", "imitates", "parameter", "at severities 1-5", "applied by"],
                        [[_e(n), _e(d["description"]), _e(d["parameter"]), _e(", ".join(map(str, d["levels"]))),
                          _e(d["source"])] for n, d in run["shifts"].items()], numeric_from=5))
    for name, shift in methods.items():
        parts.append(f"<h3>{_e(name)} under shifts</h3>")
        for k, metric in enumerate(SHIFT_METRICS):
            header = ["shift", "clean"] + [_e(severity_label(s)) for s in severities]
            table = _table(header, [[_e(n), _metric(shift["clean"][metric]),
                                     *(_metric(by[str(s)][metric]) for s in severities)]
                                    for n, by in shift["shifts"].items()])
            title = f"{_label(metric)} [95% CI] per shift and severity"
            parts.append(f"<h4>{_e(title)}</h4>{table}" if k == 0 else
                         f"<details><summary>{_e(title)}</summary>{table}</details>")
        if f"shift/{name}" in figures:
            parts.append(_img(figures[f"shift/{name}"], f"accuracy of {name} against severity per shift"))
    return "".join(parts)


def _ood(results: dict) -> str:
    """The out-of-distribution score: its detector, how often clean test items are flagged, and with shifts
    how well it tells the most severely shifted test images from the clean ones."""
    methods = {name: m["ood"] for name, m in results["methods"].items() if "ood" in m}
    if not methods:
        return ""
    first = next(iter(methods.values()))
    shifted = [o for o in methods.values() if "shift" in o]
    shifts = list(shifted[0]["shift"]["auc_per_shift"]) if shifted else []
    header = ["method", "clean test flagged", "mean score"]
    if shifted:
        header += [f"AUC shifted (severity {shifted[0]['shift']['severity']}) vs clean", "shifted flagged",
                   *[f"AUC {_e(n)}" for n in shifts]]
    rows = []
    for name, o in methods.items():
        row = [_e(name), _num(o["test_flagged"]), _num(o["test_mean_score"])]
        if "shift" in o:
            row += [_num(o["shift"]["auc"]), _num(o["shift"]["flagged"]),
                    *[_num(o["shift"]["auc_per_shift"].get(n)) for n in shifts]]
        rows.append(row)
    return ('<h2 id="ood">Unlike the training data: the out-of-distribution score</h2>'
            f"<p>Every prediction has a score from 0 (like the training images) to 1 (farther than every training "
            f"image): {_e(first['detector'])}. A test item above the {100 * first['flag_quantile']:g}th training "
            "percentile is flagged (its <code>ood_score</code> in predictions.csv). With shifts, the AUC says how "
            "well the distance tells the shifted test images from the same images clean (1: always; 0.5: chance), "
            "per fold and averaged over the folds.</p>" + _table(header, rows, numeric_from=1))


#: The test that decides a comparison (its ``decided_by``); results written before that key was added used McNemar.
_DECIDERS = {"t_test": "corrected t-test", "mcnemar": "McNemar"}


def _pairwise(results: dict) -> str:
    comparisons = results.get("comparisons") or []
    alpha = results.get("alpha", 0.05)
    alpha = f"{alpha:g}" if _is_number(alpha) else _e(alpha)
    parts = ['<h2 id="pairwise">Pairwise comparisons</h2>']
    if not comparisons:
        parts.append("<p>No pairwise comparison (fewer than two methods).</p>")
        return "".join(parts)
    header = ["method A", "method B", "McNemar n01 (A right, B wrong)", "McNemar n10 (A wrong, B right)", "McNemar p",
              "t-test mean accuracy difference (A &minus; B)", "t-test p", "decided by", "adjusted p (Holm)",
              f"significant at &alpha; = {alpha}"]
    rows = []
    for c in comparisons:
        mc, tt = c.get("mcnemar") or {}, c.get("t_test") or {}
        decided_by = c.get("decided_by", "mcnemar")
        rows.append([
            _e(c["a"]), _e(c["b"]), _num(mc.get("n01")), _num(mc.get("n10")), _p(mc.get("p_value")),
            _num(tt.get("mean_difference")), _p(tt.get("p_value")), _e(_DECIDERS.get(decided_by, decided_by)),
            _p(c.get("p_adjusted")),
            f"<strong>{_yes_no(c.get('significant'))}</strong>" if c.get("significant") else _yes_no(c.get("significant")),
        ])
    parts.append(_table(header, rows, numeric_from=2))
    significant = [c for c in comparisons if c.get("significant")]
    if significant:
        listed = "; ".join(f"{_e(c['a'])} vs {_e(c['b'])} (adjusted p {_p(c.get('p_adjusted'))})" for c in significant)
        parts.append(f"<p>Significant differences at &alpha; = {alpha} after adjustment for multiple comparisons: {listed}.</p>")
    else:
        parts.append(f"<p>No pair of methods differs significantly at &alpha; = {alpha} after adjustment for multiple comparisons.</p>")
    parts.append(
        '<p class="small">McNemar: exact test on the items where exactly one method of the pair is right. t-test: '
        "Nadeau-Bengio corrected resampled t-test of per-fold accuracy (n/a with a single test set). "
        "Significance: the p-value of the test named in &ldquo;decided by&rdquo; (the corrected t-test across "
        "cross-validation folds, whose models and test items differ per fold; McNemar on a single test set), "
        "Holm-adjusted over all pairs.</p>"
    )
    dedup = results.get("comparisons_deduplicated") or []
    if dedup:
        parts.append("<h3>Without the test items that duplicate a training item</h3>")
        parts.append(_table(["method A", "method B", "McNemar n01 (A right, B wrong)", "McNemar n10 (A wrong, B right)",
                             "McNemar p", "adjusted p (Holm)", f"significant at &alpha; = {alpha}"],
                            [[_e(c["a"]), _e(c["b"]), _num(c["mcnemar"].get("n01")), _num(c["mcnemar"].get("n10")),
                              _p(c["mcnemar"].get("p_value")), _p(c.get("p_adjusted")), _yes_no(c.get("significant"))]
                             for c in dedup], numeric_from=2))
    return "".join(parts)


def _split_counts(counts: dict) -> dict[str, dict]:
    """``{class: n}`` or ``{split: {class: n}}`` as the latter."""
    if counts and all(isinstance(v, dict) for v in counts.values()):
        return counts
    return {"all": counts}


def _dataset(results: dict) -> str:
    d = results.get("dataset", {})
    columns = dict(_split_counts(d.get("counts", {})))
    external = d.get("test_data")
    if external:
        for split, per in _split_counts(external.get("counts", {})).items():
            columns[f"external {split}" if split != "all" else "external test"] = per
    classes = list(dict.fromkeys([*d.get("classes", []), *(c for per in columns.values() for c in per)]))
    rows = [[_e(c)] + [_num(per.get(c, 0)) for per in columns.values()] for c in classes]
    rows.append(["<strong>total</strong>"] + [f"<strong>{sum(per.values())}</strong>" for per in columns.values()])
    parts = [
        '<h2 id="dataset">Dataset</h2>',
        f'<p><code>{_e(d.get("path", "n/a"))}</code>: {_num(d.get("n_items"))} items, {len(classes)} classes.</p>',
    ]
    if external:
        parts.append(f'<p>External test data: <code>{_e(external.get("path", "n/a"))}</code>, {_num(external.get("n_items"))} items.</p>')
    parts.append(_table(["class"] + [_e(s) for s in columns], rows))
    return "".join(parts)


def _leak_consequence(protocol: dict) -> str:
    """What the cross-split leaks mean for the scores of this run."""
    kind, grouping = protocol.get("kind"), protocol.get("grouping")
    if kind == "official":
        return "Scores on the official test set overstate how a method does on unseen images."
    if grouping in (None, "none"):
        return f"This run ({_e(kind)}) does not group items, so duplicates can also fall on both sides of a fold."
    return f"This run ({_e(kind)}) does not use that split; it keeps each group ({_e(grouping)}) on one side of every fold."


def _audit(results: dict) -> str:
    a = results.get("audit")
    parts = ['<h2 id="audit">Audit</h2>']
    if not a:
        parts.append("<p>No audit in these results.</p>")
        return "".join(parts)
    leaks = _count(a.get("cross_split_leaks")) or 0
    per_split = a.get("leaks_per_class") or {}
    if leaks:
        worst = [
            f"{_e(split)}/{_e(cls)}: {v['leaking']} of {v['of']}"
            for split, per in per_split.items() for cls, v in per.items()
        ]
        parts.append(
            f'<div class="callout alert"><strong>Leakage: {leaks} held-out items duplicate a training item</strong>'
            + (f" ({'; '.join(worst)})" if worst else "")
            + f". {_leak_consequence(results.get('protocol', {}))}</div>"
        )
    parts.append(
        _key_values(
            [
                ("unreadable files", _num(_count(a.get("n_unreadable")))),
                ("exact-duplicate clusters", _num(_count(a.get("exact_duplicate_clusters")))),
                ("images in exact-duplicate clusters", _num(a.get("exact_duplicate_images", a.get("n_exact_duplicate_images")))),
                ("near-duplicate clusters", _num(_count(a.get("near_duplicate_clusters")))),
                ("images in near-duplicate clusters", _num(a.get("near_duplicate_images", a.get("n_near_duplicate_images")))),
                ("largest cluster", _num(a.get("largest_cluster_size"))),
                ("clusters with conflicting labels", _num(_count(a.get("conflicting_label_clusters")))),
                ("held-out items duplicating a training item", _num(leaks)),
            ]
        )
    )
    if per_split:
        rows = [
            [_e(split), _e(cls), _num(v["leaking"]), _num(v["of"]), f"{100 * v['leaking'] / v['of']:.1f}%" if v["of"] else "n/a"]
            for split, per in per_split.items() for cls, v in per.items()
        ]
        parts.append("<h3>Cross-split leaks per class</h3>")
        parts.append(_table(["split", "class", "leaking items", "of", "share"], rows, numeric_from=2))
    return "".join(parts)


#: Columns of per-class and per-fold tables that count items.
_COUNTS = ("n_train", "n_test", "support")


def _dict_table(items: dict[str, dict] | list[dict], first: str, *, summary: bool = False) -> str:
    """A table with one row per dict; ``first`` names the row-label column.

    ``summary`` adds mean and standard deviation rows (over the dicts); those
    of the count columns (:data:`_COUNTS`) are rounded to integers.
    """
    if isinstance(items, dict):
        items = [{first: k, **v} for k, v in items.items()]
    keys = _ordered(k for it in items for k in it if k != first)
    rows = [[_e(it.get(first, ""))] + [_num(it.get(k)) for k in keys] for it in items]
    if summary and len(items) > 1:
        values = [np.array([_value(it.get(k)) for it in items]) for k in keys]
        for stat, fn in (("mean", np.mean), ("sd", lambda v: np.std(v, ddof=1))):
            rows.append([f"<em>{stat}</em>"] + [
                "" if np.isnan(v).any() else f"{fn(v):.0f}" if k in _COUNTS else _num(float(fn(v)))
                for k, v in zip(keys, values)
            ])
    return _table([_e(first)] + [_e(_label(k)) for k in keys], rows)


def _calibration(m: dict) -> str:
    """Mean confidence against accuracy, with the ECE and Brier score; empty without a calibration block."""
    calibration = m.get("calibration")
    if not calibration:
        return ""
    metrics = m.get("metrics", {})
    confidence, accuracy = calibration.get("mean_confidence"), _value(metrics.get("accuracy"))
    gap = (confidence - accuracy) * 100 if _is_number(confidence) else math.nan
    if math.isnan(gap):
        verdict = ""
    elif abs(gap) < 0.05:
        verdict = " (as confident as it is accurate)"
    else:
        verdict = f" ({'over' if gap > 0 else 'under'}confident by {abs(gap):.1f} percentage points)"
    return (
        f"<h4>Calibration</h4><p>Mean confidence (top-class probability) {_num(confidence)} at accuracy "
        f"{_num(accuracy)}{verdict}; ECE {_metric(metrics.get('ece'))}, Brier score {_metric(metrics.get('brier'))} "
        "(lower is better for both; 0 when every probability is right).</p>"
    )


def _method(name: str, index: int, m: dict, figures: dict[str, bytes]) -> str:
    parts = [f'<h3 id="{_anchor(name, index)}">{_e(name)}</h3>']
    if m.get("summary"):
        parts.append(f"<p>{_e(m['summary'])}</p>")
    if m.get("reference"):
        parts.append(f'<p class="small">Reference: {_e(m["reference"])}</p>')
    params = m.get("params") or {}
    parts.append("<h4>Parameters</h4>")
    parts.append(_table(["parameter", "value"], [[_e(k), _e(v if isinstance(v, str) else json.dumps(v, default=str))] for k, v in params.items()], numeric_from=2)
                 if params else "<p>Defaults of the method.</p>")

    metrics, dedup = m.get("metrics", {}), m.get("metrics_deduplicated") or {}
    header = ["metric", "all test items" if dedup else "value [CI]"] + (["deduplicated test items"] if dedup else [])
    rows = [[_e(_label(k)), _metric(metrics[k])] + ([_metric(dedup.get(k)) if k in dedup else "n/a"] if dedup else [])
            for k in _ordered(metrics)]
    parts.append("<h4>Metrics</h4>" + _table(header, rows))

    if m.get("per_class"):
        parts.append("<h4>Per class</h4>" + _dict_table(m["per_class"], "class"))
    if m.get("per_fold"):
        parts.append("<h4>Per fold</h4>" + _dict_table(m["per_fold"], "fold", summary=True))
    timing = m.get("timing_s") or {}
    if timing:
        parts.append('<p class="small">Time (s): ' + ", ".join(f"{_e(k)} {_num(v)}" for k, v in timing.items()) + "</p>")
    parts.append(_calibration(m))

    reliability = ("Below the diagonal the method is overconfident, above it underconfident; "
                   "the bars count the test items in each confidence bin.")
    images = [
        _img(figures[key], f"{kind} of {name}", caption)
        for key, kind, caption in (
            (f"confusion/{name}", "confusion matrix", ""),
            (f"roc/{name}", "ROC curves", ""),
            (f"reliability/{name}", "reliability diagram", reliability),
            (f"learning/{name}", "learning curves",
             "Per epoch on the grouped validation part of the training data; the weights of the best epoch are kept."),
        )
        if key in figures
    ]
    if images:
        parts.append('<div class="figures">' + "".join(images) + "</div>")
    pictures = [_img(figures[key], caption, caption) for k, caption in enumerate(m.get("illustrations") or [])
                if (key := f"illustration/{name}/{k}") in figures]
    if pictures:
        parts.append("<h4>Illustrations</h4><p>What the method computes on a few test images of the first fold, "
                     "as the method draws them.</p>" + '<div class="figures">' + "".join(pictures) + "</div>")
    pictures = [_img(figures[key], caption, caption) for k, caption in enumerate(m.get("explanations") or [])
                if (key := f"explanation/{name}/{k}") in figures]
    if pictures:
        parts.append("<h4>Where the method looked</h4><p>Attribution maps (Grad-CAM for networks on the images, "
                     "occlusion otherwise) of the most confident correct and the most confident wrong prediction "
                     "of each class in the first fold, for the class the method called. Red: what raised that "
                     "class's score most. A map on the border or the skull rather than the brain is a warning "
                     "that the method learned the collection, not the disease.</p>"
                     + '<div class="figures">' + "".join(pictures) + "</div>")
    return "".join(parts)


def _config(results: dict) -> str:
    text = json.dumps(results.get("config", {}), indent=2, default=str)
    return (
        '<h2 id="config">Configuration</h2>'
        "<p>The settings of this run; with the same data and brainmri version they reproduce it.</p>"
        f"<pre>{_e(text)}</pre>"
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
        _protocol(results),
        _comparison(results, figures),
        _cost(results),
        _shift(results, figures),
        _ood(results),
        _pairwise(results),
        _dataset(results),
        _audit(results),
        '<h2 id="methods">Methods</h2>',
        *(_method(name, k, m, figures) for k, (name, m) in enumerate(results["methods"].items())),
        _config(results),
    ]
    title = f"brainmri benchmark report ({_e(results.get('created', ''))})"
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{title}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def write_report(results: dict, predictions: dict[str, dict], out_dir: str | Path,
                 figures: dict[str, bytes] | None = None) -> Path:
    """Write :func:`render_report` to ``out_dir/report.html`` atomically and return its path."""
    path = write_text(Path(out_dir) / "report.html", render_report(results, predictions, figures))
    logger.info("wrote %s", path)
    return path
