"""``brainmri benchmark``: every method under one leakage-safe protocol.

The run is a list of units, one per (method, fold). Each finished unit is
saved (test items, probabilities, timings) under ``OUT/units/``; running the
same command again skips them, so an interrupted benchmark resumes. Metrics,
tests and the report are always recomputed from the saved units.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from brainmri import __version__
from brainmri.data.audit import (
    analyse,
    audit_report,
    cross_dataset_leaks,
    cross_split_leaks,
    format_cross_dataset_leaks,
)
from brainmri.data.dataset import Dataset, load_dataset
from brainmri.data.extra import check_extra_classes, format_extra, load_extra
from brainmri.data.io import item_kind
from brainmri.data.splits import (Split, check_folds, check_grouping, group_labels, kfold_splits, official_indices,
                                  official_split)
from brainmri.errors import DataError
from brainmri.evaluation.cost import cost_entry, count_parameters, format_cost, measure_inference, speed_sample
from brainmri.evaluation.metrics import LOWER_IS_BETTER, classification_metrics, interval_statement, summarize
from brainmri.evaluation.protocol import BenchmarkConfig, apply_label_map, check_test_classes, code_versions
from brainmri.evaluation.run_folder import check_run_folder, run_folder, start_run_folder
from brainmri.evaluation.shift import (format_shift, ood_auc, predict_shifted, shift_definitions, shift_subset,
                                       summarize_shift)
from brainmri.evaluation.stats import corrected_resampled_ttest, holm, mcnemar
from brainmri.explain.examples import explain_examples
from brainmri.features.extract import MemoryCache, precompute_features
from brainmri.files import check_output_folder, write_json, write_text
from brainmri.models.validation import check_class_counts
from brainmri.models.registry import check_inputs, get_method, protocol_notes
from brainmri.robust.adapt import check_model_adapts

logger = logging.getLogger(__name__)

ALPHA = 0.05


@dataclass
class Plan:
    """What will be trained and tested: items, labels, groups and splits."""

    paths: np.ndarray  # every item (train and external test) as str
    labels: np.ndarray
    rel: list[str]  # paths as written in outputs
    groups: np.ndarray  # bootstrap / grouping id of every item
    splits: list[Split]
    protocol: dict
    dataset: dict
    audit: dict
    audit_report: dict
    dedup_test: np.ndarray | None = None  # official split or external test: test items without a training duplicate


def audit_summary(report: dict) -> dict:
    """The counts of an ``audit.json`` report that results and bundle manifests carry."""
    return {
        "n_unreadable": report["n_unreadable"],
        "exact_duplicate_clusters": len(report["exact_duplicate_clusters"]),
        "exact_duplicate_images": report["n_exact_duplicate_images"],
        "near_duplicate_clusters": len(report["near_duplicate_clusters"]),
        "near_duplicate_images": report["n_near_duplicate_images"],
        "largest_cluster_size": report["largest_cluster_size"],
        "conflicting_label_clusters": len(report["conflicting_label_clusters"]),
        "cross_split_leaks": len(report["cross_split_leaks"]),
        "leaks_per_class": report["leaks_per_class"],
    }


def plan_benchmark(config: BenchmarkConfig, *, n_jobs: int = -1, progress: Callable[[int], None] | None = None) -> Plan:
    """Read and audit the data, then build the splits the config asks for."""
    dataset = apply_label_map(load_dataset(config.data, allow_outside=config.allow_outside_paths), config.label_map, "DATA")
    analysis = analyse(dataset, params=config.duplicates, n_jobs=n_jobs, progress=progress, max_pixels=config.max_pixels)
    if not len(analysis.dataset):
        raise DataError(f"{config.data}: no readable image; run `brainmri audit` to see why")
    check_inputs(config.methods, (item_kind(r.shape, r.mode) for r in analysis.records))
    ds = analysis.dataset
    report = audit_report(analysis)
    notes = []
    if analysis.unreadable:
        notes.append(f"{len(analysis.unreadable)} unreadable file(s) were skipped (see audit.json)")
    if ds.problems:
        notes.append(_listing_note(ds, config.data))
    if config.kind == "cv" and config.grouping == "none":
        notes.append("grouping none: items are split one by one, so duplicates and slices of one patient can sit in "
                     "training and test; these numbers show what a naive split reports, not unseen-data performance")
    elif not ds.has_subjects and config.kind == "cv":
        notes.append("subject ids are absent: folds group items by "
                     f"{'look-alike group' if config.grouping == 'similar' else 'near-duplicate cluster'} instead, "
                     "which keeps copies together but cannot guarantee that one patient's slices stay on one side")
    elif not ds.has_subjects:
        notes.append("subject ids are absent: the split cannot be checked for patients in both training and test")
    paths = np.array([str(it.path) for it in ds.items])
    labels = ds.labels.astype(str)
    rel = [ds.relpath(it) for it in ds.items]
    dedup = None
    dataset_info = {"path": str(ds.root), "n_items": len(ds), "classes": ds.classes, "counts": ds.counts(), "test_data": None}

    if config.kind == "cv":
        splits, used = kfold_splits(analysis, k=config.cv, grouping=config.grouping, seed=config.seed)
        groups, _ = group_labels(analysis, config.grouping)
        protocol = {"kind": "cv", "folds": config.cv, "grouping": used, "n_groups": int(len(np.unique(groups)))}
        notes += protocol_notes(config.methods, config.cv)
        for label in ds.classes:
            absent = [s.name for s in splits if not (labels[s.test] == label).any()]
            if absent:
                notes.append(f"class {label} has too few independent groups to appear in every test fold "
                             f"(absent from {', '.join(absent)}); pooled metrics still include it")
    elif config.kind == "official":
        split = official_split(analysis, drop_test_duplicates=config.drop_test_duplicates)
        splits = [split]
        groups, _ = group_labels(analysis, "auto")  # subjects when known, else near-duplicate clusters
        leaking = {leak["test_path"] for leak in cross_split_leaks(analysis)}
        dedup = np.array([k for k in split.test if rel[k] not in leaking], dtype=int)
        protocol = {"kind": "official", "folds": 1, "grouping": "official split", "n_groups": int(len(np.unique(groups)))}
        if leaking and not config.drop_test_duplicates:
            notes.append(f"{len(leaking)} test items duplicate a training item; metrics_deduplicated "
                         "reports the test split without them")
        unsplit = sum(it.split is None for it in ds.items)
        if unsplit:
            notes.append(f"{unsplit} item(s) have a blank split and are used neither for training nor for testing; "
                         "fill in their split (train or test) in the CSV")
    else:
        test_ds = apply_label_map(load_dataset(config.test_data, allow_outside=config.allow_outside_paths),
                                  config.label_map, "--test-data")
        test_analysis = analyse(test_ds, params=config.duplicates, n_jobs=n_jobs, progress=progress, max_pixels=config.max_pixels)
        check_test_classes(ds.classes, test_analysis.dataset.classes, config.test_data)
        tds = test_analysis.dataset
        leaks = cross_dataset_leaks(analysis, test_analysis)
        report["cross_dataset_leaks"] = leaks
        leaking = {leak["other_path"] for leak in leaks["pairs"]}
        copies = np.array([tds.relpath(it) in leaking for it in tds.items], dtype=bool)
        n_train = len(paths)
        paths = np.concatenate([paths, [str(it.path) for it in tds.items]])
        labels = np.concatenate([labels, tds.labels.astype(str)])
        rel = rel + [f"TEST/{tds.relpath(it)}" for it in tds.items]
        groups = np.concatenate([group_labels(analysis, "auto")[0], test_analysis.graph.cluster_of + n_train])
        dedup = n_train + np.flatnonzero(~copies)
        if copies.all() and config.drop_test_duplicates:
            raise DataError(f"{config.test_data}: all {len(tds)} test items copy a {ds.root.name} image, so "
                            "--drop-test-duplicates leaves no test item; test on another dataset")
        if config.drop_test_duplicates:
            dropped = {label: v["leaking"] for label, v in leaks["per_class"].items() if v["leaking"]}
            splits = [Split("external", np.arange(n_train), dedup, dropped)]
        else:
            splits = [Split("external", np.arange(n_train), np.arange(n_train, len(paths)))]
        protocol = {"kind": "external", "folds": 1, "grouping": "separate datasets", "n_groups": None,
                    "cross_dataset_leaks": leaks}
        dataset_info["test_data"] = {"path": str(tds.root), "n_items": len(tds), "counts": tds.counts()}
        notes.append(f"external validation: trained on all of {ds.root.name}, tested on {tds.root.name}")
        if copies.all():
            notes.append(f"all {len(tds)} items of {tds.root.name} copy a {ds.root.name} image: the external score "
                         "measures memorisation only, and there is no deduplicated score")
            dedup = None
        elif leaking and not config.drop_test_duplicates:
            notes.append(f"{len(leaking)} of the {len(tds)} items of {tds.root.name} copy a {ds.root.name} image, so "
                         "the external score partly measures memorisation; metrics_deduplicated reports the test "
                         "without them")
        if tds.problems:
            notes.append(_listing_note(tds, config.test_data))
    if config.extra_data:
        against = [analysis] if config.kind != "external" else [analysis, test_analysis]
        extra = load_extra(config.extra_data, config.extra_label_map, ds.classes, against=against,
                           params=config.duplicates, n_jobs=n_jobs, progress=progress, max_pixels=config.max_pixels,
                           allow_outside=config.allow_outside_paths)
        added = np.arange(len(paths), len(paths) + len(extra.paths))
        paths, labels, rel = np.concatenate([paths, extra.paths]), np.concatenate([labels, extra.labels]), rel + extra.rel
        groups = np.concatenate([groups, extra.groups + np.max(groups) + 1])
        splits = [Split(s.name, np.concatenate([s.train, added]), s.test, s.dropped) for s in splits]
        dataset_info["extra_data"] = extra.info
        notes.append(format_extra(extra.info))
    for split in splits:
        _check_test_classes_trained(labels[split.train], labels[split.test], split.name)
        _check_training_counts(labels[split.train], np.asarray(groups)[split.train], split.name)
    if config.kind != "cv":
        notes += _untested_classes_note(labels[splits[0].train], labels[splits[0].test])
    protocol.update({
        "subjects_known": ds.has_subjects,
        "dropped_duplicates": splits[0].dropped,
        "label_map": config.label_map,
        "notes": notes,
    })
    return Plan(paths, labels, rel, np.asarray(groups), splits, protocol, dataset_info, audit_summary(report), report, dedup)


def _listing_note(ds: Dataset, source: str) -> str:
    first = ds.problems[0]
    return (f"{len(ds.problems)} problem(s) found while listing {source} (rows, files or folders skipped or to check), "
            f"e.g. {first['path']}: {first['reason']}; `brainmri audit {source}` lists them all")


def _check_test_classes_trained(y_train: np.ndarray, y_test: np.ndarray, fold: str) -> None:
    """Refuse, before any training, a split whose test part holds a class its training part lacks."""
    unseen = sorted(set(y_test) - set(y_train))
    if unseen:
        raise DataError(
            f"{fold}: class(es) {', '.join(unseen)} have test images but no training images, so no model can predict "
            "them; add training images of that class, remove its test images, or merge it into a trained class with --label-map"
        )


def _untested_classes_note(y_train: np.ndarray, y_test: np.ndarray) -> list[str]:
    """A note when a trained class has no test item: macro averages and balanced accuracy then disagree."""
    untested = sorted(set(y_train) - set(y_test))
    if not untested:
        return []
    n_classes = len(set(y_train))
    return [f"class(es) {', '.join(untested)} have training images but none in the test set, so they cannot be scored: "
            f"balanced accuracy averages recall over the {n_classes - len(untested)} tested classes, while macro "
            f"sensitivity, precision and F1 average over all {n_classes} classes and count 0 for "
            f"{', '.join(untested)}; compare methods on balanced accuracy, or add test images of those classes"]


def _check_training_counts(y: np.ndarray, groups: np.ndarray, fold: str) -> None:
    """Refuse, before any training, a split whose training part cannot be split into grouped inner folds."""
    try:
        check_class_counts(y, 2, "grouped inner cross-validation", groups=groups)
    except DataError as error:
        raise DataError(f"{fold}: {error}") from None


def _unit_path(out: Path, method: str, fold: str) -> Path:
    return out / "units" / method / f"{fold}.json"


def run_unit(config: BenchmarkConfig, plan: Plan, method: str, split: Split, *, n_jobs: int, cache_dir,
             work_dir: Path | None = None, device: str = "auto", on_event: Callable[[str], None] | None = None) -> dict:
    """Fit one method on one split's training items and predict its test items.

    ``cache_dir`` is a feature cache folder, the run's ``MemoryCache`` or None;
    ``work_dir`` a folder for the method's resumable state (checkpoints).
    A fitted method whose final step has ``history_`` (per-epoch records)
    gets it stored in the unit. The unit also holds the out-of-distribution
    score and distance of every test item (:mod:`brainmri.robust.ood`,
    calibrated on the split's training items); with ``config.adapt``, the
    test items are predicted by the method adapted to them
    (:mod:`brainmri.robust.adapt`), and with several adaptations the
    unit's ``adapted`` holds the predictions of each further one (the same
    fitted network; :func:`split_adapted`). The unit records the method's network
    weights and its inference speed (:mod:`brainmri.evaluation.cost`).
    With ``config.shift``, the unit also holds
    the probabilities of (a stratified sample of) the test items under each
    shift and severity (:mod:`brainmri.evaluation.shift`), and ``on_event``
    receives a line per shift.
    """
    from brainmri.robust.adapt import adapt_model
    from brainmri.robust.ood import fit_ood

    spec = get_method(method)
    model = spec.build(seed=config.seed, n_jobs=n_jobs, cache_dir=cache_dir, preprocess=config.preprocess,
                       work_dir=work_dir, device=device, params=config.method_params(method))
    start = time.perf_counter()
    # Every method gets the outer split's groups, so its inner splits keep them together too.
    model.fit(plan.paths[split.train], plan.labels[split.train], groups=plan.groups[split.train])
    fitted = time.perf_counter()
    ood = fit_ood(model, plan.paths[split.train], plan.labels[split.train], seed=config.seed,
                  acquisition=spec.inputs == "slices", cache_dir=cache_dir, n_jobs=n_jobs)
    calibrated = time.perf_counter()
    modes = config.adapt_modes
    predictor = adapt_model(model, modes[0], name=method)
    tested = _test_predictions(config, plan, split, predictor, ood, on_event=on_event)
    proba = tested.pop("proba")
    inference = measure_inference(predictor, plan.paths[speed_sample(split.test)])
    final = model.steps[-1][1] if hasattr(model, "steps") else model
    history = getattr(final, "history_", None)
    unit = {
        "method": method,
        "fold": split.name,
        "test": split.test.tolist(),
        "classes": [str(c) for c in model.classes_],
        "proba": np.round(proba, 6).tolist(),
        "fit_s": round(fitted - start, 3),
        "predict_s": tested.pop("predict_s"),
        "params": dict(getattr(model, "params_", {})),
        "parameters": count_parameters(model),
        "inference": inference,
        **({"history": history} if history is not None else {}),
        "ood": {**ood.summary(), "fit_s": round(calibrated - fitted, 3), **tested.pop("ood")},
        **tested,
    }
    if len(modes) > 1:  # the same network, adapted each other way: reported as methods of their own
        unit["adapted"] = {}
        for mode in modes[1:]:
            adapted = adapt_model(model, mode, name=method)
            other = _test_predictions(config, plan, split, adapted, ood, on_event=on_event)
            unit["adapted"][mode] = {**other, "proba": np.round(other["proba"], 6).tolist()}
    # The optional hook of the method interface: pictures of what the method computes, for the report.
    if split.name == plan.splits[0].name:
        if hasattr(model, "illustrate"):
            unit["illustrations"] = _illustrations(model, plan, split)
        unit["explanations"] = [
            {"caption": f"{plan.rel[split.test[e['index']]]}: {e['caption']}", "png": base64.b64encode(e["png"]).decode()}
            for e in explain_examples(model, plan.paths[split.test], plan.labels[split.test], proba, method=method,
                                      preprocess=config.preprocess, max_pixels=config.max_pixels)]
    return unit


def _test_predictions(config: BenchmarkConfig, plan: Plan, split: Split, predictor, ood, *,
                      on_event: Callable[[str], None] | None = None) -> dict:
    """What ``predictor`` says of a split's test items: probabilities, OOD scores and, with ``--shift``, shifted tests.

    Returns the unit entries ``proba`` (an array, not rounded yet), ``predict_s``,
    ``ood`` (``score`` and ``distance``) and, with ``config.shift``, ``shift``
    and ``shift_s``.
    """
    from brainmri.robust.ood import predict_with_ood

    start = time.perf_counter()
    proba, distance = predict_with_ood(predictor, ood, plan.paths[split.test])
    done = time.perf_counter()
    tested = {"proba": proba, "predict_s": round(done - start, 3),
              "ood": {"score": np.round(ood.score_distance(distance), 4).tolist(), "distance": _round(distance)}}
    if config.shift:
        items = shift_subset(plan.labels, split.test, config.shift_max_items, seed=config.seed)
        shifted, distances = predict_shifted(predictor, plan.paths[items], config.shift, config.shift_severities,
                                             seed=config.seed, max_pixels=config.max_pixels, ood=ood,
                                             on_event=on_event)
        tested["shift"] = {"test": items.tolist(),
                           "proba": {name: {s: np.round(p, 6).tolist() for s, p in by.items()}
                                     for name, by in shifted.items()},
                           "distance": {name: {s: _round(d) for s, d in by.items()} for name, by in distances.items()}}
        tested["shift_s"] = round(time.perf_counter() - done, 3)
    return tested


def adapted_name(method: str, mode: str) -> str:
    """The results key of ``method`` tested with the test-time adaptation ``mode`` next to others.

    >>> adapted_name("transfer-finetune", "adabn"), adapted_name("transfer-finetune", "none")
    ('transfer-finetune+adabn', 'transfer-finetune')
    """
    return method if mode == "none" else f"{method}+{mode}"


def split_adapted(config: BenchmarkConfig, units: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Units of a run with several ``--adapt`` modes, one list per method and mode (:func:`adapted_name`).

    The first mode's predictions are the unit's own; each other mode's
    replace them (probabilities, OOD scores, shifted tests and the time
    to predict) in a copy that keeps the training record (fit time,
    weights, history, inference speed) and no pictures. With one mode,
    ``units`` as they are.
    """
    modes = config.adapt_modes
    if len(modes) == 1:
        return units
    out: dict[str, list[dict]] = {}
    for method, us in units.items():
        out[adapted_name(method, modes[0])] = [{k: v for k, v in u.items() if k != "adapted"} for u in us]
        for mode in modes[1:]:
            copies = []
            for u in us:
                tested = u["adapted"][mode]
                copy = {k: v for k, v in u.items() if k not in ("adapted", "illustrations", "explanations")}
                copy.update({k: v for k, v in tested.items() if k != "ood"},
                            method=adapted_name(method, mode), ood={**u["ood"], **tested["ood"]})
                copies.append(copy)
            out[adapted_name(method, mode)] = copies
    return out


