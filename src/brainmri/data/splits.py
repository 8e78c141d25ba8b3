"""Leakage-safe train/test splits used by every evaluation.

* :func:`group_labels` decides what must stay together: subjects when the
  dataset names them, otherwise near-duplicate clusters, or (``similar``)
  the looser look-alike groups that also join adjacent slices of a patient.
* :func:`kfold_splits` is stratified k-fold over those groups
  (scikit-learn's ``StratifiedGroupKFold``), so no group straddles folds.
* :func:`official_split` honours the dataset's own train/test folders and can
  drop test items that duplicate a training item.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from brainmri.data.audit import Analysis, cross_split_leaks
from brainmri.data.dataset import Dataset
from brainmri.data.duplicates import components
from brainmri.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

GROUPINGS = ("auto", "subject", "duplicates", "similar", "none", "source")


@dataclass
class Split:
    """One train/test partition of a dataset's items (indices into ``Analysis.dataset.items``)."""

    name: str
    train: np.ndarray
    test: np.ndarray
    dropped: dict[str, int] = field(default_factory=dict)


def group_labels(analysis: Analysis, grouping: str = "auto") -> tuple[np.ndarray, str]:
    """Group id of every item, and the grouping actually used.

    Parameters
    ----------
    analysis : Analysis
    grouping : {"auto", "subject", "duplicates", "similar", "none", "source"}
        ``auto`` uses subjects when every item has one, else duplicate
        clusters. ``similar`` joins look-alikes too (``--group-similar``); it
        is applied on top of subjects when those are known. ``source`` folds
        hold out whole sources (:func:`source_splits`); inside them items are
        grouped as ``similar``.

    Returns
    -------
    groups : ndarray of int, shape (n_items,)
    used : str
    """
    ds = analysis.dataset
    check_grouping(ds, grouping)
    n = len(ds)
    if grouping == "none":
        return np.arange(n), "none"
    if grouping in ("auto", "subject") and ds.has_subjects:
        return np.unique([it.subject for it in ds.items], return_inverse=True)[1].ravel(), "subject"
    grouping = "similar" if grouping == "source" else grouping
    base = analysis.similar_groups if grouping == "similar" else analysis.graph.cluster_of
    if ds.has_subjects:
        # Join subjects with the image groups so that neither is split.

        subjects = np.unique([it.subject for it in ds.items], return_inverse=True)[1].ravel()
        i, j = _same_label_edges(subjects)
        k, m = _same_label_edges(base)
        return components(n, np.r_[i, k], np.r_[j, m]), f"subject+{grouping}"
    return base, "similar" if grouping == "similar" else "duplicates"


def check_grouping(dataset: Dataset, grouping: str) -> None:
    """Refuse a grouping the dataset cannot give (from the file listing alone).

    Raises
    ------
    ConfigError
        ``grouping`` is unknown, or ``subject`` without a subject id for every item.
    """
    if grouping not in GROUPINGS:
        raise ConfigError(f"grouping must be one of {', '.join(GROUPINGS)}, got {grouping!r}")
    if grouping == "subject" and not dataset.has_subjects:
        raise ConfigError(
            "grouping 'subject' needs a subject id for every item; add a subject column to the CSV manifest"
        )


def check_folds(k: int, n_items: int | None = None) -> None:
    """Refuse a fold count below 2, or above the ``n_items`` of the dataset (from its listing).

    Raises
    ------
    ConfigError
        ``k`` is not an integer >= 2, or there are fewer items than folds.
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ConfigError(f"--cv must be an integer >= 2, got {k!r}")
    if n_items is not None and k > n_items:
        raise ConfigError(
            f"--cv {k}: more folds than the {n_items} items of DATA, so some test folds would be empty; "
            f"use at most --cv {n_items} (5 or 10 is usual)"
        )


def _same_label_edges(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Edges joining every item to the first item carrying its label."""
    _, first = np.unique(labels, return_index=True)
    anchor = first[np.unique(labels, return_inverse=True)[1].ravel()]
    return anchor, np.arange(len(labels))


