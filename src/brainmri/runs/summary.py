"""From saved units to the results of a benchmark: pooled metrics with intervals, per-fold scores, paired tests.

Every number of ``results.json`` and ``predictions.csv`` is computed here
from the units (:mod:`brainmri.runs.unit`), never kept from the run that
made them, so a resumed run reports exactly what an uninterrupted one does.
"""

from __future__ import annotations

import base64
import csv
import io
from datetime import UTC, datetime

import numpy as np

from brainmri.evaluation.cost import cost_entry
from brainmri.evaluation.coverage import TEST_PARTS, class_coverage
from brainmri.evaluation.metrics import METRICS, RATES, classification_metrics, summarize
from brainmri.evaluation.selective import risk_coverage
from brainmri.evaluation.shift import ood_auc, shift_definitions, summarize_shift
from brainmri.evaluation.stats import corrected_resampled_ttest, holm, mcnemar
from brainmri.models.catalog import get_method
from brainmri.models.versions import code_versions
from brainmri.robust.ood import FLAG_QUANTILE
from brainmri.runs.config import BenchmarkConfig
from brainmri.runs.plan import Plan
from brainmri.version import __version__

ALPHA = 0.05


def _columns(unit: dict, proba, classes: list[str]) -> np.ndarray:
    """A unit's probabilities (columns in ``unit["classes"]`` order) with one column per class of the run."""
    proba = np.asarray(proba)
    p = np.zeros((len(proba), len(classes)))
    for c, name in enumerate(unit["classes"]):
        p[:, classes.index(name)] = proba[:, c]
    return p


def _pooled(plan: Plan, units: list[dict], classes: list[str]) -> dict:
    index, folds, proba = [], [], []
    for unit in units:
        index += unit["test"]
        folds += [unit["fold"]] * len(unit["test"])
        proba.append(_columns(unit, unit["proba"], classes))
    pooled = {
        "index": np.asarray(index, dtype=int),
        "fold": folds,
        "proba": np.vstack(proba),
        "y_true": [str(v) for v in plan.labels[np.asarray(index, dtype=int)]],
        "classes": classes,
    }
    if all("ood" in unit for unit in units):  # units saved before the OOD score existed have none
        pooled["ood_score"] = np.concatenate([unit["ood"]["score"] for unit in units])
    return pooled


def _ood_entry(config: BenchmarkConfig, units: list[dict], pooled: dict) -> dict | None:
    """The ``ood`` block of a method: its detector, the share of clean test items flagged, what the flag catches
    (:func:`_flag_coverage`), and with ``--shift`` the AUC of the OOD distance telling the most severely shifted
    test items from the same items clean.

    Each fold has its own detector, so the AUC is computed per fold and
    averaged, weighted by the fold's re-tested items.
    """
    if not all("ood" in u for u in units):
        return None
    scores = np.concatenate([u["ood"]["score"] for u in units])
    entry = {
        "detector": units[0]["ood"]["method"],
        "flag_quantile": FLAG_QUANTILE,
        "test_flagged": round(float(np.mean(scores > FLAG_QUANTILE)), 6),
        "test_mean_score": round(float(np.mean(scores)), 6),
        **_flag_coverage(pooled, scores),
    }
    if config.shift and all("distance" in u.get("shift", {}) for u in units):
        severity = max(config.shift_severities)
        folds, weights, flagged = [], [], []
        for u in units:
            distance = dict(zip(u["test"], u["ood"]["distance"], strict=True))
            clean = np.array([distance[k] for k in u["shift"]["test"]])
            shifted = {name: {s: np.asarray(d) for s, d in by.items()} for name, by in u["shift"]["distance"].items()}
            folds.append(ood_auc(clean, shifted, severity))
            weights.append(len(clean))
            flagged += [np.asarray(by[str(severity)]) > u["ood"]["threshold"] for by in shifted.values()]
        mean = lambda values: round(float(np.average(values, weights=weights)), 6)  # noqa: E731
        entry["shift"] = {
            "severity": severity,
            "auc": mean([f["pooled"] for f in folds]),
            "auc_per_shift": {name: mean([f["per_shift"][name] for f in folds]) for name in folds[0]["per_shift"]},
            "flagged": round(float(np.mean(np.concatenate(flagged))), 6),
        }
    return entry


