"""``brainmri audit``: what is in a dataset, and where it leaks.

:func:`analyse` reads every image once (in parallel) and finds duplicates;
:func:`audit_report` turns that into the ``audit.json`` document, and
:func:`format_audit` into the terminal summary. Splitting reuses the same
:class:`Analysis`, so an evaluation never reads the images twice to group them.
:func:`cross_dataset_leaks` compares two analysed datasets (``audit --against``,
``benchmark --test-data``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from brainmri.data.copy_kinds import format_kinds, kind_counts
from brainmri.data.dataset import Dataset
from brainmri.data.duplicates import (
    DuplicateGraph,
    DuplicateParams,
    clusters_from_labels,
    components,
    find_cross_duplicates,
    find_duplicates,
)
from brainmri.data.io import MAX_PIXELS
from brainmri.data.scan import ScanRecord, scan_dataset

logger = logging.getLogger(__name__)

#: Top-level keys of audit.json that scripts may rely on.
AUDIT_KEYS = (
    "n_items",
    "n_unreadable",
    "unreadable",
    "classes",
    "exact_duplicate_clusters",
    "near_duplicate_clusters",
    "conflicting_label_clusters",
    "cross_split_leaks",
    "copy_kinds",
    "leak_kinds",
    "params",
)


@dataclass
class Analysis:
    """A dataset with every image read, fingerprinted and grouped.

    Attributes
    ----------
    dataset : Dataset
        Only the readable items.
    unreadable : list of dict
        ``{path, reason}`` for each file that could not be read.
    records : list of ScanRecord
        One per readable item.
    graph : DuplicateGraph
        Exact and confirmed near-duplicates among the readable items.
    params : DuplicateParams
    """

    dataset: Dataset
    unreadable: list[dict]
    records: list[ScanRecord]
    graph: DuplicateGraph
    params: DuplicateParams

    @cached_property
    def similar_groups(self) -> np.ndarray:
        """Group label of every item under the looser look-alike grouping, which keeps every copy's group too.

        Look-alikes are compared upright only; the copies (in any orientation) of :attr:`graph` are joined too.
        """
        looks = find_duplicates(
            [r.fingerprint for r in self.records],
            radius=self.params.similar_radius,
            threshold=self.params.similar_threshold,
            upright=True,
        )
        i = np.concatenate([looks.pairs["i"], self.graph.pairs["i"]])
        j = np.concatenate([looks.pairs["j"], self.graph.pairs["j"]])
        return components(len(self.records), i, j)


def analyse(
    dataset: Dataset,
    *,
    params: DuplicateParams | None = None,
    n_jobs: int = -1,
    progress: Callable[[int], None] | None = None,
    max_pixels: int = MAX_PIXELS,
) -> Analysis:
    """Read, fingerprint and group every item of ``dataset``.

    Unreadable files (see :func:`~brainmri.data.scan.scan_dataset`, which
    also takes ``max_pixels``) are dropped from the returned dataset and
    listed in :attr:`Analysis.unreadable`.
    """
    params = params or DuplicateParams()
    records = scan_dataset(dataset, n_jobs=n_jobs, progress=progress, max_pixels=max_pixels)
    unreadable = [
        {"path": dataset.relpath(it), "reason": _reason(rec.error, it.path)}
        for it, rec in zip(dataset.items, records, strict=True)
        if rec.error is not None
    ]
    keep = [k for k, rec in enumerate(records) if rec.error is None]
    readable = Dataset(
        dataset.root, [dataset.items[k] for k in keep], dataset.source, dataset.ignored, dataset.problems
    )
    good = [records[k] for k in keep]
    graph = find_duplicates([r.fingerprint for r in good], radius=params.hash_radius, threshold=params.near_threshold)
    return Analysis(readable, unreadable, good, graph, params)


def _reason(message: str, path) -> str:
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def _closest(held, match, exact, similarity, distance, kind) -> dict[int, tuple[bool, float, int, int, str]]:
    """For each held-out index, its closest match: an exact copy first, then the highest similarity.

    Returns ``{held: (exact, similarity, distance, match, kind)}``; ties keep the input order.
    """
    order = np.lexsort(
        (-np.asarray(similarity, dtype=float), ~np.asarray(exact, dtype=bool), np.asarray(held, dtype=int))
    )
    best: dict[int, tuple[bool, float, int, int, str]] = {}
    for k in order:
        best.setdefault(
            int(held[k]), (bool(exact[k]), float(similarity[k]), int(distance[k]), int(match[k]), str(kind[k]))
        )
    return best


def cross_split_leaks(analysis: Analysis) -> list[dict]:
    """Test/validation items with an exact or confirmed near-duplicate in training.

    Each leaking item is reported once, with its closest training match
    (exact copies first, then the highest structure similarity).
    """
    items = analysis.dataset.items
    splits = np.array([it.split or "" for it in items])
    if not (splits == "train").any():
        return []
    found: list[tuple[int, int, bool, float, int, str]] = []
    g = analysis.graph
    for c in g.exact_clusters:
        train = [k for k in c if splits[k] == "train"]
        if train:
            found += [(k, train[0], True, 1.0, 0, "identical") for k in c if splits[k] in ("test", "val")]
    p = g.pairs
    for i, j, d, s, exact, kind in zip(
        p["i"], p["j"], p["distance"], p["similarity"], p["exact"], p["kind"], strict=True
    ):
        if exact:
            continue
        for held, train in ((i, j), (j, i)):
            if splits[held] in ("test", "val") and splits[train] == "train":
                found.append((int(held), int(train), False, float(s), int(d), str(kind)))
    if not found:
        return []
    best = _closest(*zip(*found, strict=True))
    ds = analysis.dataset
    return [
        {
            "test_path": ds.relpath(items[k]),
            "train_path": ds.relpath(items[t]),
            "distance": d,
            "similarity": round(s, 4),
            "exact": exact,
            "kind": kind,
            "label": items[k].label,
            "train_label": items[t].label,
            "split": items[k].split,
        }
        for k, (exact, s, d, t, kind) in sorted(best.items())
    ]


def cross_dataset_leaks(reference: Analysis, other: Analysis) -> dict:
    """Items of ``other`` that copy an item of ``reference`` (another dataset).

    Uses the duplicate thresholds of ``reference`` and
    :func:`~brainmri.data.duplicates.find_cross_duplicates` (pHash
    candidates, structure confirmation tolerant to sub-pixel shifts), so
    copies resized or re-encoded by another publisher are found.

    Returns
    -------
    dict
        The ``cross_dataset_leaks`` block of ``audit.json`` and
        ``results.json``: ``data`` and ``other`` (roots), ``n_other``,
        ``n_leaking``, ``per_class`` (per class of ``other``: ``leaking``,
        ``of`` and ``matches``, the ``reference`` classes copied), and
        ``pairs``: each leaking item once, with its closest match
        (``other_path``, ``data_path``, ``label``, ``data_label``,
        ``distance``, ``similarity``, ``exact``; paths relative to each root).
    """
    params = reference.params
    pairs = find_cross_duplicates(
        [r.fingerprint for r in reference.records],
        [r.fingerprint for r in other.records],
        radius=params.hash_radius,
        threshold=params.near_threshold,
    )
    best = (
        _closest(pairs["j"], pairs["i"], pairs["exact"], pairs["similarity"], pairs["distance"], pairs["kind"])
        if len(pairs["i"])
        else {}
    )
    ref, oth = reference.dataset, other.dataset
    leaks = [
        {
            "other_path": oth.relpath(oth.items[k]),
            "data_path": ref.relpath(ref.items[t]),
            "label": oth.items[k].label,
            "data_label": ref.items[t].label,
            "distance": d,
            "similarity": round(s, 4),
            "exact": exact,
            "kind": kind,
        }
        for k, (exact, s, d, t, kind) in sorted(best.items())
    ]
    per_class = {}
    for label, total in sorted(Counter(it.label for it in oth.items).items()):
        mine = [leak for leak in leaks if leak["label"] == label]
        per_class[label] = {
            "leaking": len(mine),
            "of": total,
            "matches": dict(sorted(Counter(leak["data_label"] for leak in mine).items())),
        }
    return {
        "data": str(ref.root),
        "other": str(oth.root),
        "n_other": len(oth),
        "n_leaking": len(leaks),
        "kinds": kind_counts(leak["kind"] for leak in leaks),
        "per_class": per_class,
        "pairs": leaks,
    }


def format_cross_dataset_leaks(block: dict) -> list[str]:
    """Terminal lines for a :func:`cross_dataset_leaks` block."""
    if not block["n_leaking"]:
        return [f"copies of DATA images in {block['other']}: none among its {block['n_other']} items"]
    lines = [f"copies of DATA images in {block['other']}: {block['n_leaking']} of its {block['n_other']} items"]
    if block.get("kinds"):  # absent from blocks written before copies had kinds
        lines.append(f"  kinds: {format_kinds(block['kinds'])}")
    for label, v in block["per_class"].items():
        matches = ", ".join(f"{c} {n}" for c, n in v["matches"].items())
        lines.append(f"  {label}: {v['leaking']} of {v['of']}" + (f" (copies of DATA {matches})" if matches else ""))
    return lines


def audit_report(analysis: Analysis) -> dict:
    """The ``audit.json`` document (paths relative to the dataset root)."""
    ds = analysis.dataset
    rel = [ds.relpath(it) for it in ds.items]
    labels = [it.label for it in ds.items]
    near = analysis.graph.near_clusters
    exact = analysis.graph.exact_clusters
    conflicting = [
        {"paths": [rel[k] for k in c], "labels": sorted({labels[k] for k in c})}
        for c in clusters_from_labels(analysis.graph.cluster_of)
        if len({labels[k] for k in c}) > 1
    ]
    leaks = cross_split_leaks(analysis)
    leak_kinds: dict[str, list[str]] = {}
    for leak in leaks:
        leak_kinds.setdefault(leak["split"], []).append(leak["kind"])
    leak_counts: dict[str, dict[str, int]] = {}
    for leak in leaks:
        per = leak_counts.setdefault(leak["split"], {})
        per[leak["label"]] = per.get(leak["label"], 0) + 1
    held_out = Counter((it.split, it.label) for it in ds.items if it.split in ("test", "val"))
    recs = analysis.records
    all_sizes = [*near, *exact]
    return {
        "dataset": str(ds.root),
        "source": ds.source,
        "n_items": len(ds) + len(analysis.unreadable),
        "n_readable": len(ds),
        "n_unreadable": len(analysis.unreadable),
        "unreadable": analysis.unreadable,
        "problems": ds.problems,
        "n_ignored": len(ds.ignored),
        "ignored": ds.ignored,
        "classes": dict(sorted(Counter(labels).items())),
        "splits": ds.counts(),
        "subjects": len({it.subject for it in ds.items}) if ds.has_subjects else None,
        "formats": dict(Counter(r.format for r in recs).most_common()),
        "sizes": {"x".join(map(str, s)): n for s, n in Counter(r.shape for r in recs).most_common()},
        "modes": dict(Counter(r.mode for r in recs).most_common()),
        "bit_depths": {str(b): n for b, n in Counter(r.bit_depth for r in recs).most_common()},
        "exact_duplicate_clusters": [[rel[k] for k in c] for c in exact],
        "n_exact_duplicate_images": sum(len(c) for c in exact),
        "near_duplicate_clusters": [[rel[k] for k in c] for c in near],
        "n_near_duplicate_images": sum(len(c) for c in near),
        "largest_cluster_size": max((len(c) for c in all_sizes), default=1),
        "copy_kinds": kind_counts(analysis.graph.pairs["kind"]),
        "conflicting_label_clusters": conflicting,
        "cross_split_leaks": leaks,
        "leaks_per_class": {
            split: {label: {"leaking": n, "of": held_out[(split, label)]} for label, n in sorted(per.items())}
            for split, per in sorted(leak_counts.items())
        },
        "leak_kinds": {split: kind_counts(kinds) for split, kinds in sorted(leak_kinds.items())},
        "params": analysis.params.to_dict(),
    }


def format_audit(report: dict) -> str:
    """Human-readable summary of an audit report."""
    lines = [f"dataset: {report['dataset']} ({report['source']})"]
    lines.append(
        f"items: {report['n_items']}  readable: {report['n_readable']}  unreadable: {report['n_unreadable']}  "
        f"ignored (hidden or outside class folders): {report['n_ignored']}"
    )
    if report["subjects"]:
        lines.append(f"subjects: {report['subjects']}")
    else:
        lines.append("subjects: not given (splits group by duplicate cluster instead)")
    lines.append("")
    splits = report["splits"]
    classes = list(report["classes"])
    width = max([len(c) for c in classes] + [5])
    header = f"{'class':<{width}}  " + "  ".join(f"{s:>7}" for s in splits) + "    total"
    lines += [header, "-" * len(header)]
    for c in classes:
        row = "  ".join(f"{splits[s].get(c, 0):>7}" for s in splits)
        lines.append(f"{c:<{width}}  {row}  {report['classes'][c]:>7}")
    lines.append("")
    lines.append("sizes: " + ", ".join(f"{k} ({v})" for k, v in list(report["sizes"].items())[:5]))
    lines.append("modes: " + ", ".join(f"{k} ({v})" for k, v in report["modes"].items()))
    lines.append("bit depths: " + ", ".join(f"{k} ({v})" for k, v in report["bit_depths"].items()))
    p = report["params"]
    lines.append("")
    lines.append(
        f"exact duplicates: {len(report['exact_duplicate_clusters'])} clusters, {report['n_exact_duplicate_images']} images"
    )
    lines.append(
        f"near duplicates (pHash <= {p['hash_radius']} bits, structure correlation >= {p['near_threshold']}): "
        f"{len(report['near_duplicate_clusters'])} clusters, {report['n_near_duplicate_images']} images; "
        f"largest cluster {report['largest_cluster_size']}"
    )
    if report.get("copy_kinds"):  # absent from reports written before copies had kinds
        lines.append(f"  kinds of copy (pairs): {format_kinds(report['copy_kinds'])}")
    lines.append(f"clusters with conflicting labels: {len(report['conflicting_label_clusters'])}")
    if report["leaks_per_class"]:
        lines.append(f"cross-split leaks: {len(report['cross_split_leaks'])} held-out items duplicate a training item")
        for split, per in report["leaks_per_class"].items():
            for label, v in per.items():
                lines.append(f"  {split}/{label}: {v['leaking']} of {v['of']}")
            if report.get("leak_kinds", {}).get(split):
                lines.append(f"  {split}, kinds of copy: {format_kinds(report['leak_kinds'][split])}")
    elif splits and "train" in splits:
        lines.append("cross-split leaks: none")
    for bad in report["unreadable"][:10]:
        lines.append(f"unreadable: {bad['path']}: {bad['reason']}")
    if len(report["unreadable"]) > 10:
        lines.append(f"... and {len(report['unreadable']) - 10} more unreadable files (see audit.json)")
    for prob in report["problems"]:
        lines.append(f"problem: {prob['path']}: {prob['reason']}")
    return "\n".join(lines)
