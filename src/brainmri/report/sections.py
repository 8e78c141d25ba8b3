"""The sections of the benchmark report: protocol, results, cost, shifts, OOD, pairwise tests, data, audit, methods.

Each returns an HTML fragment from the ``results`` of a benchmark (and its
figures); :func:`brainmri.report.html.render_report` puts them in order, and
the tuning report reuses those of the test of the best configuration.
"""

from __future__ import annotations

import json
import math
import re

from brainmri.evaluation.cost import SPEED_ITEMS, format_parameters
from brainmri.evaluation.metrics import LOWER_IS_BETTER, interval_statement
from brainmri.evaluation.shift import SHIFT_METRICS, severity_label
from brainmri.report.parts import (
    dict_table,
    escape_html,
    image,
    is_number,
    key_values,
    metric_cell,
    metric_label,
    metric_value,
    number,
    ordered_metrics,
    p_value,
    table,
    yes_no,
)


def method_anchor(name: str, index: int) -> str:
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


def intervals(results: dict) -> str:
    """How the confidence intervals were computed (every method is scored on the same test items)."""
    bootstrap = next((m["bootstrap"] for m in results["methods"].values() if m.get("bootstrap")), None)
    if bootstrap:
        return escape_html(interval_statement(bootstrap))
    n_boot = results.get("config", {}).get("n_boot")
    return f"95% percentile bootstrap, {number(n_boot)} resamples (whether over items or groups is not recorded in these results)"


def preprocessing_text(settings: dict) -> str:
    """The preprocessing of a run in words (``results.json`` omits the later settings at their defaults)."""
    parts = ["crop to the head" if settings.get("crop", True) else "no crop"]
    if settings.get("keep_aspect"):
        parts.append("padded to a square")
    if settings.get("size"):
        parts.append(f"{settings['size']} px")
    if settings.get("n4"):
        parts.append("N4 bias-field correction")
    harmonise = settings.get("harmonise", "none")
    parts.append(
        {
            "zscore": "z-scored in the head",
            "nyul": "Nyúl histogram standardisation (landmarks learned on each training split)",
        }.get(harmonise, "no harmonisation")
    )
    return ", ".join(parts)


def protocol_section(results: dict) -> str:
    p = results.get("protocol", {})
    parts = ['<h2 id="protocol">Protocol</h2>']
    notes = p.get("notes") or []
    if notes:
        parts.append(
            '<div class="callout"><strong>Read before the numbers:</strong><ul>'
            + "".join(f"<li>{escape_html(n)}</li>" for n in notes)
            + "</ul></div>"
        )
    dropped = p.get("dropped_duplicates") or {}
    parts.append(
        key_values(
            [
                ("evaluation", escape_html(p.get("kind", "n/a"))),
                ("folds", number(p.get("folds"))),
                ("grouping", escape_html(p.get("grouping", "n/a"))),
                ("groups", number(p.get("n_groups"))),
                ("confidence intervals", intervals(results)),
                ("subject ids known", yes_no(p.get("subjects_known"))),
                ("test duplicates dropped", str(sum(dropped.values())) if dropped else "none"),
                ("label map", "see below" if p.get("label_map") else "none (classes as found)"),
            ]
        )
    )
    if dropped:
        parts.append("<h3>Test items dropped as duplicates of training items</h3>")
        parts.append(table(["class", "dropped"], [[escape_html(c), number(n)] for c, n in dropped.items()]))
    if p.get("cross_dataset_leaks"):
        parts.append(_cross_dataset_leaks(p["cross_dataset_leaks"]))
    if p.get("label_map"):
        parts.append("<h3>Label map</h3>")
        parts.append(
            table(
                ["class in the data", "class used"],
                [[escape_html(a), escape_html(b)] for a, b in p["label_map"].items()],
                numeric_from=2,
            )
        )
    return "".join(parts)


