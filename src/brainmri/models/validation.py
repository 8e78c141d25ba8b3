"""Inner validation splits of a training set, grouped like the outer split.

Every split made inside a method's ``fit`` (hyperparameter search,
probability calibration, early stopping of deep methods) must keep together
what the benchmark keeps together across its outer folds: one subject's
slices, near-duplicate clusters or look-alike groups. Otherwise a near-copy
of a validation image sits in the inner training part and model selection
rewards memorising (on the brain-tumor-mri training split about a quarter of
the validation items of a plain ``StratifiedKFold`` had such a copy).

The benchmark passes the outer split's group ids to ``fit(X, y, groups=...)``;
:func:`inner_splits` turns them into ``StratifiedGroupKFold`` folds. A method
called without groups falls back to ``StratifiedKFold`` and says so in the
description it returns (recorded in the method's ``params_``).
:func:`holdout_split` is the one validation part of a deep method
(:class:`~brainmri.models.torch_classifier.TorchClassifier`), grouped the same way.
"""

from __future__ import annotations

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from brainmri.errors import DataError

#: Folds of the inner cross-validation (hyperparameter search and calibration).
INNER_FOLDS = 5


def check_class_counts(y, need: int, purpose: str, groups=None) -> None:
    """Raise a clear error when a class has fewer than ``need`` training items (or groups).

    Parameters
    ----------
    y : array-like of shape (n,)
        Training labels.
    need : int
        The smallest number of items (of groups, when ``groups`` is given) a
        class may have.
    purpose : str
        What the items are needed for, quoted in the message.
    groups : array-like of shape (n,) or None
        Group id of every item; when given, independent groups are counted
        instead of items.

    Raises
    ------
    DataError
        A single class, or a class below ``need``.
    """
    y = np.asarray(y)
    labels = np.unique(y)
    if len(labels) < 2:
        raise DataError(
            f"training data has a single class ({labels[0] if len(labels) else 'none'}); a classifier needs at least two"
        )
    unit = (
        "training images"
        if groups is None
        else "independent groups of training images (subjects or duplicate clusters)"
    )
    counts = [len(y[y == lab]) if groups is None else len(np.unique(np.asarray(groups)[y == lab])) for lab in labels]
    small = [f"'{lab}' ({n})" for lab, n in zip(labels, counts, strict=True) if n < need]
    if small:
        raise DataError(
            f"class(es) {', '.join(small)} have fewer than {need} {unit}, too few for {purpose}; "
            "add images, merge classes with --label-map, or use fewer folds"
        )


