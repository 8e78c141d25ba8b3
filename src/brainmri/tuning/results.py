"""What a tune reports: each search summarised, the best configuration's test, trials.csv, the files and the terminal.

Nothing here runs a trial (:mod:`brainmri.tuning.search` does); these turn
finished studies and tested units into ``results.json``, ``trials.csv``,
``best_params.json``, ``predictions.csv``, the report and the lines printed.
"""

from __future__ import annotations

import csv
import io
import math
from datetime import UTC, datetime
from pathlib import Path

from brainmri.errors import ConfigError
from brainmri.files import write_json, write_text
from brainmri.models.catalog import get_method
from brainmri.models.versions import code_versions
from brainmri.report.terminal import format_results
from brainmri.runs.config import BenchmarkConfig
from brainmri.runs.summary import comparisons, predictions_table, summarize_units
from brainmri.tuning.config import TuneConfig
from brainmri.tuning.report import write_tune_report
from brainmri.tuning.study import redact
from brainmri.version import __version__


def search_summary(study, seed: int) -> dict:
    """Trials, best trial, best-so-far curve and parameter importances of a finished study."""
    from optuna.trial import TrialState

    trials = sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
    rows, curve, best_so_far = [], [], -math.inf
    for t in trials:
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "params": t.params,
                "seconds": round(t.duration.total_seconds(), 3) if t.duration else None,
                "inner_scores": t.user_attrs.get("inner_scores"),
                "worker": t.user_attrs.get("worker"),
                "uncalibrated": t.user_attrs.get("uncalibrated"),
            }
        )
        if t.state == TrialState.COMPLETE:
            best_so_far = max(best_so_far, t.value)
        if t.state in (TrialState.COMPLETE, TrialState.PRUNED):
            curve.append(best_so_far if best_so_far > -math.inf else None)
    best = best_trial(study)
    return {
        "study": study.study_name,
        "n_trials": len(curve),
        "states": {s: sum(r["state"] == s for r in rows) for s in sorted({r["state"] for r in rows})},
        "best": {
            "number": best.number,
            "value": best.value,
            "params": best.params,
            "inner_scores": best.user_attrs.get("inner_scores"),
            "inner_cv": best.user_attrs.get("inner_cv"),
        },
        "best_so_far": curve,
        "importances": _importances(study, seed),
        "trials": rows,
    }


def _importances(study, seed: int) -> dict:
    """fANOVA importance of each parameter (Hutter et al. 2014), or the reason there is none."""
    import warnings

    import optuna

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=seed)
            values = optuna.importance.get_param_importances(study, evaluator=evaluator)
        return {
            "method": "fANOVA (Hutter, Hoos and Leyton-Brown 2014, PMLR 32(1):754-762)",
            "values": {k: round(float(v), 4) for k, v in values.items()},
        }
    except (ValueError, RuntimeError) as exc:
        return {"method": None, "values": {}, "reason": str(exc).splitlines()[0]}


def tune_results(
    config: TuneConfig, bench: BenchmarkConfig, plan, searches: dict, units: dict, space: dict, storage_url: str | None
) -> tuple[dict, dict]:
    """``results.json``: the searches, and the test of each sampler's best configuration as a benchmark scores it."""
    methods, predictions = {}, {}
    test = None
    for sampler, us in units.items():
        test, pooled = summarize_units(bench, plan, {config.method: us})
        methods[tested_name(config.method, sampler)] = test["methods"][config.method]
        predictions[tested_name(config.method, sampler)] = pooled[config.method]
    test.update(methods=methods, comparisons=comparisons(predictions, methods) if len(methods) > 1 else [])
    uncalibrated = any(
        t.get("uncalibrated")
        for by_fold in searches.values()
        for summary in by_fold.values()
        for t in summary["trials"]
    )
    test["protocol"]["notes"] = [
        SELECTION_NOTE,
        *([UNCALIBRATED_NOTE] if uncalibrated else []),
        *test["protocol"]["notes"],
    ]
    first = searches[config.samplers[0]]
    chosen = max(first.values(), key=lambda s: s["best"]["value"])
    results = {
        "brainmri_version": __version__,
        "versions": code_versions(),
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": config.to_dict(),
        "method": {
            "name": config.method,
            "summary": get_method(config.method).summary,
            "reference": get_method(config.method).reference,
        },
        "space": space,
        "objective": OBJECTIVE,
        "storage": redact(storage_url) if storage_url else JOURNAL,
        "searches": searches,
        "best_params": {config.method: {**(config.params or {}), **chosen["best"]["params"]}},
        "best_params_from": (
            f"{config.samplers[0]}, study {chosen['study']}"
            + (" (the outer fold with the best inner score; each fold's own is in searches)" if len(first) > 1 else "")
        ),
        "test": test,
    }
    return results, predictions


