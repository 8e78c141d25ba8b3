"""A second labelled collection added to the training data only (``--extra-data``).

Training on more than one source is one way to learn the disease rather than
one collection's appearance (issue 9, "multi-source training"): for example
the normal slices of another dataset added as ``notumor``. The extra
collection is read and fingerprinted like DATA
(:func:`~brainmri.data.audit.analyse`); its classes, after
``--extra-label-map``, must be classes of the training data. Its items that
copy an image of DATA or of the test data (exact or near-duplicates, found
with the thresholds of DATA by
:func:`~brainmri.data.duplicates.find_cross_duplicates`) are dropped: a copy
of a test image in the training data would inflate the score, and a copy of
a training image, in another group than its original, would straddle a
method's inner validation split. How many were dropped, per class, is
reported. Each extra item keeps its
source (``EXTRA/<path>`` in the outputs) and its own near-duplicate cluster
as its group, so the inner validation of a method never splits a cluster.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from brainmri.data.audit import analyse
from brainmri.data.dataset import load_dataset
from brainmri.data.duplicates import find_cross_duplicates
from brainmri.data.labels import apply_label_map
from brainmri.errors import ConfigError, DataError

#: Prefix of the extra items' paths in outputs.
PREFIX = "EXTRA/"


@dataclass
class ExtraData:
    """The extra training items kept, with their provenance.

    Attributes
    ----------
    paths : ndarray of str
    labels : ndarray of str
    rel : list of str
        ``EXTRA/<path relative to the collection>``.
    groups : ndarray of int
        Near-duplicate cluster of each item, numbered from 0.
    info : dict
        ``path``, ``n_items`` (readable), ``n_used``, ``counts`` (used, per
        class), ``label_map``, ``dropped_copies`` (per class) and
        ``dropped`` (each dropped item with the image it copies).
    """

    paths: np.ndarray
    labels: np.ndarray
    rel: list[str]
    groups: np.ndarray
    info: dict


def check_extra_classes(classes: Sequence[str], train_classes: Sequence[str], source: str) -> None:
    """Every class of the extra collection must be a training class.

    >>> check_extra_classes(["no"], ["no", "yes"], "other/")
    """
    unknown = sorted(set(classes) - set(train_classes))
    if unknown:
        raise ConfigError(
            f"--extra-data {source}: class(es) {', '.join(unknown)} are not classes of the training data "
            f"({', '.join(sorted(train_classes))}); map them with --extra-label-map "
            f"{unknown[0]}=<training class>"
        )


def load_extra(
    source: str,
    label_map: dict | None,
    train_classes: Sequence[str],
    *,
    against: Sequence,
    params,
    n_jobs: int = -1,
    progress: Callable[[int], None] | None = None,
    max_pixels: int | None = None,
    listing: dict | None = None,
) -> ExtraData:
    """Read the extra collection, check its classes and drop its copies of the images of ``against``.

    Parameters
    ----------
    source : str
        Folder or CSV manifest of the extra collection.
    label_map : dict or None
        Class renaming of the extra collection (``--extra-label-map``).
    train_classes : sequence of str
    against : sequence of Analysis
        DATA and the test data, when it is another dataset.
    params : DuplicateParams
        The thresholds of DATA.
    n_jobs, progress, max_pixels
        As for :func:`~brainmri.data.audit.analyse`.
    listing : dict or None
        Keyword arguments of :func:`~brainmri.data.dataset.load_dataset`
        (``allow_outside``, ``bids``).

    Raises
    ------
    ConfigError
        A class that is not a training class (after ``label_map``).
    DataError
        No readable item, or every item copies a test item.
    """
    dataset = apply_label_map(
        load_dataset(source, **(listing or {})), label_map, "--extra-data", option="--extra-label-map"
    )
    check_extra_classes(dataset.classes, train_classes, source)
    analysis = analyse(dataset, params=params, n_jobs=n_jobs, progress=progress, max_pixels=max_pixels)
    ds = analysis.dataset
    if not len(ds):
        raise DataError(f"--extra-data {source}: no readable image; run `brainmri audit {source}` to see why")
    copies = _copies_of(against, analysis, params)
    keep = np.array([k not in copies for k in range(len(ds))], dtype=bool)
    if not keep.any():
        raise DataError(
            f"--extra-data {source}: all {len(ds)} readable items copy an image of the data, so none is "
            "left to add to the training data; use another collection"
        )
    labels = ds.labels.astype(str)
    dropped = {str(c): int(np.sum(~keep & (labels == c))) for c in np.unique(labels) if np.any(~keep & (labels == c))}
    kept_labels = labels[keep]
    info = {
        "path": str(ds.root),
        "n_items": len(ds),
        "n_used": int(keep.sum()),
        "counts": {str(c): int(n) for c, n in zip(*np.unique(kept_labels, return_counts=True), strict=True)},
        "label_map": label_map,
        "dropped_copies": dropped,
        "dropped": [{"path": f"{PREFIX}{ds.relpath(ds.items[k])}", "copies": copies[k]} for k in sorted(copies)],
    }
    _, groups = np.unique(analysis.graph.cluster_of[keep], return_inverse=True)
    return ExtraData(
        np.array([str(it.path) for it, k in zip(ds.items, keep, strict=True) if k]),
        kept_labels,
        [f"{PREFIX}{ds.relpath(it)}" for it, k in zip(ds.items, keep, strict=True) if k],
        groups,
        info,
    )


def _copies_of(against: Sequence, analysis, params) -> dict[int, str]:
    """``{index in analysis: path of the image of against it copies}``, the first copy found."""
    copies: dict[int, str] = {}
    for reference in against:
        pairs = find_cross_duplicates(
            [r.fingerprint for r in reference.records],
            [r.fingerprint for r in analysis.records],
            radius=params.hash_radius,
            threshold=params.near_threshold,
        )
        for i, j in zip(pairs["i"], pairs["j"], strict=True):
            copies.setdefault(int(j), str(reference.dataset.items[int(i)].path))
    return copies


def format_extra(info: dict) -> str:
    """One line on the extra training data: what was added and what was dropped."""
    counts = ", ".join(f"{c} {n}" for c, n in info["counts"].items())
    dropped = sum(info["dropped_copies"].values())
    return (
        f"extra training data: {info['n_used']} of {info['n_items']} items of {info['path']} added to the "
        f"training data ({counts}); "
        + (f"{dropped} dropped as copies of images of the data" if dropped else "none copies an image of the data")
    )
