"""What a benchmark is run on: the data read and audited once, grouped, split, with the checks of every split.

:func:`check_before_reading` refuses, from the file listings alone, what
would otherwise fail after every image was read; :func:`plan_benchmark`
then reads and audits DATA (and ``--test-data``, ``--extra-data``) once and
makes the :class:`Plan`: the items, their groups, the splits and the notes on
the protocol that the report shows.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from brainmri.data.audit import analyse, audit_report, cross_dataset_leaks, cross_split_leaks
from brainmri.data.dataset import Dataset, load_dataset
from brainmri.data.extra import check_extra_classes, format_extra, load_extra
from brainmri.data.io import item_kind
from brainmri.data.labels import apply_label_map, check_test_classes
from brainmri.data.splits import (Split, check_folds, check_grouping, group_labels, kfold_splits, official_indices,
                                  official_split)
from brainmri.errors import DataError
from brainmri.models.catalog import check_inputs, get_method, protocol_notes
from brainmri.models.validation import check_class_counts
from brainmri.robust.adapt import check_model_adapts
from brainmri.runs.config import BenchmarkConfig


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


def check_before_reading(config: BenchmarkConfig) -> int:
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
