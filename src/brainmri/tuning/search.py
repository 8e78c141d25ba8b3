"""``brainmri tune``: search a method's settings on the training data, then test the best once.

Protocol. The data are split as ``brainmri benchmark`` splits them
(:func:`brainmri.runs.benchmark.plan_benchmark`: the official
train/test folders, an external ``--test-data`` set, or grouped k-fold).
For each split an Optuna study searches the method's space
(:mod:`brainmri.tuning.space`); a trial fits the method on each grouped
inner fold of the split's *training part*
(:func:`brainmri.models.validation.inner_splits`, the folds every method
uses inside ``fit``) and scores the mean balanced accuracy on the inner
validation parts. The test part plays no role in the search. When the
study holds ``--trials`` finished trials, the configuration with the best
inner score is refitted on the whole training part and tested once, through
the benchmark's own unit (:func:`brainmri.runs.benchmark.run_unit`),
so its metrics, bootstrap intervals and deduplicated scores are those of a
benchmark. With k-fold this is nested cross-validation: one search per
outer fold. Features are computed once for all images (cached), so a
classical trial only refits classifiers, and it scores them uncalibrated
(one fit per inner fold rather than one per fold of the calibration and a
final one, six times fewer): calibration hardly moves the predicted class,
and the untuned methods' own inner grid search scores its candidates the
same way. The best configuration is refitted with its calibration.

Pruning (``--pruner median|halving``). A trial reports the running mean of
its inner-fold scores after each fold (steps ``FOLD_STEP + f``), and a
method that trains in epochs also reports the validation accuracy after
each epoch of its first inner fold (steps ``1..epochs``); the pruner stops
trials that fall behind the others at the same step.

``--compare`` runs several samplers with the same budget, seed and splits,
each in its own study, and tests each one's best configuration on the same
test items: McNemar's exact test (one test set) or the corrected resampled
t-test (k-fold), Holm-adjusted, as the benchmark compares methods.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import balanced_accuracy_score

from brainmri.data.cache import MemoryCache
from brainmri.errors import ConfigError
from brainmri.evaluation.metrics import classification_metrics
from brainmri.features.extract import precompute_features
from brainmri.files import check_output_folder, write_json
from brainmri.models.catalog import get_method
from brainmri.models.validation import inner_splits
from brainmri.outputs import OutputFolder
from brainmri.runs.config import BenchmarkConfig
from brainmri.runs.plan import check_before_reading, plan_benchmark
from brainmri.runs.unit import epoch_lines, run_unit
from brainmri.training.device import resolve_device
from brainmri.training.loop import epoch_listener
from brainmri.tuning.config import TuneConfig
from brainmri.tuning.results import (
    JOURNAL,
    OBJECTIVE,
    best_trial,
    search_summary,
    shown_params,
    tune_results,
    write_tune_outputs,
)
from brainmri.tuning.space import load_space, suggest
from brainmri.tuning.study import (
    check_journal,
    check_studies,
    is_server,
    make_pruner,
    make_sampler,
    open_storage,
    open_study,
    storage_file,
)
from brainmri.tuning.workers import recover_interrupted, wait_for_others

logger = logging.getLogger(__name__)

#: Step of the first inner fold's running mean in a trial's intermediate values (epochs use steps 1, 2, ...).
FOLD_STEP = 1_000_000


def _require_optuna() -> None:
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ConfigError(
            "brainmri tune needs Optuna, which is not installed; install it with: pip install 'brainmri[tune]'"
        ) from None


def run_tune(
    config: TuneConfig,
    out: str | Path,
    *,
    n_jobs: int = -1,
    cache_dir: str | Path | None = None,
    device: str = "auto",
    on_event: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
    feature_progress: Callable[[int], None] | None = None,
) -> dict:
    """Run (or resume) a tune and write its results, best configuration, figures and report.

    Parameters
    ----------
    config : TuneConfig
    out : path
        Output folder (new, empty, or an earlier tune's, marked by its
        ``run.json``, :mod:`brainmri.outputs`): ``results.json``, ``trials.csv``, ``best_params.json``,
        ``predictions.csv``, ``figures/``, ``report.html``, the tested units
        (``units/``) and, without ``--storage``, the study (``study.journal``).
        Running the same command again continues the studies from their
        finished trials.
    n_jobs : int
        Worker processes for reading, features and model fitting.
    cache_dir : path or None
        Feature cache folder; None keeps features in memory for this run.
    device : str
        Where deep methods run.
    on_event : callable, optional
        Receives one-line progress messages (a line per trial).
    progress, feature_progress : callable, optional
        Receive counts of images read and of images whose features were computed.

    Returns
    -------
    dict
        The ``results.json`` document.

    Raises
    ------
    BrainMRIError
        A refused configuration, search space, output folder or storage,
        or a study created for something else; all but the last come before
        any image is read.
    """
    _require_optuna()
    say = on_event or (lambda message: None)
    spec = get_method(config.method)
    folder, space, bench, n_files = _check_before_reading(config, spec, Path(out), cache_dir, device)
    with folder.recording():
        return _tune(
            config,
            folder,
            spec,
            space,
            bench,
            n_files,
            n_jobs=n_jobs,
            cache_dir=cache_dir,
            device=device,
            say=say,
            progress=progress,
            feature_progress=feature_progress,
        )


def _check_before_reading(config: TuneConfig, spec, out: Path, cache_dir, device: str) -> tuple:
    """Refuse, before any image is read, a bad space, pruner, output, cache or storage folder, or device.

    Returns the output folder, the search space, the benchmark configuration of a trial and the number of files.
    """
    space = load_space(spec, config.space_file)
    both = sorted(set(space) & set(config.params or {}))
    if both:
        raise ConfigError(
            f"--params {config.method}.{both[0]} fixes a setting that the search space varies; remove it "
            "from --params, or from the space (--space FILE)"
        )
    make_pruner(config.pruner)
    bench = config.benchmark_config()
    inputs = [config.data, *([config.test_data] if config.test_data else [])]
    folder = OutputFolder(out, "tune")
    folder.check(inputs=inputs)
    if cache_dir:
        check_output_folder(cache_dir, "--cache-dir", inputs=inputs)
    journal = storage_file(config.storage, out / JOURNAL)
    if journal is not None and config.storage:
        check_output_folder(journal.parent, "--storage", inputs=inputs)
    n_files = check_before_reading(bench)
    if spec.family == "deep":
        resolve_device(device)
    return folder, space, bench, n_files


def _tune(
    config: TuneConfig,
    folder: OutputFolder,
    spec,
    space: dict,
    bench: BenchmarkConfig,
    n_files: int,
    *,
    n_jobs: int,
    cache_dir,
    device: str,
    say: Callable[[str], None],
    progress,
    feature_progress,
) -> dict:
    """:func:`run_tune` once every check passed: open the studies, search, test, write."""
    out = folder.path
    inputs = [config.data, *([config.test_data] if config.test_data else [])]
    if not config.storage:
        check_journal(out / JOURNAL, str(out / JOURNAL))
        folder.start({"config": config.to_dict()})
        folder.file(JOURNAL)
    storage = open_storage(config.storage, out / JOURNAL)
    check_studies(storage, config.study or config.method, _known_attrs(config, space))
    if config.storage:
        folder.start({"config": config.to_dict()})

    say(f"reading and auditing {n_files} files of {' and '.join(inputs)}")
    plan = plan_benchmark(bench, n_jobs=n_jobs, progress=progress)
    cache = str(cache_dir) if cache_dir else MemoryCache()
    say(f"computing features of {len(plan.paths)} images ({f'cached in {cache_dir}' if cache_dir else 'in memory'})")
    precompute_features(
        [spec.build(seed=config.seed, n_jobs=n_jobs, cache_dir=cache, preprocess=config.preprocess, device=device)],
        plan.paths,
        n_jobs=n_jobs,
        progress=feature_progress,
    )
    context = _Context(config, plan, space, cache, n_jobs, device, say)
    searches: dict[str, dict] = {}
    units: dict[str, list[dict]] = {}
    for sampler in config.samplers:
        searches[sampler], units[sampler] = {}, []
        for split in plan.splits:
            name = _study_name(config, sampler, split.name, len(plan.splits))
            where = f"[{sampler}] {split.name}" if len(plan.splits) > 1 or len(config.samplers) > 1 else f"[{sampler}]"
            study = open_study(
                storage,
                name,
                _study_attrs(config, plan, split, space),
                sampler=make_sampler(sampler, seed=config.seed),
                pruner=make_pruner(config.pruner),
            )
            _search(context, study, sampler, split, where)
            best = best_trial(study)
            say(
                f"{where}: best inner score {best.value:.4f} (trial {best.number}) with {shown_params(best.params)}; "
                f"refitting on {len(split.train)} training images and testing once on {len(split.test)}"
            )
            units[sampler].append(_tested_unit(context, out, sampler, split, study.study_name, best))
            searches[sampler][split.name] = search_summary(study, config.seed)
    say("computing metrics, confidence intervals and tests")
    results, predictions = tune_results(config, bench, plan, searches, units, space, storage_url=config.storage)
    write_tune_outputs(out, results, predictions, plan)
    return results


@dataclass
class _Context:
    """What every trial of a tune needs."""

    config: TuneConfig
    plan: object
    space: dict
    cache: object
    n_jobs: int
    device: str
    say: Callable[[str], None]


def _study_name(config: TuneConfig, sampler: str, fold: str, n_splits: int) -> str:
    """``--study`` (default: the method), then the sampler with ``--compare`` and the fold with k-fold."""
    parts = [config.study or config.method]
    if len(config.samplers) > 1:
        parts.append(sampler)
    if n_splits > 1:
        parts.append(fold)
    return "/".join(parts)


def _study_attrs(config: TuneConfig, plan, split, space: dict) -> dict:
    """What a study is for; a study created for anything else is refused (:func:`open_study`)."""
    counts = {str(c): int(n) for c, n in zip(*np.unique(plan.labels[split.train], return_counts=True), strict=True)}
    return {**_known_attrs(config, space), "split": f"{plan.protocol['kind']} {split.name}", "training_classes": counts}


def _known_attrs(config: TuneConfig, space: dict) -> dict:
    """The part of a study's attributes known before the data are read."""
    return {
        "method": config.method,
        "data": str(Path(config.data).resolve()),
        "test_data": str(Path(config.test_data).resolve()) if config.test_data else None,
        "preprocess": asdict(config.preprocess),
        "seed": config.seed,
        "space": space,
        "objective": OBJECTIVE,
    }