def _cross_dataset_leaks(block: dict) -> str:
    """External test items that copy a training image: a callout, counts per class and the pairs."""
    n, of = block.get("n_leaking", 0), block.get("n_other", 0)
    parts = ["<h3>Copies of training images in the external test data</h3>"]
    if not n:
        parts.append(f"<p>None of the {number(of)} external test items copies a training image.</p>")
        return "".join(parts)
    parts.append(
        f'<div class="callout alert"><strong>{number(n)} of the {number(of)} external test items copy a training image'
        "</strong> (perceptual hash and structure correlation, after decoding and resizing). A score on them "
        "measures memorisation, not generalisation.</div>"
    )
    rows = [
        [
            escape_html(c),
            number(v["leaking"]),
            number(v["of"]),
            escape_html(", ".join(f"{k} {m}" for k, m in v["matches"].items())),
        ]
        for c, v in block.get("per_class", {}).items()
    ]
    parts.append(table(["external class", "copies", "of", "training classes copied"], rows))
    pairs = [
        [escape_html(x["other_path"]), escape_html(x["data_path"]), number(x["similarity"]), yes_no(x["exact"])]
        for x in block.get("pairs", [])
    ]
    parts.append(
        "<details><summary>Every copy and its closest training image</summary>"
        + table(["external item", "training image", "structure correlation", "exact"], pairs, numeric_from=2)
        + "</details>"
    )
    return "".join(parts)


def comparison_section(results: dict, figures: dict[str, bytes]) -> str:
    methods = results["methods"]
    keys = ordered_metrics(k for m in methods.values() for k in m.get("metrics", {}))
    dedup = {name: m["metrics_deduplicated"] for name, m in methods.items() if m.get("metrics_deduplicated")}
    best = {k: _best([metric_value(m.get("metrics", {}).get(k)) for m in methods.values()], k) for k in keys}
    best_dedup = _best([metric_value(d.get("accuracy")) for d in dedup.values()], "accuracy")

    def cell(m, top):
        return f"<strong>{metric_cell(m)}</strong>" if metric_value(m) == top else metric_cell(m)

    header = ["method"] + [escape_html(metric_label(k)) for k in keys]
    if dedup:
        header.append("accuracy (deduplicated test)")
    header.append("time (s)")
    rows = []
    for k, (name, m) in enumerate(methods.items()):
        row = [f'<a href="#{method_anchor(name, k)}">{escape_html(name)}</a>']
        row += [cell(m.get("metrics", {}).get(key), best[key]) for key in keys]
        if dedup:
            row.append(cell(dedup[name].get("accuracy"), best_dedup) if name in dedup else "n/a")
        row.append(number(m.get("timing_s", {}).get("total")))
        rows.append(row)

    parts = ['<h2 id="results">Results</h2>']
    if "metric_comparison" in figures:
        caption = "Bars: point estimates; whiskers: 95% confidence intervals."
        if dedup:
            caption += " Hatched: accuracy on the test items that do not duplicate a training item."
        parts.append(image(figures["metric_comparison"], "bar chart of the headline metrics of every method", caption))
    parts.append(table(header, rows))
    lower = ", ".join(escape_html(metric_label(k)) for k in keys if k in LOWER_IS_BETTER)
    parts.append(
        f'<p class="small">Each metric: value [95% confidence interval: {intervals(results)}]. '
        "The best value of each column is in bold: the highest"
        + (f", or the lowest for {lower} (lower is better)" if lower else "")
        + ".</p>"
    )
    if dedup:
        gaps = []
        for name, d in dedup.items():
            full, clean = metric_value(methods[name]["metrics"].get("accuracy")), metric_value(d.get("accuracy"))
            gap = "n/a" if math.isnan(full - clean) else f"{(full - clean) * 100:.1f}"
            gaps.append(
                f"{escape_html(name)} {number(full)} on all test items, {number(clean)} without them: "
                f"a gap of {gap} percentage points"
            )
        parts.append(
            '<div class="callout alert"><strong>Duplicate inflation.</strong> Accuracy on all test items against accuracy on the '
            "test items that do not duplicate a training item: " + "; ".join(gaps) + ".</div>"
        )
    return "".join(parts)


def cost_section(results: dict) -> str:
    """What each method costs (:mod:`brainmri.evaluation.cost`): network weights, fit time and inference speed."""
    costs = {name: m["cost"] for name, m in results["methods"].items() if "cost" in m}
    if not costs:
        return ""
    order = list(results["methods"])
    rows = []
    for name, c in costs.items():
        inference = c.get("inference") or {}
        rows.append(
            [
                f'<a href="#{method_anchor(name, order.index(name))}">{escape_html(name)}</a>',
                escape_html(format_parameters(c.get("parameters"))),
                number(c["fit_s"]["total"]),
                number(c["fit_s"]["per_fold"]),
                number(inference.get("images_per_s")),
            ]
        )
    return (
        "<h3>Cost</h3>"
        + table(
            [
                "method",
                "parameters (trainable / total)",
                "fit (s, all folds)",
                "fit (s, per fold)",
                "inference (images/s)",
            ],
            rows,
        )
        + '<p class="small">Parameters: the weights of the method\'s networks (- for a method without one; '
        "the classifier on frozen embeddings is not counted). Fit: seconds of training, without the features "
        "computed once for all methods before it. Inference: images per second of the prediction on up to "
        f"{SPEED_ITEMS} test items per fold, from the image file, without feature cache.</p>"
    )


