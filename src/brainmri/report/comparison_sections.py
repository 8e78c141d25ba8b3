"""The sections of the benchmark report that set the methods side by side: results, cost and pairwise tests.

:func:`comparison_section` is the headline table (and chart) of every metric of
every method, :func:`cost_section` what each method costs to fit and run, and
:func:`pairwise_section` the significance tests between each pair of methods.
Each returns an HTML fragment for :func:`brainmri.report.html.render_report`;
the tuning report reuses them for the test of its best configuration.
"""

from __future__ import annotations

import math

from brainmri.evaluation.cost import SPEED_ITEMS, format_parameters
from brainmri.evaluation.metrics import LOWER_IS_BETTER
from brainmri.report.parts import (
    coverage_callout,
    escape_html,
    image,
    is_number,
    metric_cell,
    metric_label,
    metric_value,
    number,
    ordered_metrics,
    p_value,
    table,
    yes_no,
)
from brainmri.report.sections import intervals, method_anchor


def _best(values: list[float], key: str) -> float:
    """The best of ``values`` for metric ``key`` (lowest where lower is better); NaN when none is finite."""
    finite = [v for v in values if not math.isnan(v)]
    if not finite:
        return math.nan
    return min(finite) if key in LOWER_IS_BETTER else max(finite)


#: The metrics of the per-test-collection table.
PER_TEST_SET_METRICS = ("accuracy", "balanced_accuracy", "auc", "ece")


def _per_test_set_table(methods: dict) -> str:
    """With several ``--test-data`` collections: each method's scores on each collection (and without its copies)."""
    rows = [
        [escape_html(name), escape_html(test), number(t.get("n_test"))]
        + [metric_cell(t["metrics"].get(k)) for k in PER_TEST_SET_METRICS]
        + [metric_cell((t.get("metrics_deduplicated") or {}).get("accuracy")) if "metrics_deduplicated" in t else "n/a"]
        for name, m in methods.items()
        for test, t in m.get("per_test_set", {}).items()
    ]
    if not rows:
        return ""
    header = ["method", "test collection", "items", *(escape_html(metric_label(k)) for k in PER_TEST_SET_METRICS)]
    return (
        "<h3>Per test collection</h3><p>The same model, trained once on all of DATA, scored on each "
        "<code>--test-data</code> collection on its own; the last column leaves out the collection's copies of "
        "training images.</p>" + table([*header, "accuracy without copies"], rows, numeric_from=2)
    )


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
    parts.append(_per_test_set_table(methods))
    parts.append(coverage_callout(methods))
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
        parts.append(coverage_callout(methods, "_deduplicated"))
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


#: The test that decides a comparison (its ``decided_by``); results written before that key was added used McNemar.
_DECIDERS = {"t_test": "corrected t-test", "mcnemar": "McNemar"}


def pairwise_section(results: dict) -> str:
    """The pairwise tests: one row per pair of methods, the significant pairs in words, how the tests work, and
    the McNemar tests again without the test items that duplicate a training item (where the results have them)."""
    comparisons = results.get("comparisons") or []
    alpha = results.get("alpha", 0.05)
    alpha = f"{alpha:g}" if is_number(alpha) else escape_html(alpha)
    parts = ['<h2 id="pairwise">Pairwise comparisons</h2>']
    if not comparisons:
        parts.append("<p>No pairwise comparison (fewer than two methods).</p>")
        return "".join(parts)
    parts.append(_pairwise_table(comparisons, alpha))
    parts.append(_significant_pairs(comparisons, alpha))
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
        parts.append(_deduplicated_pairwise_table(dedup, alpha))
    return "".join(parts)


def _pairwise_row(c: dict) -> list[str]:
    """The cells of one comparison: McNemar counts and p, t-test difference and p, the deciding test, the verdict."""
    mc, tt = c.get("mcnemar") or {}, c.get("t_test") or {}
    decided_by = c.get("decided_by", "mcnemar")
    return [
        escape_html(c["a"]),
        escape_html(c["b"]),
        number(mc.get("n01")),
        number(mc.get("n10")),
        p_value(mc.get("p_value")),
        number(tt.get("mean_difference")),
        p_value(tt.get("p_value")),
        escape_html(_DECIDERS.get(decided_by, decided_by)),
        p_value(c.get("p_adjusted")),
        f"<strong>{yes_no(c.get('significant'))}</strong>" if c.get("significant") else yes_no(c.get("significant")),
    ]


def _pairwise_table(comparisons: list[dict], alpha: str) -> str:
    """The table of every pair of methods, both tests and the Holm-adjusted verdict at ``alpha`` (already HTML)."""
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
    return table(header, [_pairwise_row(c) for c in comparisons], numeric_from=2)


def _significant_pairs(comparisons: list[dict], alpha: str) -> str:
    """A sentence that names the pairs that differ significantly after adjustment, or says that none does."""
    significant = [c for c in comparisons if c.get("significant")]
    if not significant:
        return f"<p>No pair of methods differs significantly at &alpha; = {alpha} after adjustment for multiple comparisons.</p>"
    listed = "; ".join(
        f"{escape_html(c['a'])} vs {escape_html(c['b'])} (adjusted p {p_value(c.get('p_adjusted'))})"
        for c in significant
    )
    return f"<p>Significant differences at &alpha; = {alpha} after adjustment for multiple comparisons: {listed}.</p>"


def _deduplicated_pairwise_table(dedup: list[dict], alpha: str) -> str:
    """The McNemar tests of every pair on the test items that do not duplicate a training item."""
    return table(
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
