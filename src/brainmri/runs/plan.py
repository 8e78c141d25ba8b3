"""What a benchmark is run on: the data read and audited once, grouped, split, with the checks of every split.

:func:`check_before_reading` refuses, from the file listings alone, what
would otherwise fail after every image was read; :func:`plan_benchmark`
then reads and audits DATA (and ``--test-data``, ``--extra-data``) once and
makes the :class:`Plan`: the items, their groups, the splits and the notes on
the protocol that the report shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from brainmri.data.audit import Analysis, analyse, audit_report, cross_dataset_leaks, cross_split_leaks
from brainmri.data.copy_kinds import format_kinds, kind_counts
from brainmri.data.dataset import Dataset, load_dataset
from brainmri.data.extra import check_extra_classes, format_extra, load_extra
from brainmri.data.io import item_kind
from brainmri.data.labels import apply_label_map, check_test_classes
from brainmri.data.splits import (
    Split,
    check_folds,
    check_grouping,
    group_labels,
    kfold_splits,
    official_indices,
    official_split,
)
from brainmri.errors import DataError
from brainmri.models.catalog import check_inputs, get_method, protocol_notes
from brainmri.models.validation import check_class_counts
from brainmri.robust.adapt import check_model_adapts
from brainmri.runs.config import BenchmarkConfig, DataSettings
from brainmri.runs.provenance import Provenance, audit_shortcuts, source_folds


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
        "copy_kinds": report["copy_kinds"],
        "leak_kinds": report["leak_kinds"],
        **({"shortcuts": report["shortcuts"]} if "shortcuts" in report else {}),
    }


def read_training_data(
    settings: DataSettings,
    *,
    methods,
    option: str = "--methods",
    label_map: dict | None = None,
    n_jobs: int = -1,
    progress: Callable[[int], None] | None = None,
) -> Analysis:
    """Read and audit DATA once (every image decoded and fingerprinted), as ``benchmark``, ``train`` and ``tune`` do.

    Unreadable images are skipped and reported by the audit; the dataset
    must keep at least one readable image, of the kind (slices or volumes)
    that ``methods`` read.

    Raises
    ------
    DataError
        No readable image in DATA.
    ConfigError
        A method reads another kind of item than DATA holds (``option``
        names the option that chose the methods).
    """
    dataset = apply_label_map(
        load_dataset(settings.data, allow_outside=settings.allow_outside_paths), label_map, "DATA"
    )
    analysis = analyse(
        dataset, params=settings.duplicates, n_jobs=n_jobs, progress=progress, max_pixels=settings.max_pixels
    )
    if not len(analysis.dataset):
        raise DataError(f"{settings.data}: no readable image; run `brainmri audit` to see why")
    check_inputs(methods, (item_kind(r.shape, r.mode) for r in analysis.records), option)
    return analysis


def read_extra_data(
    settings: DataSettings,
    extra_data: str,
    extra_label_map: dict | None,
    classes: list[str],
    against: list[Analysis],
    *,
    n_jobs: int = -1,
    progress: Callable[[int], None] | None = None,
):
    """``--extra-data`` read and audited as DATA is, its copies of the ``against`` collections dropped
    (:func:`~brainmri.data.extra.load_extra`)."""
    return load_extra(
        extra_data,
        extra_label_map,
        classes,
        against=against,
        params=settings.duplicates,
        n_jobs=n_jobs,
        progress=progress,
        max_pixels=settings.max_pixels,
        allow_outside=settings.allow_outside_paths,
    )


def check_extra_listing(settings: DataSettings, extra_data: str, extra_label_map: dict | None, classes) -> int:
    """Refuse, from its listing alone, ``--extra-data`` whose classes do not map onto ``classes``; its item count."""
    listing = apply_label_map(
        load_dataset(extra_data, allow_outside=settings.allow_outside_paths),
        extra_label_map,
        "--extra-data",
        option="--extra-label-map",
    )
    check_extra_classes(listing.classes, classes, extra_data)
    return len(listing)


@dataclass
class _Draft:
    """A plan being made: the items so far (DATA's, then the external test's and the extra data's), their groups,
    the splits, and what the report will say about them."""

    paths: np.ndarray
    labels: np.ndarray
    rel: list[str]
    groups: np.ndarray | None = None
    splits: list[Split] = field(default_factory=list)
    protocol: dict = field(default_factory=dict)
    dedup: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def plan_benchmark(config: BenchmarkConfig, *, n_jobs: int = -1, progress: Callable[[int], None] | None = None) -> Plan:
    """Read and audit the data, then build the splits the config asks for."""
    analysis = read_training_data(
        config, methods=config.methods, label_map=config.label_map, n_jobs=n_jobs, progress=progress
    )
    ds = analysis.dataset
    report = audit_report(analysis)
    provenance = Provenance(analysis, n_jobs, progress)
    if config.wants_shortcuts(len(ds)):
        report["shortcuts"] = audit_shortcuts(analysis, provenance.get(), seed=config.seed, n_jobs=n_jobs)
    draft = _Draft(
        np.array([str(it.path) for it in ds.items]),
        ds.labels.astype(str),
        [ds.relpath(it) for it in ds.items],
        notes=_listing_notes(config, analysis),
    )
    dataset_info = {
        "path": str(ds.root),
        "n_items": len(ds),
        "classes": ds.classes,
        "counts": ds.counts(),
        "test_data": None,
    }
    against = [analysis]
    if config.kind == "cv" and config.grouping == "source":
        report["sources"] = _source_splits(config, analysis, draft, provenance)
    elif config.kind == "cv":
        _cv_splits(config, analysis, draft)
    elif config.kind == "official":
        _official_split(config, analysis, draft)
    else:
        test_analysis = _external_split(config, analysis, draft, n_jobs=n_jobs, progress=progress)
        report["cross_dataset_leaks"] = draft.protocol["cross_dataset_leaks"]
        tds = test_analysis.dataset
        dataset_info["test_data"] = {"path": str(tds.root), "n_items": len(tds), "counts": tds.counts()}
        against.append(test_analysis)
    if config.extra_data:
        extra = read_extra_data(
            config, config.extra_data, config.extra_label_map, ds.classes, against, n_jobs=n_jobs, progress=progress
        )
        _add_extra(draft, extra)
        dataset_info["extra_data"] = extra.info
    _check_splits(config, draft)
    draft.protocol.update(
        {
            "subjects_known": ds.has_subjects,
            "dropped_duplicates": draft.splits[0].dropped,
            "label_map": config.label_map,
            "notes": draft.notes,
        }
    )
    return Plan(
        draft.paths,
        draft.labels,
        draft.rel,
        np.asarray(draft.groups),
        draft.splits,
        draft.protocol,
        dataset_info,
        audit_summary(report),
        report,
        draft.dedup,
    )


def _listing_notes(config: BenchmarkConfig, analysis: Analysis) -> list[str]:
    """The report's notes on what the listing and the audit found, and on what the grouping can guarantee."""
    ds = analysis.dataset
    notes = []
    if analysis.unreadable:
        notes.append(f"{len(analysis.unreadable)} unreadable file(s) were skipped (see audit.json)")
    if ds.problems:
        notes.append(_listing_note(ds, config.data))
    if config.kind == "cv" and config.grouping == "none":
        notes.append(
            "grouping none: items are split one by one, so duplicates and slices of one patient can sit in "
            "training and test; these numbers show what a naive split reports, not unseen-data performance"
        )
    elif not ds.has_subjects and config.kind == "cv":
        notes.append(
            "subject ids are absent: folds group items by "
            f"{'look-alike group' if config.grouping == 'similar' else 'near-duplicate cluster'} instead, "
            "which keeps copies together but cannot guarantee that one patient's slices stay on one side"
        )
    elif not ds.has_subjects:
        notes.append("subject ids are absent: the split cannot be checked for patients in both training and test")
    return notes


def _cv_splits(config: BenchmarkConfig, analysis: Analysis, draft: _Draft) -> None:
    draft.splits, used = kfold_splits(analysis, k=config.cv, grouping=config.grouping, seed=config.seed)
    draft.groups, _ = group_labels(analysis, config.grouping)
    draft.protocol = {"kind": "cv", "folds": config.cv, "grouping": used, "n_groups": int(len(np.unique(draft.groups)))}
    draft.notes += protocol_notes(config.methods, config.cv)
    for label in analysis.dataset.classes:
        absent = [s.name for s in draft.splits if not (draft.labels[s.test] == label).any()]
        if absent:
            draft.notes.append(
                f"class {label} has too few independent groups to appear in every test fold "
                f"(absent from {', '.join(absent)}); pooled metrics still include it"
            )


def _source_splits(config: BenchmarkConfig, analysis: Analysis, draft: _Draft, provenance: Provenance) -> dict:
    """Leave-source-out folds (``--grouping source``); returns what is known of the sources, for the audit."""
    draft.splits, notes, report = source_folds(analysis, provenance, seed=config.seed)
    draft.groups, _ = group_labels(analysis, "source")
    draft.protocol = {
        "kind": "cv",
        "folds": len(draft.splits),
        "grouping": "source",
        "n_groups": len(report["names"]),
        "sources": {k: report[k] for k in ("origin", "names", "n_sources", "confidence") if k in report},
    }
    draft.notes += notes
    return report


def _official_split(config: BenchmarkConfig, analysis: Analysis, draft: _Draft) -> None:
    split = official_split(analysis, drop_test_duplicates=config.drop_test_duplicates)
    draft.splits = [split]
    draft.groups, _ = group_labels(analysis, "auto")  # subjects when known, else near-duplicate clusters
    leaks = cross_split_leaks(analysis)
    leaking = {leak["test_path"] for leak in leaks}
    draft.dedup = np.array([k for k in split.test if draft.rel[k] not in leaking], dtype=int)
    draft.protocol = {
        "kind": "official",
        "folds": 1,
        "grouping": "official split",
        "n_groups": int(len(np.unique(draft.groups))),
    }
    if leaking and not config.drop_test_duplicates:
        draft.notes.append(
            f"{len(leaking)} test items duplicate a training item "
            f"({format_kinds(kind_counts(leak['kind'] for leak in leaks))}); metrics_deduplicated "
            "reports the test split without them"
        )
    unsplit = sum(it.split is None for it in analysis.dataset.items)
    if unsplit:
        draft.notes.append(
            f"{unsplit} item(s) have a blank split and are used neither for training nor for testing; "
            "fill in their split (train or test) in the CSV"
        )


def _external_split(
    config: BenchmarkConfig, analysis: Analysis, draft: _Draft, *, n_jobs: int, progress: Callable[[int], None] | None
) -> Analysis:
    """``--test-data``: its items appended to the draft as the one split's test part; the test data's analysis."""
    ds = analysis.dataset
    test_ds = apply_label_map(
        load_dataset(config.test_data, allow_outside=config.allow_outside_paths), config.label_map, "--test-data"
    )
    test_analysis = analyse(
        test_ds, params=config.duplicates, n_jobs=n_jobs, progress=progress, max_pixels=config.max_pixels
    )
    check_test_classes(ds.classes, test_analysis.dataset.classes, config.test_data)
    tds = test_analysis.dataset
    leaks = cross_dataset_leaks(analysis, test_analysis)
    leaking = {leak["other_path"] for leak in leaks["pairs"]}
    copies = np.array([tds.relpath(it) in leaking for it in tds.items], dtype=bool)
    n_train = len(draft.paths)
    draft.paths = np.concatenate([draft.paths, [str(it.path) for it in tds.items]])
    draft.labels = np.concatenate([draft.labels, tds.labels.astype(str)])
    draft.rel = draft.rel + [f"TEST/{tds.relpath(it)}" for it in tds.items]
    draft.groups = np.concatenate([group_labels(analysis, "auto")[0], test_analysis.graph.cluster_of + n_train])
    draft.dedup = n_train + np.flatnonzero(~copies)
    if copies.all() and config.drop_test_duplicates:
        raise DataError(
            f"{config.test_data}: all {len(tds)} test items copy a {ds.root.name} image, so "
            "--drop-test-duplicates leaves no test item; test on another dataset"
        )
    if config.drop_test_duplicates:
        dropped = {label: v["leaking"] for label, v in leaks["per_class"].items() if v["leaking"]}
        draft.splits = [Split("external", np.arange(n_train), draft.dedup, dropped)]
    else:
        draft.splits = [Split("external", np.arange(n_train), np.arange(n_train, len(draft.paths)))]
    draft.protocol = {
        "kind": "external",
        "folds": 1,
        "grouping": "separate datasets",
        "n_groups": None,
        "cross_dataset_leaks": leaks,
    }
    draft.notes.append(f"external validation: trained on all of {ds.root.name}, tested on {tds.root.name}")
    if copies.all():
        draft.notes.append(
            f"all {len(tds)} items of {tds.root.name} copy a {ds.root.name} image: the external score "
            "measures memorisation only, and there is no deduplicated score"
        )
        draft.dedup = None
    elif leaking and not config.drop_test_duplicates:
        draft.notes.append(
            f"{len(leaking)} of the {len(tds)} items of {tds.root.name} copy a {ds.root.name} image "
            f"({format_kinds(leaks['kinds'])}), so "
            "the external score partly measures memorisation; metrics_deduplicated reports the test "
            "without them"
        )
    if tds.problems:
        draft.notes.append(_listing_note(tds, config.test_data))
    return test_analysis


def _add_extra(draft: _Draft, extra) -> None:
    """``--extra-data``'s items appended to the draft, in every training part and never tested on."""
    added = np.arange(len(draft.paths), len(draft.paths) + len(extra.paths))
    draft.paths = np.concatenate([draft.paths, extra.paths])
    draft.labels = np.concatenate([draft.labels, extra.labels])
    draft.rel = draft.rel + extra.rel
    draft.groups = np.concatenate([draft.groups, extra.groups + np.max(draft.groups) + 1])
    draft.splits = [Split(s.name, np.concatenate([s.train, added]), s.test, s.dropped) for s in draft.splits]
    draft.notes.append(format_extra(extra.info))


def _check_splits(config: BenchmarkConfig, draft: _Draft) -> None:
    for split in draft.splits:
        _check_test_classes_trained(draft.labels[split.train], draft.labels[split.test], split.name)
        _check_training_counts(draft.labels[split.train], np.asarray(draft.groups)[split.train], split.name)
    if config.kind != "cv":
        draft.notes += _untested_classes_note(draft.labels[draft.splits[0].train], draft.labels[draft.splits[0].test])


def _listing_note(ds: Dataset, source: str) -> str:
    first = ds.problems[0]
    return (
        f"{len(ds.problems)} problem(s) found while listing {source} (rows, files or folders skipped or to check), "
        f"e.g. {first['path']}: {first['reason']}; `brainmri audit {source}` lists them all"
    )


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
    dataset = apply_label_map(
        load_dataset(config.data, allow_outside=config.allow_outside_paths), config.label_map, "DATA"
    )
    n_extra = (
        check_extra_listing(config, config.extra_data, config.extra_label_map, dataset.classes)
        if config.extra_data
        else 0
    )
    if config.kind == "cv":
        check_folds(config.cv, len(dataset))
        check_grouping(dataset, config.grouping)
    elif config.kind == "official":
        official_indices(dataset)
    else:
        test = apply_label_map(
            load_dataset(config.test_data, allow_outside=config.allow_outside_paths), config.label_map, "--test-data"
        )
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
    return [
        f"class(es) {', '.join(untested)} have training images but none in the test set, so they cannot be scored: "
        f"balanced accuracy averages recall over the {n_classes - len(untested)} tested classes, while macro "
        f"sensitivity, precision and F1 average over all {n_classes} classes and count 0 for "
        f"{', '.join(untested)}; compare methods on balanced accuracy, or add test images of those classes"
    ]


def _check_training_counts(y: np.ndarray, groups: np.ndarray, fold: str) -> None:
    """Refuse, before any training, a split whose training part cannot be split into grouped inner folds."""
    try:
        check_class_counts(y, 2, "grouped inner cross-validation", groups=groups)
    except DataError as error:
        raise DataError(f"{fold}: {error}") from None