def shift_section(results: dict, figures: dict[str, bytes]) -> str:
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
        f"{escape_html(run['subset'])}. The shifts apply to the images as read, before the method's own preprocessing; "
        f"their random draws are seeded (seed {number(run.get('seed'))}), so a rerun sees the same images.</p>",
    ]
    header = ["method", "metric", "clean"] + [escape_html(severity_label(s)) for s in severities]
    rows = []
    for name, shift in methods.items():
        mean = shift["mean_over_shifts"]
        for metric in SHIFT_METRICS:
            clean = mean["clean"][metric]
            cells = [
                f"{number(mean[str(s)][metric])} ({(mean[str(s)][metric] - clean) * 100:+.1f})" for s in severities
            ]
            rows.append([escape_html(name), escape_html(metric_label(metric)), number(clean), *cells])
    parts.append("<h3>Mean over shifts</h3>" + table(header, rows, numeric_from=2))
    parts.append(
        '<p class="small">Clean: the same test items without a shift. In brackets: percentage points '
        "gained (+) or lost (-) against clean.</p>"
    )
    if "shift_summary" in figures:
        parts.append(
            image(
                figures["shift_summary"],
                "bar chart of accuracy clean and under shifts per method",
                "Accuracy averaged over the shifts, per severity, beside the clean accuracy.",
            )
        )
    parts.append(
        table(
            ["shift", "imitates", "parameter", "at severities 1-5", "applied by"],
            [
                [
                    escape_html(n),
                    escape_html(d["description"]),
                    escape_html(d["parameter"]),
                    escape_html(", ".join(map(str, d["levels"]))),
                    escape_html(d["source"]),
                ]
                for n, d in run["shifts"].items()
            ],
            numeric_from=5,
        )
    )
    for name, shift in methods.items():
        parts.append(f"<h3>{escape_html(name)} under shifts</h3>")
        for k, metric in enumerate(SHIFT_METRICS):
            header = ["shift", "clean"] + [escape_html(severity_label(s)) for s in severities]
            grid = table(
                header,
                [
                    [
                        escape_html(n),
                        metric_cell(shift["clean"][metric]),
                        *(metric_cell(by[str(s)][metric]) for s in severities),
                    ]
                    for n, by in shift["shifts"].items()
                ],
            )
            title = f"{metric_label(metric)} [95% CI] per shift and severity"
            parts.append(
                f"<h4>{escape_html(title)}</h4>{grid}"
                if k == 0
                else f"<details><summary>{escape_html(title)}</summary>{grid}</details>"
            )
        if f"shift/{name}" in figures:
            parts.append(image(figures[f"shift/{name}"], f"accuracy of {name} against severity per shift"))
    return "".join(parts)


def ood_section(results: dict) -> str:
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
        header += [
            f"AUC shifted (severity {shifted[0]['shift']['severity']}) vs clean",
            "shifted flagged",
            *[f"AUC {escape_html(n)}" for n in shifts],
        ]
    rows = []
    for name, o in methods.items():
        row = [escape_html(name), number(o["test_flagged"]), number(o["test_mean_score"])]
        if "shift" in o:
            row += [
                number(o["shift"]["auc"]),
                number(o["shift"]["flagged"]),
                *[number(o["shift"]["auc_per_shift"].get(n)) for n in shifts],
            ]
        rows.append(row)
    return (
        '<h2 id="ood">Unlike the training data: the out-of-distribution score</h2>'
        f"<p>Every prediction has a score from 0 (like the training images) to 1 (farther than every training "
        f"image): {escape_html(first['detector'])}. A test item above the {100 * first['flag_quantile']:g}th training "
        "percentile is flagged (its <code>ood_score</code> in predictions.csv). With shifts, the AUC says how "
        "well the distance tells the shifted test images from the same images clean (1: always; 0.5: chance), "
        "per fold and averaged over the folds.</p>" + table(header, rows, numeric_from=1)
    )


#: The test that decides a comparison (its ``decided_by``); results written before that key was added used McNemar.
_DECIDERS = {"t_test": "corrected t-test", "mcnemar": "McNemar"}