def tested_name(method: str, sampler: str) -> str:
    """The name of a sampler's tested configuration in the test results (``glcm-svm tuned by tpe``)."""
    return f"{method} tuned by {sampler}"


def trials_csv(results: dict) -> str:
    """Every trial of every study: sampler, fold, number, state, score, seconds, then one column per parameter."""
    names = list(results["space"])
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["sampler", "fold", "trial", "state", "score", "seconds", *names])
    for sampler, by_fold in results["searches"].items():
        for fold, search in by_fold.items():
            for t in search["trials"]:
                writer.writerow(
                    [
                        sampler,
                        fold,
                        t["number"],
                        t["state"],
                        "" if t["value"] is None else f"{t['value']:.6f}",
                        t["seconds"],
                        *[t["params"].get(n, "") for n in names],
                    ]
                )
    return buffer.getvalue()


def write_tune_outputs(out: Path, results: dict, predictions: dict, plan) -> None:
    """results.json, trials.csv, best_params.json, predictions.csv, figures/ and report.html (each atomic)."""

    write_json(out / "results.json", results)
    write_json(out / BEST_PARAMS, results["best_params"])
    write_text(out / "trials.csv", trials_csv(results))
    write_text(out / "predictions.csv", predictions_table(plan, predictions))
    write_tune_report(results, predictions, out)


def format_tune(results: dict) -> str:
    """The terminal summary: each search's best configuration, then the test table of the benchmark."""
    lines = [f"objective: {results['objective']}"]
    for sampler, by_fold in results["searches"].items():
        for fold, s in by_fold.items():
            lines.append(
                f"{sampler} {fold}: {s['n_trials']} trials, best inner score {s['best']['value']:.4f} "
                f"(trial {s['best']['number']}): {shown_params(s['best']['params'])}"
            )
    lines.append("")
    lines.append("test of the best configuration, once, after the search:")
    lines.append(format_results(results["test"]))
    return "\n".join(lines)


#: What a trial maximises.
OBJECTIVE = "balanced accuracy, mean over the grouped inner folds of the training part"


#: How a classical method's trial is scored (see the module docstring).
UNCALIBRATED_NOTE = (
    "trials of a classical method were scored on the uncalibrated classifier's predictions; the "
    "configuration tested was refitted with its calibration"
)


#: The journal file of the study in the output folder when ``--storage`` is not given.
JOURNAL = "study.journal"


#: The tuned configuration, a ``--params`` file for ``brainmri train`` and ``brainmri benchmark``.
BEST_PARAMS = "best_params.json"


SELECTION_NOTE = (
    "every configuration was scored by grouped inner cross-validation on the training part only; the "
    "test part was used once, after the search, to test the configuration with the best inner score "
    "(no selection on the test set)"
)


def best_trial(study):
    """The complete trial with the best inner score; a study whose trials were all pruned has none."""
    from optuna.trial import TrialState

    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise ConfigError(
            f"study {study.study_name}: none of its {len(study.trials)} trials ran to the end (all "
            "pruned or failed), so there is no configuration to test; use --pruner none or more --trials"
        )
    return study.best_trial


def shown_params(params: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