def _round(values: np.ndarray) -> list[float]:
    """Out-of-distribution distances as stored in a unit: 6 significant digits."""
    return [float(f"{v:.6g}") for v in values]


#: Test images of the first fold shown by a method's ``illustrate`` hook in the report (the first of each class).
ILLUSTRATED = 4


def _illustrations(model, plan: Plan, split: Split) -> list[dict]:
    """``model.illustrate`` on the first test item of each class (at most :data:`ILLUSTRATED`), as PNG in base64."""
    from PIL import Image

    first = {}
    for k in split.test:
        first.setdefault(plan.labels[k], k)
    chosen = [first[label] for label in sorted(first)][:ILLUSTRATED]
    pictures = []
    for k, (caption, rgb) in zip(chosen, model.illustrate(plan.paths[chosen])):
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buffer, format="PNG")
        pictures.append({"caption": f"{plan.rel[k]} ({plan.labels[k]}): {caption}",
                         "png": base64.b64encode(buffer.getvalue()).decode("ascii")})
    return pictures


def _check_before_reading(config: BenchmarkConfig) -> int:
    """Refuse, from the file listings alone, what would otherwise fail after every image was read.

    Returns
    -------
    int
        Number of files listed in DATA, ``--test-data`` and ``--extra-data``.
    """
    for method in config.methods:
        get_method(method).check_params(config.method_params(method))
        for mode in config.adapt_modes:
            if mode != "none":
                check_model_adapts(get_method(method).build(params=config.method_params(method)), mode, name=method)
    dataset = apply_label_map(load_dataset(config.data, allow_outside=config.allow_outside_paths), config.label_map, "DATA")
    n_extra = 0
    if config.extra_data:
        extra = apply_label_map(load_dataset(config.extra_data, allow_outside=config.allow_outside_paths),
                                config.extra_label_map, "--extra-data", option="--extra-label-map")
        check_extra_classes(extra.classes, dataset.classes, config.extra_data)
        n_extra = len(extra)
    if config.kind == "cv":
        check_folds(config.cv, len(dataset))
        check_grouping(dataset, config.grouping)
    elif config.kind == "official":
        official_indices(dataset)
    else:
        test = apply_label_map(load_dataset(config.test_data, allow_outside=config.allow_outside_paths),
                               config.label_map, "--test-data")
        check_test_classes(dataset.classes, test.classes, config.test_data)
        return len(dataset) + len(test) + n_extra
    return len(dataset) + n_extra


