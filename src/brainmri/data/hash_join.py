"""All pairs of 64-bit hashes within a Hamming radius, without comparing all pairs (multi-index hashing).

:mod:`brainmri.data.duplicates` joins the perceptual hashes of images with it.
"""

from __future__ import annotations

import numpy as np


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance between uint64 hashes.

    >>> hamming(np.array([0b1011], np.uint64), np.array([0b0001], np.uint64)).tolist()
    [2]
    """
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def radius_join(queries: np.ndarray, base: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every pair ``(q, b)`` of a query hash and a base hash within ``radius`` bits.

    Multi-index hashing (Norouzi et al., CVPR 2012): the 64 bits are cut
    into four 16-bit chunks. Two hashes within ``radius`` bits differ in at
    most ``radius // 4`` bits on at least one chunk (pigeonhole), so each
    chunk of the base is probed with every key within that sub-radius of the
    query's and only the items found are compared. Written by hand because no
    maintained Python library offers a vectorised Hamming-radius join; the
    cost grows with the number of candidates, not with all pairs.

    Returns
    -------
    q, b, distance : ndarray of int64, shape (n_pairs,)
        Indices into ``queries`` and ``base``, sorted by ``(q, b)``.
    """
    from itertools import combinations

    queries, base = np.asarray(queries, dtype=np.uint64), np.asarray(base, dtype=np.uint64)
    m = len(base)
    masks = np.array(
        [sum(1 << b for b in bits) for r in range(radius // 4 + 1) for bits in combinations(range(16), r)],
        dtype=np.int64,
    )
    found = []
    for shift in (0, 16, 32, 48):
        # A table of the 65,536 chunk values: where each value's base items start in `order`, and how many there are.
        keys = ((base >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        bucket = np.bincount(keys, minlength=1 << 16)
        start = np.cumsum(bucket) - bucket
        probes = ((queries >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.int64)
        for mask in masks:
            probe = probes ^ mask
            lo, counts = start[probe], bucket[probe]
            if not counts.any():
                continue
            q = np.repeat(np.arange(len(queries)), counts)
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            b = order[np.repeat(lo, counts) + offsets]
            close = hamming(queries[q], base[b]) <= radius
            found.append(q[close] * m + b[close])
    codes = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
    q, b = codes // max(m, 1), codes % max(m, 1)
    return q, b, hamming(queries[q], base[b])


def candidate_pairs(hashes: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` whose 64-bit hashes are within ``radius`` bits (:func:`radius_join` of a set with itself).

    Returns
    -------
    I, J, distance : ndarray of int64, shape (n_pairs,)
        Sorted by ``(I, J)``.
    """
    i, j, distance = radius_join(hashes, hashes, radius)
    keep = i < j
    return i[keep], j[keep], distance[keep]
