"""The robustness sections of the benchmark report: acquisition shifts and the out-of-distribution score.

:func:`shift_section` shows how each method's scores fall when its test images
are altered as another scanner, sequence or export would alter them (with
``--shift``); :func:`ood_section` shows the score that flags test images unlike
the training data. Both return an HTML fragment for
:func:`brainmri.report.html.render_report`, empty when the results hold no such block.
"""

from __future__ import annotations

from brainmri.evaluation.shift import SHIFT_METRICS, severity_label
from brainmri.report.parts import (
    escape_html,
    image,
    metric_cell,
    metric_label,
    number,
    table,
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
    parts.append("<h3>Mean over shifts</h3>" + _mean_over_shifts_table(methods, severities))
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
    parts.append(_shift_definitions_table(run["shifts"]))
    for name, shift in methods.items():
        parts.append(_method_under_shifts(name, shift, severities, figures))
    return "".join(parts)


def _mean_over_shifts_table(methods: dict[str, dict], severities: list[int]) -> str:
    """Per method and metric of :data:`SHIFT_METRICS`: clean, then the mean over shifts at each severity with the
    percentage points gained or lost against clean."""
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
    return table(header, rows, numeric_from=2)


def _shift_definitions_table(shifts: dict[str, dict]) -> str:
    """What each shift imitates, its parameter at each severity and what applies it."""
    return table(
        ["shift", "imitates", "parameter", "at severities 1-5", "applied by"],
        [
            [
                escape_html(n),
                escape_html(d["description"]),
                escape_html(d["parameter"]),
                escape_html(", ".join(map(str, d["levels"]))),
                escape_html(d["source"]),
            ]
            for n, d in shifts.items()
        ],
        numeric_from=5,
    )


def _method_under_shifts(name: str, shift: dict, severities: list[int], figures: dict[str, bytes]) -> str:
    """One method's score per shift and severity with its interval, a table per metric (all but the first folded),
    and its figure of accuracy against severity."""
    parts = [f"<h3>{escape_html(name)} under shifts</h3>"]
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


def ood_section(results: dict, figures: dict[str, bytes]) -> str:
    """The out-of-distribution score: its detector, how often clean test items are flagged, what the flag catches
    (wrong calls flagged, accuracy kept), calibration and the flag per fold (per held-out source under
    ``--grouping source``), the risk-coverage curves, and with shifts how well it tells the most severely shifted
    test images from the clean ones."""
    methods = {name: m["ood"] for name, m in results["methods"].items() if "ood" in m}
    if not methods:
        return ""
    first = next(iter(methods.values()))
    shifted = [o for o in methods.values() if "shift" in o]
    shifts = list(shifted[0]["shift"]["auc_per_shift"]) if shifted else []
    header = ["method", "test flagged", "wrong calls flagged", "right calls flagged", "accuracy kept (share kept)"]
    header += ["mean accuracy over coverages: OOD / confidence"]
    if shifted:
        header += [
            f"AUC shifted (severity {shifted[0]['shift']['severity']}) vs clean",
            "shifted flagged",
            *[f"AUC {escape_html(n)}" for n in shifts],
        ]
    rows = []
    for name, o in methods.items():
        curves = o.get("risk_coverage", {})
        mean = " / ".join(number(curves.get(k, {}).get("mean_accuracy")) for k in ("ood_score", "confidence"))
        kept = f"{number(o.get('accuracy_unflagged'))} ({number(o.get('coverage_unflagged'))})"
        row = [escape_html(name), number(o["test_flagged"]), number(o.get("wrong_flagged"))]
        row += [number(o.get("right_flagged")), kept, mean]
        if "shift" in o:
            row += [
                number(o["shift"]["auc"]),
                number(o["shift"]["flagged"]),
                *[number(o["shift"]["auc_per_shift"].get(n)) for n in shifts],
            ]
        rows.append(row)
    parts = [
        '<h2 id="ood">Unlike the training data: the out-of-distribution score</h2>'
        f"<p>Every prediction has a score from 0 (like the training images) to 1 (farther than every training "
        f"image): {escape_html(first['detector'])}. A test item above the {100 * first['flag_quantile']:g}th training "
        "percentile is flagged (its <code>ood_score</code> in predictions.csv). A useful flag catches most wrong "
        "calls and few right ones, so the accuracy of the calls it keeps rises; the mean accuracy over coverages "
        "is the area under the curves below (abstaining on the highest OOD score, or on the lowest confidence). "
        "With shifts, the AUC says how well the distance tells the shifted test images from the same images clean "
        "(1: always; 0.5: chance), per fold and averaged over the folds.</p>" + table(header, rows, numeric_from=1),
        _ood_per_fold(methods),
    ]
    parts += [
        image(figures[f"risk_coverage/{name}"], f"accuracy of {name} when abstaining, against the share kept")
        for name in methods
        if f"risk_coverage/{name}" in figures
    ]
    return "".join(parts)


def _ood_per_fold(methods: dict) -> str:
    """Per fold (a held-out source under ``--grouping source``): accuracy, ECE and what the flag catches."""
    rows = [
        [
            escape_html(name),
            escape_html(fold),
            number(f.get("accuracy")),
            number(f.get("ece")),
            number(f.get("flagged")),
            number(f.get("wrong_flagged")),
            number(f.get("accuracy_unflagged")),
        ]
        for name, o in methods.items()
        for fold, f in o.get("per_fold", {}).items()
    ]
    if not rows:
        return ""
    header = ["method", "fold", "accuracy", "ECE", "flagged", "wrong calls flagged", "accuracy kept"]
    return (
        "<h3>Per fold</h3><p>Each fold's test items scored by the model trained without them; under "
        "<code>--grouping source</code> a fold is a held-out source, and its ECE is the calibration under that "
        "shift (0: confidences match accuracy).</p>" + table(header, rows, numeric_from=2)
    )