def _where(config: BenchmarkConfig, plan: Plan, method: str, split: Split) -> str:
    """How progress lines name a unit: ``[method k/n] method fold (fold k/n)``."""
    m, f = config.methods.index(method) + 1, [s.name for s in plan.splits].index(split.name) + 1
    return f"[{m}/{len(config.methods)}] {method} {split.name} ({f}/{len(plan.splits)})"


@contextmanager
def _cluster_client(address: str | None) -> Iterator:
    """A Dask client of the scheduler at ``address`` (closed after the block), or None without one."""
    if not address:
        yield None
        return
    from brainmri.evaluation.cluster import connect

    client = connect(address)
    try:
        yield client
    finally:
        client.close()


def run_benchmark(
    config: BenchmarkConfig,
    out: str | Path,
    *,
    n_jobs: int = -1,
    cache_dir: str | Path | None = None,
    restart: bool = False,
    device: str = "auto",
    cluster: str | None = None,
    on_event: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
    feature_progress: Callable[[int], None] | None = None,
) -> dict:
    """Run (or resume) a benchmark and write its results, predictions, figures and report.

    Parameters
    ----------
    config : BenchmarkConfig
    out : path
        Output folder: ``results.json``, ``predictions.csv``, ``audit.json``,
        ``figures/``, ``report.html`` and the resumable ``units/``.
    n_jobs : int
        Worker processes for reading, features and model fitting.
    cache_dir : path or None
        Feature cache folder; None keeps the features in memory for this
        run only (computed once, shared by all methods and folds).
    restart : bool
        Discard the outputs of an earlier brainmri run in ``out`` (see
        :mod:`brainmri.evaluation.run_folder`).
    device : str
        Where deep methods run (``auto``, ``cpu``, ``cuda``, ``mps``);
        checked before anything is read.
    cluster : str or None
        Address of a Dask scheduler (``tcp://HOST:8786``): the units not yet
        done run on its workers, which write them to ``out``
        (:mod:`brainmri.evaluation.cluster`; the data, ``out`` and
        ``cache_dir`` must be at the same paths there). None runs them here.
    on_event : callable, optional
        Receives one-line progress messages (per method, per fold, and per
        epoch of methods that train in epochs).
    progress : callable, optional
        Receives counts of images read during the audit.
    feature_progress : callable, optional
        Receives counts of images whose features were computed.

    Returns
    -------
    dict
        The ``results.json`` document.

    Raises
    ------
    BrainMRIError
        A refused configuration or output folder; every refusal that the file
        listings allow comes before anything is written or any image is read.
    """
    say = on_event or (lambda message: None)
    inputs = [config.data, *[p for p in (config.test_data, config.extra_data) if p]]
    check_run_folder(out, config, restart=restart, inputs=inputs)
    if cache_dir:
        check_output_folder(cache_dir, "--cache-dir", inputs=inputs)
    n_files = _check_before_reading(config)
    if any(get_method(m).family == "deep" for m in config.methods):
        from brainmri.training.device import resolve_device

        resolve_device(device)
    out = Path(out)
    # An unreachable scheduler is refused here, before anything is read or written.
    with _cluster_client(cluster) as client, run_folder(out).recording():
        start_run_folder(out, config.run_record(), restart=restart)

        say(f"reading and auditing {n_files} files of {' and '.join(inputs)}")
        plan = plan_benchmark(config, n_jobs=n_jobs, progress=progress)
        write_json(out / "audit.json", plan.audit_report)
        # Without a cache folder, the features of this run are kept in memory and shared by all methods and folds.
        cache = str(cache_dir) if cache_dir else MemoryCache()
        pending = [m for m in config.methods if not all(_unit_path(out, m, s.name).exists() for s in plan.splits)]
        if pending:
            models = [get_method(m).build(seed=config.seed, n_jobs=n_jobs, cache_dir=cache, preprocess=config.preprocess,
                                          device=device, params=config.method_params(m)) for m in pending]
            kept = f"cached in {cache_dir}" if cache_dir else "kept in memory for this run"
            say(f"computing features of {len(plan.paths)} images for all methods at once ({kept})")
            precompute_features(models, plan.paths, n_jobs=n_jobs, progress=feature_progress)
        remote = set()
        if client is not None:  # the units not done yet run on the cluster; its workers write them to the run folder
            from brainmri.evaluation.cluster import run_units

            todo = [(method, split, _unit_path(out, method, split.name), _where(config, plan, method, split))
                    for method in config.methods for split in plan.splits
                    if not _unit_path(out, method, split.name).exists()]
            _record_remote_units(out, [path for _, _, path, _ in todo])
            run_units(client, config, plan, todo, n_jobs=n_jobs, cache_dir=cache, device=device, say=say)
            remote = {(method, split.name) for method, split, _, _ in todo}
        units: dict[str, list[dict]] = {}
        for method in config.methods:
            units[method] = []
            for split in plan.splits:
                path, where = _unit_path(out, method, split.name), _where(config, plan, method, split)
                if path.exists():
                    unit = json.loads(path.read_text(encoding="utf-8"))
                    if (method, split.name) not in remote:
                        say(f"{where}: done earlier, reusing")
                else:
                    say(f"{where}: training on {len(split.train)} images, testing on {len(split.test)}")
                    with epoch_lines(where, say):
                        unit = run_unit(config, plan, method, split, n_jobs=n_jobs, cache_dir=cache,
                                        work_dir=path.with_suffix(".work"), device=device,
                                        on_event=lambda message, where=where: say(f"{where}: {message}"))
                    write_json(path, unit)
                    shifted = f", shifted tests {unit['shift_s']:.1f}s" if "shift_s" in unit else ""
                    say(f"{where}: fit {unit['fit_s']:.1f}s, predict {unit['predict_s']:.1f}s{shifted}")
                units[method].append(unit)
        say("computing metrics, confidence intervals and tests")
        results, predictions = summarize_units(config, plan, split_adapted(config, units))
        write_outputs(out, results, predictions, plan)
        return results


