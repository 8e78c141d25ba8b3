"""The terminal's table of a benchmark's results: methods, metrics with intervals, comparisons, cost."""

from __future__ import annotations

from brainmri.data.audit import format_cross_dataset_leaks
from brainmri.evaluation.cost import format_cost
from brainmri.evaluation.coverage import coverage_statements
from brainmri.evaluation.metrics import LOWER_IS_BETTER, interval_statement
from brainmri.evaluation.shift import format_shift

#: The metrics of the terminal's table, in its column order.
SHOWN = (
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "auc",
    "brier",
    "ece",
    "sensitivity",
    "specificity",
    "precision",
)


def format_results(results: dict) -> str:
    """The comparison table for the terminal."""
    table = _metric_table(results)
    p = results["protocol"]
    lines = _protocol_lines(results, p) + table + _coverage_lines(results["methods"], "")
    if "cross_dataset_leaks" in p:
        lines.append("")
        lines += format_cross_dataset_leaks(p["cross_dataset_leaks"])
    for test_set in p.get("test_sets", []):
        lines += ["", f"test collection {test_set['name']} ({test_set['path']}):"]
        lines += format_cross_dataset_leaks(test_set["cross_dataset_leaks"])
    lines += _per_test_set_lines(results)
    lines += _calibration_lines(results)
    lines += _deduplicated_lines(results)
    lines += _after_blank(format_cost(results))
    lines += _after_blank(format_shift(results))
    lines += _ood_lines(results)
    lines += _comparison_lines(results)
    shortcuts = (results.get("audit") or {}).get("shortcuts") or {}
    if shortcuts.get("flagged"):
        lines.append(f"\nshortcut risk: {shortcuts['verdict']}")
    for note in p["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _after_blank(block: list[str]) -> list[str]:
    """``block`` after an empty line, or nothing when it is empty."""
    return ["", *block] if block else []


def _metric_table(results: dict) -> list[str]:
    """One row per method of each metric of :data:`SHOWN` with its interval, under a header and a rule."""
    heads = [
        "method",
        *[{"balanced_accuracy": "bal_acc"}.get(m, m) + ("(low)" if m in LOWER_IS_BETTER else "") for m in SHOWN],
    ]
    rows = []
    for name, entry in results["methods"].items():
        cells = [name]
        for m in SHOWN:
            v = entry["metrics"][m]
            cells.append(
                "n/a"
                if v["value"] is None or v["value"] != v["value"]
                else f"{v['value']:.3f} [{v['ci_low']:.3f},{v['ci_high']:.3f}]"
            )
        rows.append(cells)
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return lines


def _protocol_lines(results: dict, p: dict) -> list[str]:
    """The protocol ``p`` of the run and, with a method, how its intervals were computed."""
    lines = [f"protocol: {p['kind']}, {p['folds']} fold(s), grouping: {p['grouping']}"]
    if results["methods"]:
        bootstrap = next(iter(results["methods"].values()))["bootstrap"]
        lines.append(f"intervals: {interval_statement(bootstrap)}; (low): lower is better")
    return lines


def _per_test_set_lines(results: dict) -> list[str]:
    """With several ``--test-data`` collections: each method's accuracy and balanced accuracy on each."""
    lines = []
    for name, m in results["methods"].items():
        for test, t in m.get("per_test_set", {}).items():
            acc, bal = t["metrics"]["accuracy"], t["metrics"]["balanced_accuracy"]
            line = f"  {name} on {test} ({t['n_test']} items): accuracy {acc['value']:.3f}"
            if acc.get("ci_low") is not None:
                line += f" [{acc['ci_low']:.3f}, {acc['ci_high']:.3f}]"
            line += f", balanced accuracy {bal['value']:.3f}"
            dedup = (t.get("metrics_deduplicated") or {}).get("accuracy") or {}
            if dedup.get("value") is not None:
                line += f", accuracy without its copies of DATA {dedup['value']:.3f}"
            lines.append(line)
    return ["", "per test collection (one model, trained once):", *lines] if lines else []


def _calibration_lines(results: dict) -> list[str]:
    """Per method its mean confidence beside its accuracy, and its ECE."""
    lines = []
    if results["methods"]:
        lines.append("")
        lines.append("calibration (mean confidence equals accuracy when calibrated):")
    for name, entry in results["methods"].items():
        lines.append(
            f"  {name}: mean confidence {entry['calibration']['mean_confidence']:.3f} at accuracy "
            f"{entry['metrics']['accuracy']['value']:.3f}, ECE {entry['metrics']['ece']['value']:.3f}"
        )
    return lines


def _deduplicated_lines(results: dict) -> list[str]:
    """Per method with deduplicated metrics: its accuracy without the test items that duplicate a training item,
    and what that part lacks where it has no item of some class."""
    dedup = [(n, e) for n, e in results["methods"].items() if "metrics_deduplicated" in e]
    if not dedup:
        return []
    lines = ["", "accuracy on the test items that do not duplicate a training item:"]
    for name, e in dedup:
        full, clean = e["metrics"]["accuracy"]["value"], e["metrics_deduplicated"]["accuracy"]["value"]
        if clean is None:  # every test item duplicates a training item
            lines.append(f"  {name}: no such item (full test {full:.3f})")
            continue
        lines.append(
            f"  {name}: {clean:.3f} on {e['n_test_deduplicated']} items (full test {full:.3f}, "
            f"gap {100 * (full - clean):+.1f} points)"
        )
        if "per_class_deduplicated" in e:  # absent from results written before it was recorded
            lines.append(
                "    recall per class: "
                + ", ".join(
                    f"{c} {r['sensitivity']:.3f} ({round(r['sensitivity'] * r['support'])} of {r['support']})"
                    for c, r in e["per_class_deduplicated"].items()
                    if r["support"]
                )
            )
    return lines + _coverage_lines(dict(dedup), "_deduplicated")


def _coverage_lines(methods: dict, suffix: str) -> list[str]:
    """A line per way the test part of ``suffix`` lacks a class (:func:`coverage_statements`)."""
    return [f"  {statement}" for statement in coverage_statements(methods, suffix)]


def _ood_lines(results: dict) -> list[str]:
    """Per method with an out-of-distribution score: the share of clean test items flagged, and with shifts its AUC."""
    ood = {name: e["ood"] for name, e in results["methods"].items() if "ood" in e}
    if not ood:
        return []
    lines = [
        "",
        "out-of-distribution score (Mahalanobis distances of the embedding and the acquisition, "
        "calibrated on training):",
    ]
    for name, o in ood.items():
        line = f"  {name}: {100 * o['test_flagged']:.1f}% of clean test items flagged"
        if o.get("wrong_flagged") is not None:
            line += f", {100 * o['wrong_flagged']:.1f}% of its wrong calls"
            if o.get("accuracy_unflagged") is not None:
                line += (
                    f" (accuracy on the unflagged {o['accuracy_unflagged']:.3f}, "
                    f"{100 * o['coverage_unflagged']:.1f}% of the items)"
                )
        if "shift" in o:
            line += (
                f"; AUC severe-shifted vs clean {o['shift']['auc']:.3f} (severity {o['shift']['severity']}, "
                f"{100 * o['shift']['flagged']:.1f}% of them flagged)"
            )
        lines.append(line)
        if results.get("protocol", {}).get("grouping") == "source" and o.get("per_fold"):
            ece = ", ".join(f"{fold} {f['ece']:.3f}" for fold, f in o["per_fold"].items() if f.get("ece") is not None)
            lines.append(f"    ECE on each held-out source (calibration under shift): {ece}")
    return lines


def _comparison_lines(results: dict) -> list[str]:
    """The pairs that differ significantly, and the McNemar tests on the deduplicated test items where present."""
    lines = []
    significant = [c for c in results["comparisons"] if c["significant"]]
    if results["comparisons"]:
        test = {"t_test": "corrected resampled t-test over folds", "mcnemar": "McNemar"}[
            results["comparisons"][0]["decided_by"]
        ]
        lines.append("")
        lines.append(
            f"significant differences ({test}, Holm-adjusted p < {results['alpha']:g}): "
            + (", ".join(f"{c['a']} vs {c['b']} (p={c['p_adjusted']:.3g})" for c in significant) or "none")
        )
    if results.get("comparisons_deduplicated"):
        lines.append(
            "on the test items that do not duplicate a training item (McNemar, Holm-adjusted): "
            + ", ".join(
                f"{c['a']} vs {c['b']} {c['mcnemar']['n01']}:{c['mcnemar']['n10']} (p={c['p_adjusted']:.3g}"
                f"{', significant' if c['significant'] else ''})"
                for c in results["comparisons_deduplicated"]
            )
        )
    return lines