def _finished(study) -> int:
    from optuna.trial import TrialState

    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))


def _search(context: _Context, study, sampler: str, split, where: str) -> None:
    """Run trials until ``study`` holds ``config.trials`` finished ones (other workers' included)."""
    import optuna
    from optuna.trial import TrialState

    config = context.config
    if not is_server(config.storage):
        recover_interrupted(study, where, context.say, config.storage)
    # A resumed study (or a second worker) gets another sampler seed, so that it does not redraw the first trials.
    seed = config.seed + 7919 * len(study.trials) + (os.getpid() if is_server(config.storage) else 0)
    study.sampler = make_sampler(sampler, seed=seed)
    done = _finished(study)
    if done >= config.trials:
        context.say(f"{where}: {done} trials finished earlier, reusing them")
        return
    context.say(
        f"{where}: {done} of {config.trials} trials finished; searching {len(context.space)} settings "
        f"({', '.join(context.space)}) with {sampler}, each trial scored by grouped inner CV on "
        f"{len(split.train)} training images"
    )
    y, groups = context.plan.labels[split.train], context.plan.groups[split.train]
    folds, how = inner_splits(y, groups, random_state=config.seed)

    def objective(trial):
        return _score(context, trial, split, folds, how)

    def line(study, trial) -> None:
        value = (
            "pruned"
            if trial.state == TrialState.PRUNED
            else (f"score {trial.value:.4f}" if trial.value is not None else trial.state.name.lower())
        )
        best = study.best_trial if study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) else None
        context.say(
            f"{where}: trial {trial.number} ({_finished(study)}/{config.trials}) {value} with "
            f"{shown_params(trial.params)} in {trial.duration.total_seconds():.1f} s"
            + (f"; best {best.value:.4f} (trial {best.number})" if best else "")
        )

    stop = optuna.study.MaxTrialsCallback(
        config.trials, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)
    )
    study.optimize(objective, n_trials=config.trials - done, callbacks=[line, stop], gc_after_trial=False)
    wait_for_others(study, where, context.say)