def _record_remote_units(out: Path, paths: list[Path]) -> None:
    """Record in the run's ledger the files that cluster workers will write: units and their checkpoints."""
    from brainmri.training.loop import CHECKPOINT, LOG

    folder = run_folder(out)
    for path in paths:
        unit = path.relative_to(out).as_posix()
        work = path.with_suffix(".work").relative_to(out).as_posix()
        for name in (unit, f"{work}/{CHECKPOINT}", f"{work}/{LOG}"):
            folder.file(name)


@contextmanager
def epoch_lines(where: str, say: Callable[[str], None]) -> Iterator[None]:
    """Within the block, each finished training epoch (of any method that trains in epochs) becomes a line."""
    from brainmri.training.loop import epoch_listener  # torch-free module: classical runs pay nothing

    def line(r: dict) -> None:
        say(f"{where}: epoch {r['epoch']}/{r['epochs']} train loss {r['train_loss']:.4f}, validation loss "
            f"{r['val_loss']:.4f}, accuracy {r['val_accuracy']:.3f} ({r['seconds']:.1f} s, {r['images_per_s']:.0f} img/s)")

    with epoch_listener(line):
        yield


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
    pooled = {"index": np.asarray(index, dtype=int), "fold": folds, "proba": np.vstack(proba),
              "y_true": [str(v) for v in plan.labels[np.asarray(index, dtype=int)]], "classes": classes}
    if all("ood" in unit for unit in units):  # units saved before the OOD score existed have none
        pooled["ood_score"] = np.concatenate([unit["ood"]["score"] for unit in units])
    return pooled


