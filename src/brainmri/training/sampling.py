"""How a training epoch draws its items (``sampling``): shuffled once each, or balanced over classes or sources.

A collection can hold its classes unevenly across its sources: one
publisher's images for one class, another's for the rest (issue 23). A
network trained on such data can learn the source instead of the class.
Balancing the draws over sources, and over the classes inside each source,
gives every source the same weight in each epoch, so the largest one does
not set what "normal" looks like; it cannot help a class that lives in one
source only. Balancing over classes alone is the sampling counterpart of
the class-weighted loss (``class_weight="balanced"``).

PyTorch's :class:`torch.utils.data.WeightedRandomSampler` draws with the
same ``torch.multinomial`` call; the loop indexes arrays in memory, not a
DataLoader, so it calls ``torch.multinomial`` on these weights itself.
"""

from __future__ import annotations

import numpy as np

from brainmri.errors import ConfigError


def sampling_weights(y: np.ndarray, sources: np.ndarray | None, sampling: str) -> np.ndarray | None:
    """The probability of drawing each training item, or None for ``shuffle`` (each item once per epoch).

    Parameters
    ----------
    y : ndarray of int
        Class index of every training item.
    sources : ndarray or None
        Source of every training item (a manifest's ``source`` column,
        ``--extra-data``); needed for ``sampling="source"``.
    sampling : {"shuffle", "class", "source"}
        ``class``: each class equally likely. ``source``: each source
        equally likely, and within a source each of its classes.

    >>> sampling_weights(np.array([0, 0, 0, 1]), None, "class").tolist()
    [0.16666666666666666, 0.16666666666666666, 0.16666666666666666, 0.5]
    >>> sampling_weights(np.array([0, 1, 0, 0]), np.array(["a", "a", "b", "b"]), "source").tolist()
    [0.25, 0.25, 0.25, 0.25]
    """
    if sampling == "shuffle":
        return None
    if sampling == "class":
        cells = y.astype(str)
        weight_of = {c: 1.0 / len(np.unique(cells)) for c in np.unique(cells)}
    else:
        if sources is None or len(np.unique(sources)) < 2:
            found = "no sources" if sources is None else f"one source ({np.unique(sources)[0]})"
            raise ConfigError(
                f"training parameter sampling=source needs training items from at least two sources, got {found}; "
                "give DATA a manifest with a source column, or add --extra-data"
            )
        sources = np.asarray(sources).astype(str)
        cells = np.array([f"{source}\x1f{c}" for source, c in zip(sources, y, strict=True)])
        n_sources = len(np.unique(sources))
        weight_of = {}
        for source in np.unique(sources):
            classes = np.unique(y[sources == source])
            for c in classes:
                weight_of[f"{source}\x1f{c}"] = 1.0 / (n_sources * len(classes))
    keys, inverse, counts = np.unique(cells, return_inverse=True, return_counts=True)
    cell_weight = np.array([weight_of[k] for k in keys])
    return cell_weight[inverse] / counts[inverse]


def expected_class_counts(y: np.ndarray, weights: np.ndarray | None, n_classes: int) -> np.ndarray:
    """How often each class is drawn in an epoch of ``len(y)`` draws (the counts themselves for ``shuffle``).

    The class-weighted loss divides by these, so that it balances what the
    network sees, not what the collection holds.
    """
    if weights is None:
        return np.bincount(y, minlength=n_classes).astype(np.float64)
    return np.bincount(y, weights=weights * len(y), minlength=n_classes)