def _score(context: _Context, trial, split, folds, how: str) -> float:
    """Mean balanced accuracy of the trial's configuration over the inner folds of ``split``'s training part.

    Without pruning, a classical method's folds are fitted in parallel
    (``n_jobs`` processes, one job each); with pruning, or for a deep method,
    one after the other so that each fold (and epoch) can stop the trial.
    """
    import optuna
    from joblib import Parallel, delayed

    config, plan = context.config, context.plan
    params = {**(config.params or {}), **suggest(trial, context.space)}
    spec = get_method(config.method)
    data = (plan.paths[split.train], plan.labels[split.train], plan.groups[split.train])
    build = {
        "seed": config.seed,
        "n_jobs": context.n_jobs,
        "cache_dir": context.cache,
        "preprocess": config.preprocess,
        "device": context.device,
        "params": params,
    }
    pruning = config.pruner != "none"

    def report_epoch(record: dict) -> None:
        trial.report(record["val_accuracy"], step=record["epoch"])
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {record['epoch']} of the first inner fold")

    started = time.perf_counter()
    if pruning or spec.family == "deep" or context.n_jobs == 1:
        scores, uncalibrated = [], False
        for f, fold in enumerate(folds):
            score, uncalibrated = _fold_score(spec, build, data, fold, report_epoch if f == 0 and pruning else None)
            scores.append(score)
            trial.report(float(np.mean(scores)), step=FOLD_STEP + f)
            if pruning and f < len(folds) - 1 and trial.should_prune():
                raise optuna.TrialPruned(f"pruned after inner fold {f + 1} of {len(folds)}")
    else:
        scored = Parallel(n_jobs=context.n_jobs)(
            delayed(_fold_score)(spec, {**build, "n_jobs": 1}, data, fold) for fold in folds
        )
        scores, uncalibrated = [score for score, _ in scored], scored[0][1]
        for f in range(len(folds)):
            trial.report(float(np.mean(scores[: f + 1])), step=FOLD_STEP + f)
    trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
    trial.set_user_attr("inner_scores", [round(s, 6) for s in scores])
    trial.set_user_attr("inner_cv", how)
    trial.set_user_attr("uncalibrated", uncalibrated)
    trial.set_user_attr("seconds", round(time.perf_counter() - started, 3))
    return float(np.mean(scores))