def _ood_entry(config: BenchmarkConfig, units: list[dict]) -> dict | None:
    """The ``ood`` block of a method: its detector, the share of clean test items flagged, and with ``--shift``
    the AUC of the OOD distance telling the most severely shifted test items from the same items clean.

    Each fold has its own detector, so the AUC is computed per fold and
    averaged, weighted by the fold's re-tested items.
    """
    from brainmri.robust.ood import FLAG_QUANTILE

    if not all("ood" in u for u in units):
        return None
    scores = np.concatenate([u["ood"]["score"] for u in units])
    entry = {"detector": units[0]["ood"]["method"], "flag_quantile": FLAG_QUANTILE,
             "test_flagged": round(float(np.mean(scores > FLAG_QUANTILE)), 6),
             "test_mean_score": round(float(np.mean(scores)), 6)}
    if config.shift and all("distance" in u.get("shift", {}) for u in units):
        severity = max(config.shift_severities)
        folds, weights, flagged = [], [], []
        for u in units:
            distance = dict(zip(u["test"], u["ood"]["distance"]))
            clean = np.array([distance[k] for k in u["shift"]["test"]])
            shifted = {name: {s: np.asarray(d) for s, d in by.items()} for name, by in u["shift"]["distance"].items()}
            folds.append(ood_auc(clean, shifted, severity))
            weights.append(len(clean))
            flagged += [np.asarray(by[str(severity)]) > u["ood"]["threshold"] for by in shifted.values()]
        mean = lambda values: round(float(np.average(values, weights=weights)), 6)  # noqa: E731
        entry["shift"] = {"severity": severity, "auc": mean([f["pooled"] for f in folds]),
                          "auc_per_shift": {name: mean([f["per_shift"][name] for f in folds]) for name in folds[0]["per_shift"]},
                          "flagged": round(float(np.mean(np.concatenate(flagged))), 6)}
    return entry