def pairwise_section(results: dict) -> str:
    comparisons = results.get("comparisons") or []
    alpha = results.get("alpha", 0.05)
    alpha = f"{alpha:g}" if is_number(alpha) else escape_html(alpha)
    parts = ['<h2 id="pairwise">Pairwise comparisons</h2>']
    if not comparisons:
        parts.append("<p>No pairwise comparison (fewer than two methods).</p>")
        return "".join(parts)
    header = [
        "method A",
        "method B",
        "McNemar n01 (A right, B wrong)",
        "McNemar n10 (A wrong, B right)",
        "McNemar p",
        "t-test mean accuracy difference (A &minus; B)",
        "t-test p",
        "decided by",
        "adjusted p (Holm)",
        f"significant at &alpha; = {alpha}",
    ]
    rows = []
    for c in comparisons:
        mc, tt = c.get("mcnemar") or {}, c.get("t_test") or {}
        decided_by = c.get("decided_by", "mcnemar")
        rows.append(
            [
                escape_html(c["a"]),
                escape_html(c["b"]),
                number(mc.get("n01")),
                number(mc.get("n10")),
                p_value(mc.get("p_value")),
                number(tt.get("mean_difference")),
                p_value(tt.get("p_value")),
                escape_html(_DECIDERS.get(decided_by, decided_by)),
                p_value(c.get("p_adjusted")),
                f"<strong>{yes_no(c.get('significant'))}</strong>"
                if c.get("significant")
                else yes_no(c.get("significant")),
            ]
        )
    parts.append(table(header, rows, numeric_from=2))
    significant = [c for c in comparisons if c.get("significant")]
    if significant:
        listed = "; ".join(
            f"{escape_html(c['a'])} vs {escape_html(c['b'])} (adjusted p {p_value(c.get('p_adjusted'))})"
            for c in significant
        )
        parts.append(
            f"<p>Significant differences at &alpha; = {alpha} after adjustment for multiple comparisons: {listed}.</p>"
        )
    else:
        parts.append(
            f"<p>No pair of methods differs significantly at &alpha; = {alpha} after adjustment for multiple comparisons.</p>"
        )
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
        parts.append(
            table(
                [
                    "method A",
                    "method B",
                    "McNemar n01 (A right, B wrong)",
                    "McNemar n10 (A wrong, B right)",
                    "McNemar p",
                    "adjusted p (Holm)",
                    f"significant at &alpha; = {alpha}",
                ],
                [
                    [
                        escape_html(c["a"]),
                        escape_html(c["b"]),
                        number(c["mcnemar"].get("n01")),
                        number(c["mcnemar"].get("n10")),
                        p_value(c["mcnemar"].get("p_value")),
                        p_value(c.get("p_adjusted")),
                        yes_no(c.get("significant")),
                    ]
                    for c in dedup
                ],
                numeric_from=2,
            )
        )
    return "".join(parts)


def _split_counts(counts: dict) -> dict[str, dict]:
    """``{class: n}`` or ``{split: {class: n}}`` as the latter."""
    if counts and all(isinstance(v, dict) for v in counts.values()):
        return counts
    return {"all": counts}


def dataset_section(results: dict) -> str:
    d = results.get("dataset", {})
    columns = dict(_split_counts(d.get("counts", {})))
    external = d.get("test_data")
    if external:
        for split, per in _split_counts(external.get("counts", {})).items():
            columns[f"external {split}" if split != "all" else "external test"] = per
    classes = list(dict.fromkeys([*d.get("classes", []), *(c for per in columns.values() for c in per)]))
    rows = [[escape_html(c)] + [number(per.get(c, 0)) for per in columns.values()] for c in classes]
    rows.append(["<strong>total</strong>"] + [f"<strong>{sum(per.values())}</strong>" for per in columns.values()])
    parts = [
        '<h2 id="dataset">Dataset</h2>',
        f"<p><code>{escape_html(d.get('path', 'n/a'))}</code>: {number(d.get('n_items'))} items, {len(classes)} classes.</p>",
    ]
    if external:
        parts.append(
            f"<p>External test data: <code>{escape_html(external.get('path', 'n/a'))}</code>, "
            f"{number(external.get('n_items'))} items.</p>"
        )
    parts.append(table(["class"] + [escape_html(s) for s in columns], rows))
    return "".join(parts)


def _leak_consequence(protocol: dict) -> str:
    """What the cross-split leaks mean for the scores of this run."""
    kind, grouping = protocol.get("kind"), protocol.get("grouping")
    if kind == "official":
        return "Scores on the official test set overstate how a method does on unseen images."
    if grouping in (None, "none"):
        return (
            f"This run ({escape_html(kind)}) does not group items, so duplicates can also fall on both sides of a fold."
        )
    return (
        f"This run ({escape_html(kind)}) does not use that split; it keeps each group ({escape_html(grouping)}) on one "
        "side of every fold."
    )