def _flag_coverage(pooled: dict, scores: np.ndarray) -> dict:
    """What the flag catches: the shares of wrong and of right test predictions flagged, the accuracy kept when the
    flagged are set aside (with the share kept), the risk-coverage curves of the OOD score and of the confidence
    (:func:`~brainmri.evaluation.selective.risk_coverage`), and per fold (a held-out source under ``--grouping
    source``) the same shares with the fold's ECE: calibration under shift."""
    classes = pooled["classes"]
    wrong = np.array([classes[k] for k in pooled["proba"].argmax(axis=1)]) != np.asarray(pooled["y_true"])
    flagged = scores > FLAG_QUANTILE
    folds = np.asarray(pooled["fold"])

    def shares(part: np.ndarray) -> dict:
        w, f = wrong[part], flagged[part]
        y_true = [y for y, k in zip(pooled["y_true"], part, strict=True) if k]
        return {
            "flagged": round(float(f.mean()), 6) if part.any() else None,
            "wrong_flagged": round(float(f[w].mean()), 6) if w.any() else None,
            "right_flagged": round(float(f[~w].mean()), 6) if (~w).any() else None,
            "accuracy": round(float(1 - w.mean()), 6) if part.any() else None,
            "accuracy_unflagged": round(float(1 - w[~f].mean()), 6) if (~f).any() else None,
            "coverage_unflagged": round(float((~f).mean()), 6) if part.any() else None,
            "ece": round(classification_metrics(y_true, pooled["proba"][part], classes)["metrics"]["ece"], 6)
            if part.any()
            else None,
        }

    every = np.ones(len(wrong), dtype=bool)
    overall = shares(every)
    return {
        **{k: overall[k] for k in ("wrong_flagged", "right_flagged", "accuracy_unflagged", "coverage_unflagged")},
        "risk_coverage": {
            "ood_score": risk_coverage(~wrong, scores),
            "confidence": risk_coverage(~wrong, -pooled["proba"].max(axis=1)),
        },
        "per_fold": {fold: shares(folds == fold) for fold in dict.fromkeys(pooled["fold"])},
    }


def _shift_entry(config: BenchmarkConfig, plan: Plan, units: list[dict], pooled: dict) -> dict:
    """The ``shift`` block of a method: its units' shifted probabilities pooled and scored."""
    index = np.asarray([k for u in units for k in u["shift"]["test"]], dtype=int)
    row = {k: r for r, k in enumerate(pooled["index"])}
    shifted = {
        name: {s: np.vstack([_columns(u, u["shift"]["proba"][name][s], pooled["classes"]) for u in units]) for s in by}
        for name, by in units[0]["shift"]["proba"].items()
    }
    return summarize_shift(
        [str(v) for v in plan.labels[index]],
        pooled["proba"][[row[k] for k in index]],
        shifted,
        pooled["classes"],
        groups=plan.groups[index],
        n_boot=config.n_boot,
        seed=config.seed,
    )


#: Metrics of each ``per_fold`` entry.
FOLD_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auc", "brier", "ece")


#: What the bootstrap groups are, by the grouping of the folds (:func:`brainmri.data.splits.group_labels`).
_GROUP_NAMES = {
    "subject": "subjects",
    "duplicates": "near-duplicate clusters",
    "similar": "look-alike groups",
    "subject+duplicates": "subjects joined with their near-duplicate clusters",
    "subject+similar": "subjects joined with their look-alike groups",
    "source": "look-alike groups (folds hold out whole sources)",
}