def _fold_score(
    spec, build: dict, data: tuple, fold: tuple, on_epoch: Callable[[dict], None] | None = None
) -> tuple[float, bool]:
    """Balanced accuracy on one inner fold's validation part of the method fitted on its training part.

    Also whether the method was fitted uncalibrated (a classical pipeline, see the module docstring).
    """
    paths, y, groups = data
    train, valid = fold
    model = spec.build(**build)
    uncalibrated = _without_calibration(model)
    with epoch_listener(on_epoch) if on_epoch else contextlib.nullcontext():
        model.fit(paths[train], y[train], groups=groups[train])
    if uncalibrated:
        return float(balanced_accuracy_score(y[valid], model.predict(paths[valid]))), True
    proba = model.predict_proba(paths[valid])
    classes = [str(c) for c in model.classes_]
    return classification_metrics([str(v) for v in y[valid]], proba, classes)["metrics"]["balanced_accuracy"], False


def _without_calibration(model) -> bool:
    """Switch a classical pipeline's calibration off (its ``classifier__calibration``); False for other models."""
    if "classifier__calibration" not in getattr(model, "get_params", dict)():
        return False
    model.set_params(classifier__calibration=None)
    return True


def _tested_unit(context: _Context, out: Path, sampler: str, split, study_name: str, best) -> dict:
    """The benchmark unit of the best configuration: refitted on the training part, tested once.

    Saved under ``units/<sampler>/<fold>.json`` and reused while the
    study's best trial stays the same.
    """
    import json

    path = out / "units" / sampler / f"{split.name}.json"
    key = {"study": study_name, "best_trial": best.number, "best_params": best.params}
    if path.exists():
        unit = json.loads(path.read_text(encoding="utf-8"))
        if all(unit.get(k) == v for k, v in key.items()):
            context.say(f"[{sampler}] {split.name}: tested earlier with this configuration, reusing")
            return unit
    config = context.config
    where = f"[{sampler}] {split.name}"
    with epoch_lines(where, context.say):
        unit = run_unit(
            config.benchmark_config(best.params),
            context.plan,
            config.method,
            split,
            n_jobs=context.n_jobs,
            cache_dir=context.cache,
            device=context.device,
        )
    unit.update(key)
    write_json(path, unit)
    context.say(f"{where}: fit {unit['fit_s']:.1f}s, predict {unit['predict_s']:.1f}s")
    return unit
