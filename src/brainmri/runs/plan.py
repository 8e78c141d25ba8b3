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
from pathlib import Path

import numpy as np

from brainmri.data.audit import Analysis, analyse, audit_report, cross_dataset_leaks, cross_split_leaks
from brainmri.data.copy_kinds import format_kinds, kind_counts
from brainmri.data.dataset import Dataset, load_dataset
from brainmri.data.extra import format_extra
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
from brainmri.models.catalog import get_method, protocol_notes
from brainmri.models.validation import check_class_counts
from brainmri.robust.adapt import check_model_adapts
from brainmri.runs.config import BenchmarkConfig
from brainmri.runs.provenance import Provenance, audit_shortcuts, source_folds
from brainmri.runs.reading import (
    audit_summary,
    check_extra_listing,
    item_sources,
    read_extra_data,
    read_training_data,
)


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
    sources: np.ndarray | None = None  # source of every item (reading.item_sources), for source-balanced sampling


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
        tests = _external_split(config, analysis, draft, n_jobs=n_jobs, progress=progress)
        infos = [{"path": str(t.dataset.root), "n_items": len(t.dataset), "counts": t.dataset.counts()} for t in tests]
        if len(tests) == 1:
            report["cross_dataset_leaks"] = draft.protocol["cross_dataset_leaks"]
            dataset_info["test_data"] = infos[0]
        else:
            report["test_sets"] = draft.protocol["test_sets"]
            dataset_info["test_data"] = [
                {"name": t["name"], **i} for t, i in zip(draft.protocol["test_sets"], infos, strict=True)
            ]
        against += tests
    n_extra = 0
    if config.extra_data:
        extra = read_extra_data(
            config, config.extra_data, config.extra_label_map, ds.classes, against, n_jobs=n_jobs, progress=progress
        )
        _add_extra(draft, extra)
        dataset_info["extra_data"] = extra.info
        n_extra = len(extra.paths)
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
        item_sources(ds, len(draft.paths) - len(ds) - n_extra, config.extra_data, n_extra),
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
) -> list[Analysis]:
    """``--test-data``: the items of every test collection appended to the draft as the one split's test part (the
    model is trained once, on all of DATA); the test collections' analyses.

    With several collections, each keeps its name (``TEST/<name>/...`` in the outputs) so that the summary scores
    each on its own (``per_test_set``), and ``protocol["test_sets"]`` lists them with their copies of DATA.
    """
    ds = analysis.dataset
    n_train = len(draft.paths)
    groups = [group_labels(analysis, "auto")[0]]
    keep, test_sets, analyses = [], [], []
    for name, path in test_set_names(config.test_sets).items():
        test_analysis = analyse(
            apply_label_map(load_dataset(path, **config.listing()), config.label_map, "--test-data"),
            params=config.duplicates,
            n_jobs=n_jobs,
            progress=progress,
            max_pixels=config.max_pixels,
        )
        check_test_classes(ds.classes, test_analysis.dataset.classes, path)
        tds = test_analysis.dataset
        leaks = cross_dataset_leaks(analysis, test_analysis)
        leaking = {leak["other_path"] for leak in leaks["pairs"]}
        copies = np.array([tds.relpath(it) in leaking for it in tds.items], dtype=bool)
        start = len(draft.paths)
        prefix = "TEST/" if len(config.test_sets) == 1 else f"TEST/{name}/"
        draft.paths = np.concatenate([draft.paths, [str(it.path) for it in tds.items]])
        draft.labels = np.concatenate([draft.labels, tds.labels.astype(str)])
        draft.rel = draft.rel + [f"{prefix}{tds.relpath(it)}" for it in tds.items]
        groups.append(test_analysis.graph.cluster_of + start)
        keep.append(start + np.flatnonzero(~copies))
        test_sets.append({"name": name, "path": str(tds.root), "n_items": len(tds), "cross_dataset_leaks": leaks})
        analyses.append(test_analysis)
        _external_notes(config, ds, tds, copies, leaks, draft, path)
    draft.groups = np.concatenate(groups)
    draft.dedup = np.concatenate(keep)
    if not len(draft.dedup) and config.drop_test_duplicates:
        raise DataError(
            f"{', '.join(config.test_sets)}: all {len(draft.paths) - n_train} test items copy a {ds.root.name} image, so "
            "--drop-test-duplicates leaves no test item; test on another dataset"
        )
    if config.drop_test_duplicates:
        dropped: dict[str, int] = {}
        for t in test_sets:
            for label, v in t["cross_dataset_leaks"]["per_class"].items():
                if v["leaking"]:
                    dropped[label] = dropped.get(label, 0) + v["leaking"]
        draft.splits = [Split("external", np.arange(n_train), draft.dedup, dropped)]
    else:
        draft.splits = [Split("external", np.arange(n_train), np.arange(n_train, len(draft.paths)))]
    draft.protocol = {"kind": "external", "folds": 1, "grouping": "separate datasets", "n_groups": None}
    if len(test_sets) == 1:
        draft.protocol["cross_dataset_leaks"] = test_sets[0]["cross_dataset_leaks"]
    else:
        draft.protocol["test_sets"] = test_sets
    if not len(draft.dedup):
        draft.dedup = None
    return analyses


def test_set_names(paths) -> dict[str, str]:
    """A name for every ``--test-data`` collection: its folder or file name, numbered when two would share one.

    >>> test_set_names(["/a/lgg", "/b/yes-no", "/c/lgg"])
    {'lgg': '/a/lgg', 'yes-no': '/b/yes-no', 'lgg-3': '/c/lgg'}
    """
    names: dict[str, str] = {}
    for k, path in enumerate(paths):
        name = Path(path).stem if Path(path).suffix.lower() == ".csv" else Path(path).name
        names[name if name not in names else f"{name}-{k + 1}"] = str(path)
    return names


def _external_notes(
    config: BenchmarkConfig, ds, tds, copies: np.ndarray, leaks: dict, draft: _Draft, path: str
) -> None:
    """The notes on one external test collection: what it is, and how much of it copies DATA."""
    draft.notes.append(f"external validation: trained on all of {ds.root.name}, tested on {tds.root.name}")
    if copies.all():
        draft.notes.append(
            f"all {len(tds)} items of {tds.root.name} copy a {ds.root.name} image: the external score "
            "measures memorisation only, and there is no deduplicated score"
        )
    elif leaks["n_leaking"] and not config.drop_test_duplicates:
        draft.notes.append(
            f"{leaks['n_leaking']} of the {len(tds)} items of {tds.root.name} copy a {ds.root.name} image "
            f"({format_kinds(leaks['kinds'])}), so "
            "the external score partly measures memorisation; metrics_deduplicated reports the test "
            "without them"
        )
    if tds.problems:
        draft.notes.append(_listing_note(tds, path))


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
    dataset = apply_label_map(load_dataset(config.data, **config.listing()), config.label_map, "DATA")
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
        n_test = 0
        for path in config.test_sets:
            test = apply_label_map(load_dataset(path, **config.listing()), config.label_map, "--test-data")
            check_test_classes(dataset.classes, test.classes, path)
            n_test += len(test)
        return len(dataset) + n_test + n_extra
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