def _bootstrap_groups(protocol: dict) -> str:
    """What ``plan.groups`` holds: the fold grouping in CV, near-duplicate clusters on a fixed test set."""
    return _GROUP_NAMES.get(protocol["grouping"] if protocol["kind"] == "cv" else "duplicates", protocol["grouping"])


def summarize_units(config: BenchmarkConfig, plan: Plan, units: dict[str, list[dict]]) -> tuple[dict, dict]:
    """Metrics with CIs per method, per-fold scores and pairwise tests, from saved units.

    Returns
    -------
    results : dict
        The ``results.json`` document.
    predictions : dict
        Per method, its pooled test predictions (:func:`predictions_table`, the report's figures).
    """
    classes = sorted({c for us in units.values() for u in us for c in u["classes"]})
    methods: dict[str, dict] = {}
    predictions: dict[str, dict] = {}
    for method, us in units.items():
        predictions[method] = _pooled(plan, us, classes)
        methods[method] = _method_entry(config, plan, method, us, predictions[method], classes)
    results = {
        "brainmri_version": __version__,
        "versions": code_versions(),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": config.to_dict(),
        "protocol": plan.protocol,
        "dataset": plan.dataset,
        "audit": plan.audit,
        "methods": methods,
        "comparisons": comparisons(predictions, methods),
        **(
            {"comparisons_deduplicated": comparisons(predictions, methods, keep=plan.dedup_test)}
            if any("metrics_deduplicated" in m for m in methods.values())
            else {}
        ),
        "alpha": ALPHA,
    }
    if config.shift:
        first = next(iter(methods.values()))
        n_items = first["shift"]["n_items"]
        subset = (
            f"all {n_items} test items"
            if n_items == first["n_test"]
            else f"{n_items} of {first['n_test']} test items, a stratified sample of at most "
            f"{config.shift_max_items} per split"
        )
        results["shift"] = {
            "shifts": shift_definitions(config.shift),
            "severities": list(config.shift_severities),
            "subset": subset,
            "seed": config.seed,
        }
    return results, predictions


def _method_entry(
    config: BenchmarkConfig, plan: Plan, method: str, us: list[dict], pooled: dict, classes: list[str]
) -> dict:
    """The ``results.json`` entry of one method from its units and pooled predictions (its pictures go to ``pooled``)."""
    spec = get_method(method.partition("+")[0])  # a method tested with one of several adaptations (split_adapted)
    groups = plan.groups[pooled["index"]]
    summary = summarize(
        pooled["y_true"], pooled["proba"], classes, groups=groups, n_boot=config.n_boot, seed=config.seed
    )
    groups_name = _bootstrap_groups(plan.protocol)
    entry = {
        "summary": spec.summary,
        "reference": spec.reference,
        "metrics": summary["metrics"],
        "per_class": summary["per_class"],
        "confusion": summary["confusion"],
        "n_test": summary["n"],
        "calibration": summary["calibration"],
        "bootstrap": {
            **summary["bootstrap"],
            "groups": groups_name if summary["bootstrap"]["unit"] == "groups" else None,
        },
        **_coverage(summary["metrics"], summary["per_class"], ""),
    }
    if plan.dedup_test is not None and len(plan.dedup_test) < len(pooled["index"]):
        entry.update(_deduplicated(config, pooled, np.isin(pooled["index"], plan.dedup_test), groups, classes))
    entry["per_fold"] = _per_fold(plan, us, pooled, classes)
    if "test_sets" in plan.protocol:
        entry["per_test_set"] = _per_test_set(config, plan, pooled, groups, classes)
    fit = sum(u["fit_s"] for u in us)
    predict = sum(u["predict_s"] for u in us)
    entry["timing_s"] = {"fit": round(fit, 2), "predict": round(predict, 2), "total": round(fit + predict, 2)}
    entry["cost"] = cost_entry(us)
    ood = _ood_entry(config, us, pooled)
    if ood is not None:
        entry["ood"] = ood
        entry["timing_s"]["ood_calibration"] = round(sum(u["ood"]["fit_s"] for u in us), 2)
    if config.shift:
        entry["shift"] = _shift_entry(config, plan, us, pooled)
        shifted = sum(u["shift_s"] for u in us)
        entry["timing_s"].update(shifted_tests=round(shifted, 2), total=round(fit + predict + shifted, 2))
    entry["params"] = us[0]["params"] if len(us) == 1 else {u["fold"]: u["params"] for u in us if u["params"]}
    if any("history" in u for u in us):
        entry["history"] = {u["fold"]: u["history"] for u in us if "history" in u}
    for kind in ("illustrations", "explanations"):  # pictures of the first fold
        pictures = next((u[kind] for u in us if u.get(kind)), [])
        if pictures:
            entry[kind] = [p["caption"] for p in pictures]
            pooled[kind] = [base64.b64decode(p["png"]) for p in pictures]
    return entry