def _shift_entry(config: BenchmarkConfig, plan: Plan, units: list[dict], pooled: dict) -> dict:
    """The ``shift`` block of a method: its units' shifted probabilities pooled and scored."""
    index = np.asarray([k for u in units for k in u["shift"]["test"]], dtype=int)
    row = {k: r for r, k in enumerate(pooled["index"])}
    shifted = {name: {s: np.vstack([_columns(u, u["shift"]["proba"][name][s], pooled["classes"]) for u in units])
                      for s in by}
               for name, by in units[0]["shift"]["proba"].items()}
    return summarize_shift([str(v) for v in plan.labels[index]], pooled["proba"][[row[k] for k in index]], shifted,
                           pooled["classes"], groups=plan.groups[index], n_boot=config.n_boot, seed=config.seed)


#: Metrics of each ``per_fold`` entry.
FOLD_METRICS = ("accuracy", "balanced_accuracy", "macro_f1", "auc", "brier", "ece")

#: What the bootstrap groups are, by the grouping of the folds (:func:`brainmri.data.splits.group_labels`).
_GROUP_NAMES = {
    "subject": "subjects",
    "duplicates": "near-duplicate clusters",
    "similar": "look-alike groups",
    "subject+duplicates": "subjects joined with their near-duplicate clusters",
    "subject+similar": "subjects joined with their look-alike groups",
}