def inner_splits(y, groups=None, *, random_state: int = 0) -> tuple[list[tuple[np.ndarray, np.ndarray]], str]:
    """Stratified inner folds of a training set, grouped when groups are given.

    ``INNER_FOLDS`` folds, or fewer when a class has fewer items (groups):
    a class needs two, so that every inner training part holds every class.

    Parameters
    ----------
    y : array-like of shape (n,)
        Training labels.
    groups : array-like of shape (n,) or None
        Group id of every training item (the outer split's grouping). With
        groups no group straddles an inner train/validation boundary
        (``StratifiedGroupKFold``); without, items are split one by one
        (``StratifiedKFold``).
    random_state : int
        Seed of the shuffling.

    Returns
    -------
    splits : list of (ndarray, ndarray)
        ``min(INNER_FOLDS, fewest items or groups of a class)`` (train
        indices, validation indices) pairs; every
        item is validated exactly once. Pass the list as ``cv`` to every
        inner search and calibration so that they all use the same folds.
    description : str
        ``"StratifiedGroupKFold over G groups"`` or
        ``"StratifiedKFold, no groups given"`` (with the number of folds
        when it is below ``INNER_FOLDS``), for the method's ``params_``.

    Raises
    ------
    DataError
        ``groups`` does not have one id per item, a class has fewer than two
        items (groups), or a class falls in a single validation fold.

    Examples
    --------
    >>> y = ["a", "a", "a", "b", "b", "b"]
    >>> splits, how = inner_splits(y, groups=[0, 1, 2, 3, 4, 5])
    >>> how, len(splits)
    ("StratifiedGroupKFold over 6 groups, 3 folds (class 'a' has only 3 groups)", 3)
    """
    y = np.asarray(y)
    if groups is not None:
        groups = np.asarray(groups)
        if groups.shape != y.shape:
            raise DataError(f"groups must hold one id per training item, got {groups.size} ids for {len(y)} items")
    # Two items (groups) per class is the least with which every inner training part holds every class;
    # a class with fewer than INNER_FOLDS of them lowers the number of folds instead of stopping the run.
    check_class_counts(
        y, 2, "inner cross-validation" if groups is None else "grouped inner cross-validation", groups=groups
    )
    labels = np.unique(y)
    units = [np.sum(y == lab) if groups is None else len(np.unique(groups[y == lab])) for lab in labels]
    n_folds = int(min(INNER_FOLDS, min(units)))
    if groups is None:
        cv = StratifiedKFold(n_folds, shuffle=True, random_state=random_state)
        splits = list(cv.split(np.zeros(len(y)), y))
        how = "StratifiedKFold, no groups given"
    else:
        cv = StratifiedGroupKFold(n_folds, shuffle=True, random_state=random_state)
        splits = list(cv.split(np.zeros(len(y)), y, groups))
        how = f"StratifiedGroupKFold over {len(np.unique(groups))} groups"
        for train, _ in splits:
            missing = sorted(set(labels) - set(y[train]))
            if missing:
                raise DataError(
                    f"class(es) {', '.join(map(str, missing))} fall in a single inner validation fold, so an "
                    "inner model never sees them; add images of independent subjects, or merge classes "
                    "with --label-map"
                )
    if n_folds < INNER_FOLDS:
        fewest = labels[int(np.argmin(units))]
        how += f", {n_folds} folds (class '{fewest}' has only {min(units)} {'items' if groups is None else 'groups'})"
    return splits, how


def holdout_split(y, groups=None, *, fraction: float = 0.2, random_state: int = 0):
    """One stratified train/validation split, grouped when groups are given.

    The validation part is one fold of ``round(1 / fraction)`` folds
    (``StratifiedGroupKFold`` with groups, ``StratifiedKFold`` without),
    fewer folds when a class has fewer items (groups), so that it is about
    ``fraction`` of the items and no group straddles the two parts.

    Returns
    -------
    train, val : ndarray of int
    description : str
        For ``params_``.

    Raises
    ------
    DataError
        A class has fewer than two items (groups), or lands in one part only.
    """
    y = np.asarray(y)
    purpose = "the validation part that selects the epoch and calibrates a deep method"
    check_class_counts(y, 2, purpose, groups=groups)
    labels = np.unique(y)
    units = [np.sum(y == c) if groups is None else len(np.unique(np.asarray(groups)[y == c])) for c in labels]
    n_folds = int(min(max(round(1 / fraction), 2), min(units)))
    if groups is None:
        train, val = next(StratifiedKFold(n_folds, shuffle=True, random_state=random_state).split(y, y))
        how = f"StratifiedKFold holdout (1 of {n_folds} folds), no groups given"
    else:
        cv = StratifiedGroupKFold(n_folds, shuffle=True, random_state=random_state)
        train, val = next(cv.split(y, y, groups))
        how = f"StratifiedGroupKFold holdout (1 of {n_folds} folds) over {len(np.unique(groups))} groups"
    missing = sorted(map(str, set(labels) - set(y[train]) | set(labels) - set(y[val])))
    if missing:
        raise DataError(
            f"class(es) {', '.join(missing)} fall on one side of {purpose}; add images of independent "
            "subjects, or merge classes with --label-map"
        )
    return train, val, how