def _per_test_set(config: BenchmarkConfig, plan: Plan, pooled: dict, groups, classes: list[str]) -> dict:
    """With several ``--test-data`` collections: each scored on its own (metrics with intervals, per class, and
    without its copies of DATA), the same trained model for all."""
    out = {}
    rel = np.asarray(plan.rel, dtype=object)[pooled["index"]]
    for test_set in plan.protocol["test_sets"]:
        mine = np.array([r.startswith(f"TEST/{test_set['name']}/") for r in rel], dtype=bool)
        if not mine.any():
            continue
        part = {**pooled, "proba": pooled["proba"][mine], "index": pooled["index"][mine]}
        part["y_true"] = [y for y, k in zip(pooled["y_true"], mine, strict=True) if k]
        summary = summarize(
            part["y_true"], part["proba"], classes, groups=groups[mine], n_boot=config.n_boot, seed=config.seed
        )
        entry = {"n_test": summary["n"], "metrics": summary["metrics"], "per_class": summary["per_class"]}
        if plan.dedup_test is not None:
            keep = np.isin(part["index"], plan.dedup_test)
            if not keep.all():
                entry.update(_deduplicated(config, part, keep, groups[mine], classes))
        out[test_set["name"]] = entry
    return out


def _deduplicated(config: BenchmarkConfig, pooled: dict, keep: np.ndarray, groups, classes: list[str]) -> dict:
    """The ``*_deduplicated`` keys of a method entry: its scores on the pooled test items that ``keep`` marks
    (those that copy no training item), with what they lack (:func:`_coverage`); every figure null when none."""
    if keep.any():
        dedup = summarize(
            [y for y, k in zip(pooled["y_true"], keep, strict=True) if k],
            pooled["proba"][keep],
            classes,
            groups=groups[keep],
            n_boot=config.n_boot,
            seed=config.seed,
        )
    else:  # every test item copies a training item
        dedup = {
            "metrics": {name: dict.fromkeys(("value", "ci_low", "ci_high")) for name in METRICS},
            "per_class": {c: {**dict.fromkeys(RATES), "support": 0} for c in classes},
            "n": 0,
        }
    return {
        "metrics_deduplicated": dedup["metrics"],
        "per_class_deduplicated": dedup["per_class"],
        "n_test_deduplicated": dedup["n"],
        **_coverage(dedup["metrics"], dedup["per_class"], "_deduplicated"),
    }


def _coverage(metrics: dict, per_class: dict, suffix: str) -> dict:
    """Where a test part (``suffix``: :data:`~brainmri.evaluation.coverage.TEST_PARTS`) has no item of some class:
    ``classes_absent``, ``classes_present`` and ``metrics_undefined`` with that suffix, the undefined metrics of
    ``metrics`` set to null in place. Nothing, and ``metrics`` untouched, when it has every class."""
    coverage = class_coverage({c: r["support"] for c, r in per_class.items()}, test=TEST_PARTS[suffix])
    if not coverage["classes_absent"]:
        return {}
    for name in coverage["metrics_undefined"]:
        metrics[name] = dict.fromkeys(("value", "ci_low", "ci_high"))
    return {f"{key}{suffix}": value for key, value in coverage.items()}