def _bootstrap_groups(protocol: dict) -> str:
    """What ``plan.groups`` holds: the fold grouping in CV, near-duplicate clusters on a fixed test set."""
    return _GROUP_NAMES.get(protocol["grouping"] if protocol["kind"] == "cv" else "duplicates", protocol["grouping"])


def summarize_units(config: BenchmarkConfig, plan: Plan, units: dict[str, list[dict]]) -> tuple[dict, dict]:
    """Metrics with CIs per method, per-fold scores and pairwise tests, from saved units."""
    classes = sorted({c for us in units.values() for u in us for c in u["classes"]})
    groups_name = _bootstrap_groups(plan.protocol)
    methods: dict[str, dict] = {}
    predictions: dict[str, dict] = {}
    for method, us in units.items():
        spec = get_method(method.partition("+")[0])  # a method tested with one of several adaptations (split_adapted)
        pooled = _pooled(plan, us, classes)
        predictions[method] = pooled
        groups = plan.groups[pooled["index"]]
        summary = summarize(pooled["y_true"], pooled["proba"], classes, groups=groups, n_boot=config.n_boot, seed=config.seed)
        entry = {
            "summary": spec.summary,
            "reference": spec.reference,
            "metrics": summary["metrics"],
            "per_class": summary["per_class"],
            "confusion": summary["confusion"],
            "n_test": summary["n"],
            "calibration": summary["calibration"],
            "bootstrap": {**summary["bootstrap"], "groups": groups_name if summary["bootstrap"]["unit"] == "groups" else None},
        }
        if plan.dedup_test is not None and len(plan.dedup_test) < len(pooled["index"]):
            keep = np.isin(pooled["index"], plan.dedup_test)
            dedup = summarize([y for y, k in zip(pooled["y_true"], keep) if k], pooled["proba"][keep], classes,
                              groups=groups[keep], n_boot=config.n_boot, seed=config.seed)
            entry["metrics_deduplicated"] = dedup["metrics"]
            entry["per_class_deduplicated"] = dedup["per_class"]
            entry["n_test_deduplicated"] = dedup["n"]
        per_fold = []
        for unit, split in zip(us, plan.splits):
            y = [str(v) for v in plan.labels[unit["test"]]]
            p = pooled["proba"][np.asarray(pooled["fold"]) == unit["fold"]]
            scores = classification_metrics(y, p, classes)["metrics"]
            per_fold.append({"fold": unit["fold"], "n_train": len(split.train), "n_test": len(y),
                             **{k: scores[k] for k in FOLD_METRICS}})
        entry["per_fold"] = per_fold
        fit = sum(u["fit_s"] for u in us)
        predict = sum(u["predict_s"] for u in us)
        entry["timing_s"] = {"fit": round(fit, 2), "predict": round(predict, 2), "total": round(fit + predict, 2)}
        entry["cost"] = cost_entry(us)
        ood = _ood_entry(config, us)
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
        methods[method] = entry

    results = {
        "brainmri_version": __version__,
        "versions": code_versions(),
        "created": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": config.to_dict(),
        "protocol": plan.protocol,
        "dataset": plan.dataset,
        "audit": plan.audit,
        "methods": methods,
        "comparisons": _comparisons(predictions, methods),
        **({"comparisons_deduplicated": _comparisons(predictions, methods, keep=plan.dedup_test)}
           if any("metrics_deduplicated" in m for m in methods.values()) else {}),
        "alpha": ALPHA,
    }
    if config.shift:
        first = next(iter(methods.values()))
        n_items = first["shift"]["n_items"]
        subset = (f"all {n_items} test items" if n_items == first["n_test"] else
                  f"{n_items} of {first['n_test']} test items, a stratified sample of at most "
                  f"{config.shift_max_items} per split")
        results["shift"] = {"shifts": shift_definitions(config.shift), "severities": list(config.shift_severities),
                            "subset": subset, "seed": config.seed}
    return results, predictions


def _comparisons(predictions: dict, methods: dict, *, keep=None) -> list[dict]:
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
                    [f["accuracy"] for f in folds_a], [f["accuracy"] for f in folds_b],
                    n_train=[f["n_train"] for f in folds_a], n_test=[f["n_test"] for f in folds_a],
                )
                row["decided_by"] = "t_test"
            rows.append(row)
    adjusted = holm([r[r["decided_by"]]["p_value"] for r in rows]) if rows else []
    for row, p in zip(rows, adjusted):
        row["p_adjusted"] = p
        row["significant"] = bool(p < ALPHA)
    return rows