def audit_section(results: dict) -> str:
    a = results.get("audit")
    parts = ['<h2 id="audit">Audit</h2>']
    if not a:
        parts.append("<p>No audit in these results.</p>")
        return "".join(parts)
    leaks = _count(a.get("cross_split_leaks")) or 0
    per_split = a.get("leaks_per_class") or {}
    if leaks:
        worst = [
            f"{escape_html(split)}/{escape_html(cls)}: {v['leaking']} of {v['of']}"
            for split, per in per_split.items()
            for cls, v in per.items()
        ]
        parts.append(
            f'<div class="callout alert"><strong>Leakage: {leaks} held-out items duplicate a training item</strong>'
            + (f" ({'; '.join(worst)})" if worst else "")
            + f". {_leak_consequence(results.get('protocol', {}))}</div>"
        )
    parts.append(
        key_values(
            [
                ("unreadable files", number(_count(a.get("n_unreadable")))),
                ("exact-duplicate clusters", number(_count(a.get("exact_duplicate_clusters")))),
                (
                    "images in exact-duplicate clusters",
                    number(a.get("exact_duplicate_images", a.get("n_exact_duplicate_images"))),
                ),
                ("near-duplicate clusters", number(_count(a.get("near_duplicate_clusters")))),
                (
                    "images in near-duplicate clusters",
                    number(a.get("near_duplicate_images", a.get("n_near_duplicate_images"))),
                ),
                ("largest cluster", number(a.get("largest_cluster_size"))),
                ("clusters with conflicting labels", number(_count(a.get("conflicting_label_clusters")))),
                ("held-out items duplicating a training item", number(leaks)),
            ]
        )
    )
    if per_split:
        rows = [
            [
                escape_html(split),
                escape_html(cls),
                number(v["leaking"]),
                number(v["of"]),
                f"{100 * v['leaking'] / v['of']:.1f}%" if v["of"] else "n/a",
            ]
            for split, per in per_split.items()
            for cls, v in per.items()
        ]
        parts.append("<h3>Cross-split leaks per class</h3>")
        parts.append(table(["split", "class", "leaking items", "of", "share"], rows, numeric_from=2))
    return "".join(parts)


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
    parts = [f'<h3 id="{method_anchor(name, index)}">{escape_html(name)}</h3>']
    if m.get("summary"):
        parts.append(f"<p>{escape_html(m['summary'])}</p>")
    if m.get("reference"):
        parts.append(f'<p class="small">Reference: {escape_html(m["reference"])}</p>')
    params = m.get("params") or {}
    parts.append("<h4>Parameters</h4>")
    parts.append(
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

    metrics, dedup = m.get("metrics", {}), m.get("metrics_deduplicated") or {}
    header = ["metric", "all test items" if dedup else "value [CI]"] + (["deduplicated test items"] if dedup else [])
    rows = [
        [escape_html(metric_label(k)), metric_cell(metrics[k])]
        + ([metric_cell(dedup.get(k)) if k in dedup else "n/a"] if dedup else [])
        for k in ordered_metrics(metrics)
    ]
    parts.append("<h4>Metrics</h4>" + table(header, rows))

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
    parts.append(_calibration(m))

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
    if images:
        parts.append('<div class="figures">' + "".join(images) + "</div>")
    pictures = [
        image(figures[key], caption, caption)
        for k, caption in enumerate(m.get("illustrations") or [])
        if (key := f"illustration/{name}/{k}") in figures
    ]
    if pictures:
        parts.append(
            "<h4>Illustrations</h4><p>What the method computes on a few test images of the first fold, "
            "as the method draws them.</p>" + '<div class="figures">' + "".join(pictures) + "</div>"
        )
    pictures = [
        image(figures[key], caption, caption)
        for k, caption in enumerate(m.get("explanations") or [])
        if (key := f"explanation/{name}/{k}") in figures
    ]
    if pictures:
        parts.append(
            "<h4>Where the method looked</h4><p>Attribution maps (Grad-CAM for networks on the images, "
            "occlusion otherwise) of the most confident correct and the most confident wrong prediction "
            "of each class in the first fold, for the class the method called. Red: what raised that "
            "class's score most. A map on the border or the skull rather than the brain is a warning "
            "that the method learned the collection, not the disease.</p>"
            + '<div class="figures">'
            + "".join(pictures)
            + "</div>"
        )
    return "".join(parts)