def _per_fold(plan: Plan, us: list[dict], pooled: dict, classes: list[str]) -> list[dict]:
    """Each fold's scores (:data:`FOLD_METRICS`) and sizes."""
    per_fold = []
    for unit, split in zip(us, plan.splits, strict=True):
        y = [str(v) for v in plan.labels[unit["test"]]]
        p = pooled["proba"][np.asarray(pooled["fold"]) == unit["fold"]]
        scores = classification_metrics(y, p, classes)["metrics"]
        per_fold.append(
            {
                "fold": unit["fold"],
                "n_train": len(split.train),
                "n_test": len(y),
                **{k: scores[k] for k in FOLD_METRICS},
            }
        )
    return per_fold


def comparisons(predictions: dict, methods: dict, *, keep=None) -> list[dict]:
    """Every pair of methods, tested both ways; ``decided_by`` names the test behind ``significant``.

    ``keep`` (item indices) restricts a single test set to those items,
    e.g. the test items that do not duplicate a training item: McNemar's
    test on them (``comparisons_deduplicated`` in results.json).

    With several folds the decision comes from the corrected resampled
    t-test on per-fold accuracies (each fold's own sizes), because pooled
    predictions come from different models per fold and McNemar's
    independence assumption fails; with a single test set from McNemar's
    exact test. Either way the p-values are Holm-adjusted across pairs, and
    both raw results are kept.
    """
    names = list(predictions)
    rows = []
    for a_pos, a in enumerate(names):
        for b in names[a_pos + 1 :]:
            pa, pb = predictions[a], predictions[b]
            order_a, order_b = np.argsort(pa["index"]), np.argsort(pb["index"])
            if keep is not None:
                order_a = order_a[np.isin(pa["index"][order_a], keep)]
                order_b = order_b[np.isin(pb["index"][order_b], keep)]
            truth = np.asarray(pa["y_true"])[order_a]
            classes = np.asarray(pa["classes"])
            right_a = classes[pa["proba"][order_a].argmax(1)] == truth
            right_b = classes[pb["proba"][order_b].argmax(1)] == truth
            row = {"a": a, "b": b, "mcnemar": mcnemar(right_a, right_b), "t_test": None, "decided_by": "mcnemar"}
            folds_a, folds_b = methods[a]["per_fold"], methods[b]["per_fold"]
            if len(folds_a) >= 2 and keep is None:
                row["t_test"] = corrected_resampled_ttest(
                    [f["accuracy"] for f in folds_a],
                    [f["accuracy"] for f in folds_b],
                    n_train=[f["n_train"] for f in folds_a],
                    n_test=[f["n_test"] for f in folds_a],
                )
                row["decided_by"] = "t_test"
            rows.append(row)
    adjusted = holm([r[r["decided_by"]]["p_value"] for r in rows]) if rows else []
    for row, p in zip(rows, adjusted, strict=True):
        row["p_adjusted"] = p
        row["significant"] = bool(p < ALPHA)
    return rows


def predictions_table(plan: Plan, predictions: dict) -> str:
    """Every test prediction: method, fold, path, true label, predicted label, one probability per class, and
    the out-of-distribution score (empty for units saved without one)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    classes = next(iter(predictions.values()))["classes"] if predictions else []
    writer.writerow(["method", "fold", "path", "label", "predicted", *[f"p_{c}" for c in classes], "ood_score"])
    for method, pooled in predictions.items():
        ood = pooled.get("ood_score", [None] * len(pooled["index"]))
        for k, fold, p, y, o in zip(
            pooled["index"], pooled["fold"], pooled["proba"], pooled["y_true"], ood, strict=True
        ):
            writer.writerow(
                [
                    method,
                    fold,
                    plan.rel[k],
                    y,
                    classes[int(np.argmax(p))],
                    *[f"{v:.6f}" for v in p],
                    "" if o is None else f"{o:.4f}",
                ]
            )
    return buffer.getvalue()