def kfold_splits(analysis: Analysis, *, k: int = 5, grouping: str = "auto", seed: int = 0) -> tuple[list[Split], str]:
    """Stratified, grouped k-fold splits.

    Returns
    -------
    splits : list of Split
        ``k`` folds; every item is in exactly one test fold.
    grouping : str
        The grouping used (see :func:`group_labels`).

    Raises
    ------
    ConfigError
        ``k`` is below 2 or ``grouping`` is unknown.
    DataError
        Some class has fewer independent groups than ``k``.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    check_folds(k)
    labels = analysis.dataset.labels
    groups, used = group_labels(analysis, grouping)
    n_groups_all = len(np.unique(groups))
    if k > n_groups_all:
        raise DataError(
            f"--cv {k}: DATA holds {n_groups_all} independent groups of images ({used}), fewer than the "
            f"folds, so some test folds would be empty; use at most --cv {n_groups_all}"
        )
    for label in np.unique(labels):
        n_groups = len(np.unique(groups[labels == label]))
        if n_groups < 2:
            raise DataError(
                f"class '{label}' has {n_groups} independent group of images; it needs at least 2 to be both "
                "trained on and tested, so add images of that class or remove it"
            )
        if n_groups < k:
            logger.warning(
                "class '%s' has %d independent groups of images, fewer than the %d folds: it is absent from %d "
                "test folds (pooled metrics still cover it)",
                label,
                n_groups,
                k,
                k - n_groups,
            )
    cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
    splits = [
        Split(f"fold{f}", np.sort(tr), np.sort(te))
        for f, (tr, te) in enumerate(cv.split(np.zeros(len(labels)), labels, groups))
    ]
    return splits, used


#: Independent groups of training images a class needs in a leave-source-out split (grouped inner validation).
MIN_TRAIN_GROUPS = 2


def source_splits(analysis: Analysis, sources: np.ndarray, names: list[str]) -> tuple[list[Split], list[str]]:
    """Leave-source-out: one split per source, its items the test part and every other source's the training part.

    A training item in a look-alike group with a test item (a copy across sources) is left out of that training
    part, so no image is trained on in one source and tested on in another. Test items of a class that no training
    item has cannot be scored: they are left out of that split and counted in ``Split.dropped``.

    Parameters
    ----------
    sources : ndarray of int, shape (n_items,)
        Source index of every item.
    names : list of str
        Name of each source index.

    Returns
    -------
    splits : list of Split
        Named ``source <name>``, in the order of ``names``; a source whose every item is left out is skipped.
    notes : list of str
        What could not be scored, and the copies left out, per held-out source.
    """
    labels = analysis.dataset.labels.astype(str)
    groups = analysis.similar_groups
    splits, notes = [], []
    for s, name in enumerate(names):
        held = sources == s
        shared = np.isin(groups, np.unique(groups[held])) & ~held
        train = np.flatnonzero(~held & ~shared)
        # A class needs MIN_TRAIN_GROUPS independent groups to be trained with grouped inner validation.
        n_groups = {c: len(np.unique(groups[train][labels[train] == c])) for c in np.unique(labels[train])}
        thin = sorted(c for c, n in n_groups.items() if n < MIN_TRAIN_GROUPS)
        trained = set(n_groups) - set(thin)
        dropped = {}
        if thin:
            keep = np.isin(labels[train], sorted(trained))
            n_thin = int((~keep).sum())
            dropped["training items of a class with too few groups"] = n_thin
            notes.append(
                f"held-out source {name}: class(es) {', '.join(thin)} have fewer than {MIN_TRAIN_GROUPS} independent "
                f"groups of images in the other sources ({n_thin} image{'s' if n_thin != 1 else ''}), too few to "
                "train on; left out of this split"
            )
            train = train[keep]
        test_all = np.flatnonzero(held)
        unscorable = sorted(set(labels[test_all].tolist()) - trained)
        test = test_all[np.isin(labels[test_all], sorted(trained))]
        if unscorable:
            dropped["class absent from the other sources"] = int(len(test_all) - len(test))
            notes.append(
                f"held-out source {name}: class(es) {', '.join(unscorable)} cannot be trained from the other "
                f"sources, so this split cannot score them ({dropped['class absent from the other sources']} "
                "test items left out)"
            )
        if shared.any():
            dropped["training copies of test items"] = int(shared.sum())
            notes.append(
                f"held-out source {name}: {int(shared.sum())} training items of other sources copy or look like its "
                "images and were left out of training"
            )
        if len(test) and len(trained) >= 2:
            splits.append(Split(f"source {name}", train, test, dropped))
        else:
            notes.append(f"held-out source {name}: nothing left to score (training classes {sorted(trained)})")
    return splits, notes


def official_indices(dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the training and test items of the dataset's own split (``val`` when there is no ``test``).

    Raises
    ------
    DataError
        The dataset has no train or no test split.
    """
    splits = np.array([it.split or "" for it in dataset.items])
    train = np.flatnonzero(splits == "train")
    test = np.flatnonzero(splits == "test")
    if not len(test):
        test = np.flatnonzero(splits == "val")
    if not len(train) or not len(test):
        raise DataError(
            f"{dataset.root}: --split official needs train and test folders (Training/Testing, train/test) "
            "or a split column in the CSV; use --cv K instead"
        )
    return train, test


def official_split(analysis: Analysis, *, drop_test_duplicates: bool = False) -> Split:
    """The dataset's own train/test split.

    Parameters
    ----------
    drop_test_duplicates : bool
        Remove test items that have an exact or confirmed near-duplicate in
        the training split; :attr:`Split.dropped` counts them per class.

    Raises
    ------
    DataError
        The dataset has no train or no test split.
    """
    ds = analysis.dataset
    train, test = official_indices(ds)
    dropped: dict[str, int] = {}
    if drop_test_duplicates:
        leaking = {leak["test_path"] for leak in cross_split_leaks(analysis)}
        keep = []
        for idx in test:
            if ds.relpath(ds.items[idx]) in leaking:
                dropped[ds.items[idx].label] = dropped.get(ds.items[idx].label, 0) + 1
            else:
                keep.append(idx)
        test = np.asarray(keep, dtype=int)
        logger.info("dropped %d test items that duplicate training items", sum(dropped.values()))
    return Split("official", train, test, dict(sorted(dropped.items())))