def predictions_csv(plan: Plan, predictions: dict) -> str:
    """Every test prediction: method, fold, path, true label, predicted label, one probability per class, and
    the out-of-distribution score (empty for units saved without one)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    classes = next(iter(predictions.values()))["classes"] if predictions else []
    writer.writerow(["method", "fold", "path", "label", "predicted", *[f"p_{c}" for c in classes], "ood_score"])
    for method, pooled in predictions.items():
        ood = pooled.get("ood_score", [None] * len(pooled["index"]))
        for k, fold, p, y, o in zip(pooled["index"], pooled["fold"], pooled["proba"], pooled["y_true"], ood):
            writer.writerow([method, fold, plan.rel[k], y, classes[int(np.argmax(p))], *[f"{v:.6f}" for v in p],
                             "" if o is None else f"{o:.4f}"])
    return buffer.getvalue()


def write_outputs(out: Path, results: dict, predictions: dict, plan: Plan) -> None:
    """results.json, predictions.csv, figures/ and report.html (each written atomically)."""
    from brainmri.report.figures import render_figures, write_figures
    from brainmri.report.html import write_report

    write_json(out / "results.json", results)
    write_text(out / "predictions.csv", predictions_csv(plan, predictions))
    figures = render_figures(results, predictions)
    write_figures(results, predictions, out, figures)
    write_report(results, predictions, out, figures)


def format_results(results: dict) -> str:
    """The comparison table for the terminal."""
    shown = ("accuracy", "balanced_accuracy", "macro_f1", "auc", "brier", "ece", "sensitivity", "specificity", "precision")
    heads = ["method", *[{"balanced_accuracy": "bal_acc"}.get(m, m) + ("(low)" if m in LOWER_IS_BETTER else "")
                         for m in shown]]
    rows = []
    for name, entry in results["methods"].items():
        cells = [name]
        for m in shown:
            v = entry["metrics"][m]
            cells.append("n/a" if v["value"] is None or v["value"] != v["value"] else
                         f"{v['value']:.3f} [{v['ci_low']:.3f},{v['ci_high']:.3f}]")
        rows.append(cells)
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
    p = results["protocol"]
    lines.insert(0, f"protocol: {p['kind']}, {p['folds']} fold(s), grouping: {p['grouping']}")
    if results["methods"]:
        bootstrap = next(iter(results["methods"].values()))["bootstrap"]
        lines.insert(1, f"intervals: {interval_statement(bootstrap)}; (low): lower is better")
    if "cross_dataset_leaks" in p:
        lines.append("")
        lines += format_cross_dataset_leaks(p["cross_dataset_leaks"])
    if results["methods"]:
        lines.append("")
        lines.append("calibration (mean confidence equals accuracy when calibrated):")
    for name, entry in results["methods"].items():
        lines.append(f"  {name}: mean confidence {entry['calibration']['mean_confidence']:.3f} at accuracy "
                     f"{entry['metrics']['accuracy']['value']:.3f}, ECE {entry['metrics']['ece']['value']:.3f}")
    dedup = [(n, e) for n, e in results["methods"].items() if "metrics_deduplicated" in e]
    if dedup:
        lines.append("")
        lines.append("accuracy on the test items that do not duplicate a training item:")
        for name, e in dedup:
            full, clean = e["metrics"]["accuracy"]["value"], e["metrics_deduplicated"]["accuracy"]["value"]
            lines.append(f"  {name}: {clean:.3f} on {e['n_test_deduplicated']} items (full test {full:.3f}, "
                         f"gap {100 * (full - clean):+.1f} points)")
            if "per_class_deduplicated" in e:  # absent from results written before it was recorded
                lines.append("    recall per class: " + ", ".join(
                    f"{c} {r['sensitivity']:.3f} ({round(r['sensitivity'] * r['support'])} of {r['support']})"
                    for c, r in e["per_class_deduplicated"].items() if r["support"]))
    cost_lines = format_cost(results)
    if cost_lines:
        lines.append("")
        lines += cost_lines
    shift_lines = format_shift(results)
    if shift_lines:
        lines.append("")
        lines += shift_lines
    ood = {name: e["ood"] for name, e in results["methods"].items() if "ood" in e}
    if ood:
        lines.append("")
        lines.append("out-of-distribution score (Mahalanobis distances of the embedding and the acquisition, "
                     "calibrated on training):")
        for name, o in ood.items():
            line = f"  {name}: {100 * o['test_flagged']:.1f}% of clean test items flagged"
            if "shift" in o:
                line += (f"; AUC severe-shifted vs clean {o['shift']['auc']:.3f} (severity {o['shift']['severity']}, "
                         f"{100 * o['shift']['flagged']:.1f}% of them flagged)")
            lines.append(line)
    significant = [c for c in results["comparisons"] if c["significant"]]
    if results["comparisons"]:
        test = {"t_test": "corrected resampled t-test over folds", "mcnemar": "McNemar"}[results["comparisons"][0]["decided_by"]]
        lines.append("")
        lines.append(f"significant differences ({test}, Holm-adjusted p < {results['alpha']:g}): " +
                     (", ".join(f"{c['a']} vs {c['b']} (p={c['p_adjusted']:.3g})" for c in significant) or "none"))
    if results.get("comparisons_deduplicated"):
        lines.append("on the test items that do not duplicate a training item (McNemar, Holm-adjusted): " + ", ".join(
            f"{c['a']} vs {c['b']} {c['mcnemar']['n01']}:{c['mcnemar']['n10']} (p={c['p_adjusted']:.3g}"
            f"{', significant' if c['significant'] else ''})" for c in results["comparisons_deduplicated"]))
    for note in p["notes"]:
        lines.append(f"note: {note}")
    return "\n".join(lines)

