"""Exact and near-duplicate detection that scales, does not chain, and sees mirrored, flipped and rotated copies.

The approach, and the evidence for its defaults (measured on the real
datasets in ``../shared/datasets``, see ``docs/datasets.md``; the ruler is
``bench/duplicate_truth.py``, a brute-force all-pairs correlation):

1. Every image gets a *fingerprint* (:mod:`brainmri.data.fingerprint`): a
   hash of its decoded pixels (exact duplicates) and, for two views (the
   whole frame and the head's bounding box), a 64x64 *structure thumbnail*
   (the image minus its Gaussian blur, z-scored: gyri, edges and lesions
   without global brightness and contrast), a tone thumbnail, and the
   64-bit DCT perceptual hash (pHash) of the view in each of the 8
   symmetries of the square.
2. Candidate pairs are the pairs where one image, in some orientation and
   view, hashes within ``hash_radius`` bits of the other upright
   (:func:`oriented_candidates`, a multi-index join, :func:`radius_join`), so
   the cost grows with the number of candidates, not with all pairs.
3. A candidate is confirmed as a near-duplicate when the Pearson correlation
   of the two structure thumbnails, the first turned into the candidate's
   orientation, is at least ``near_threshold`` in either view
   (:func:`confirm`). Each confirmed pair says what kind of copy it is
   (:func:`copy_kinds`, :data:`KINDS`).

Why orientations: published collections mirror and flip images to enlarge
themselves. On ``brain-tumor-mri`` the upright detection found 551 of the
test images copying a training image, an all-pairs check over the
orientations about 1,010; 437 of those it missed match best as a left-right
mirror.

Why the head box: a copy cut out with another margin, padded, or zoomed or
shifted a little, no longer lines up with its original over the whole
frame; cut to the head's box, it does again. What is *not* caught: a copy
rotated by a small angle, cropped into the head, or deformed; a copy whose
structure was changed more than the threshold allows (strong smoothing or
noise); and, by design, another slice of the same scan.

Why not pHash alone: on ``alzheimer-mri`` unrelated slices of similar anatomy
sit at pHash distance 6-10 and transitive grouping at distance <= 8 joins all
6,400 slices into one cluster. Their structure correlation is 0.3-0.6 while
copies and re-encodes score above 0.9 (median 0.95), so the confirmation
breaks the chains.

``--group-similar`` uses looser settings (``similar_radius``,
``similar_threshold``) to also join look-alikes such as adjacent slices.

Copies *between* two datasets (:func:`find_cross_duplicates`, used by
``audit --against``, ``benchmark --test-data`` and ``--extra-data``) use the
same hash and threshold, with one difference: the confirmation takes the
best correlation over shifts of -0.5, 0 and +0.5 thumbnail pixel in each
direction (:data:`SUBPIXEL_SHIFTS`). Collections compiled from each other
resize images with their own kernels, crops and pixel-centre conventions,
which misregisters a copy by a fraction of a pixel, and a high-pass map is
sensitive to that. Evidence: ``brain-tumor-yes-no`` holds 115 copies of
``brain-tumor-mri`` images (its README). Without shifts the upright frame
confirmation finds 114; the missed one (``yes/Y36.JPG``, 251x204, a copy of
``Testing/meningioma/Te-me_0036.jpg``, 224x224) scores 0.88, and 0.98 after
a half-pixel horizontal shift. Shifts do not make look-alikes pass: of the
11,509 ``alzheimer-mri`` candidate pairs at 0.60-0.90 without shifts
(adjacent slices), none reaches 0.90 with them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from brainmri.data.copy_kinds import copy_kinds, format_kinds, kind_counts
from brainmri.data.fingerprint import INVERSE, ORIENTATIONS, THUMB, VIEWS, Fingerprint, orient
from brainmri.data.hash_join import radius_join
from brainmri.errors import ConfigError

logger = logging.getLogger(__name__)

#: Version of what duplicate detection finds; bump it when its pairs can change. Groups, folds, inner splits and the
#: deduplicated test follow from them, so run folders made with another version are not resumed.
DUPLICATES_VERSION = 2

#: How much more than the threshold a pair must correlate in the head-box view alone (see :func:`confirm`).
BOX_MARGIN = 0.04

#: Sub-pixel shifts (thumbnail pixels, each axis) tried when confirming copies between two datasets.
SUBPIXEL_SHIFTS = (-0.5, 0.0, 0.5)


@dataclass(frozen=True)
class DuplicateParams:
    """Thresholds of duplicate detection.

    Parameters
    ----------
    hash_radius : int
        Largest pHash Hamming distance (bits of 64) for a candidate pair.
    near_threshold : float
        Smallest structure correlation that confirms a near-duplicate.
    similar_radius : int
        Candidate radius for look-alike grouping (``--group-similar``).
    similar_threshold : float
        Smallest structure correlation that joins two look-alikes.
    """

    hash_radius: int = 8
    near_threshold: float = 0.90
    similar_radius: int = 10
    similar_threshold: float = 0.70

    def __post_init__(self):
        for name in ("hash_radius", "similar_radius"):
            value = getattr(self, name)
            if not isinstance(value, int) or not 0 <= value <= 31:
                raise ConfigError(f"{name} must be an integer in 0..31 (bits of a 64-bit hash), got {value!r}")
        for name in ("near_threshold", "similar_threshold"):
            value = getattr(self, name)
            if not -1.0 <= value <= 1.0:
                raise ConfigError(f"{name} is a correlation and must lie in [-1, 1], got {value!r}")

    def to_dict(self) -> dict:
        return asdict(self)


def oriented_candidates(
    queries: list[Fingerprint], base: list[Fingerprint], radius: int, *, upright: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pairs ``(q, g, b)`` where query image ``q`` in orientation ``g`` hashes within ``radius`` bits of ``b``.

    Each view (:data:`~brainmri.data.fingerprint.VIEWS`) is joined on its
    own: the 8 oriented hashes of every query against the upright hash of
    every base image. A pair found in several views is kept once, with its
    smallest distance. With ``upright``, only the whole frame as it is.

    Returns
    -------
    q, g, b, distance : ndarray of int64
        Sorted by ``(q, b, g)``.
    """
    n_views, n_orient = (1, 1) if upright else (len(VIEWS), len(ORIENTATIONS))
    if not queries or not base:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    query_hashes = np.stack([f.phashes[:n_views, :n_orient] for f in queries])  # (n, views, orientations)
    base_hashes = np.stack([f.phashes[:, 0] for f in base])  # (m, views)
    codes, distances = [], []
    for v in range(n_views):
        k, b, d = radius_join(query_hashes[:, v, :].ravel(), base_hashes[:, v], radius)
        codes.append(((k // n_orient) * len(base) + b) * n_orient + k % n_orient)
        distances.append(d)
    code, distance = np.concatenate(codes), np.concatenate(distances)
    order = np.lexsort((distance, code))
    code, distance = code[order], distance[order]
    first = np.r_[True, code[1:] != code[:-1]] if len(code) else np.zeros(0, dtype=bool)
    code, distance = code[first], distance[first]
    g, pair = code % n_orient, code // n_orient
    return pair // len(base), g, pair % len(base), distance


def oriented_similarity(
    left: np.ndarray, i: np.ndarray, g: np.ndarray, right: np.ndarray, j: np.ndarray, *, shifts: bool = False
) -> np.ndarray:
    """Pearson correlation of z-scored square thumbnails ``left[i]`` in orientation ``g`` and ``right[j]``.

    With ``shifts``, the best over ``right[j]`` moved by each pair of
    :data:`SUBPIXEL_SHIFTS` (bilinear, re-z-scored). Pairs are taken in
    chunks, so memory stays bounded whatever their number.

    Parameters
    ----------
    left, right : ndarray, shape (n, side * side)
    i, g, j : ndarray of int, shape (n_pairs,)

    Returns
    -------
    ndarray of float32, shape (n_pairs,)
    """
    side = int(round(np.sqrt(left.shape[1]))) if left.ndim == 2 and left.shape[1] else THUMB
    out = np.empty(len(i), dtype=np.float32)
    for s in range(0, len(i), 2048):
        chunk = slice(s, s + 2048)
        a = np.asarray(left[i[chunk]], dtype=np.float32).reshape(-1, side, side)
        for k in np.unique(g[chunk]):
            at = g[chunk] == k
            a[at] = orient(a[at], int(k))
        b = np.asarray(right[j[chunk]], dtype=np.float32).reshape(-1, side, side)
        moved = shifted_thumbs(b.reshape(len(b), -1)).reshape(-1, len(b), side, side) if shifts else b[None]
        out[chunk] = np.max([np.einsum("nij,nij->n", a, m) for m in moved], axis=0) / (side * side)
    return out


def structure_similarity(
    thumbs: np.ndarray, i: np.ndarray, j: np.ndarray, *, partners: np.ndarray | None = None
) -> np.ndarray:
    """Pearson correlation of the upright structure thumbnails of pairs ``(i, j)``.

    ``i`` indexes ``thumbs`` and ``j`` indexes ``partners`` (default:
    ``thumbs`` too).
    """
    partners = thumbs if partners is None else partners
    return oriented_similarity(thumbs, i, np.zeros(len(i), dtype=np.int64), partners, j)


def shifted_thumbs(thumbs: np.ndarray) -> np.ndarray:
    """Every structure thumbnail moved by each pair of :data:`SUBPIXEL_SHIFTS` (bilinear), re-z-scored.

    Parameters
    ----------
    thumbs : ndarray, shape (n, side * side)

    Returns
    -------
    ndarray of float32, shape (len(SUBPIXEL_SHIFTS) ** 2, n, side * side)
    """
    from scipy.ndimage import shift

    side = int(round(np.sqrt(thumbs.shape[1])))
    planes = np.asarray(thumbs, dtype=np.float32).reshape(-1, side, side)
    out = []
    for dy in SUBPIXEL_SHIFTS:
        for dx in SUBPIXEL_SHIFTS:
            moved = shift(planes, (0, dy, dx), order=1, mode="nearest")
            moved -= moved.mean(axis=(1, 2), keepdims=True)
            std = moved.std(axis=(1, 2), keepdims=True)
            out.append((moved / np.where(std > 0, std, 1)).reshape(len(planes), -1))
    return np.stack(out)


def confirm(
    queries: list[Fingerprint],
    base: list[Fingerprint],
    candidates: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    threshold: float,
    *,
    shifts: bool = False,
    upright: bool = False,
) -> dict[str, np.ndarray]:
    """The candidates whose structure correlation, in their orientation and best view, reaches ``threshold``.

    Each pair of images is kept once, in the orientation that correlates
    best (upright when another orientation is no more than 0.01 better: a
    brain is nearly symmetric, and an upright copy is the plain reading).
    With ``upright``, only the whole frame is compared.

    Returns
    -------
    dict of ndarray
        ``i`` (query), ``j`` (base), ``orientation``, ``view``, ``distance``, ``similarity``,
        ``kind`` (see :func:`copy_kind`), sorted by ``(i, j)``.
    """
    q, g, b, distance = candidates
    sims = np.stack(
        [_view_similarity(queries, base, v, candidates, shifts) for v in range(1 if upright else len(VIEWS))]
    )
    # The head-box view must clear the threshold by BOX_MARGIN: scaling every head to its box also makes
    # neighbouring slices of one scan, whose heads differ a little in size, look more alike.
    score = sims - np.array([0.0, BOX_MARGIN][: len(sims)], dtype=np.float32)[:, None]
    view = score.argmax(axis=0) if len(q) else np.zeros(0, dtype=np.int64)
    sim = np.take_along_axis(sims, view[None], axis=0)[0] if len(q) else np.zeros(0, dtype=np.float32)
    score = score.max(axis=0) if len(q) else np.zeros(0, dtype=np.float32)
    order = np.lexsort((g, -(score + 0.01 * (g == 0)), b, q))
    first = order[np.r_[True, (q[order][1:] != q[order][:-1]) | (b[order][1:] != b[order][:-1])]] if len(q) else order
    keep = first[score[first] >= threshold]
    pairs = {
        "i": q[keep],
        "j": b[keep],
        "orientation": g[keep],
        "view": view[keep],
        "distance": distance[keep],
        "similarity": sim[keep],
    }
    pairs["kind"] = copy_kinds(queries, base, pairs)
    return pairs


def _view_similarity(
    queries: list[Fingerprint], base: list[Fingerprint], view: int, candidates: tuple, shifts: bool
) -> np.ndarray:
    """:func:`oriented_similarity` of the candidates in one view; thumbnails widened to float32 once, not per pair."""
    q, g, b, _ = candidates
    if not len(q):
        return np.zeros(0, dtype=np.float32)
    left = np.stack([f.thumbs[view] for f in queries]).astype(np.float32)
    right = left if base is queries else np.stack([f.thumbs[view] for f in base]).astype(np.float32)
    return oriented_similarity(left, q, g, right, b, shifts=shifts)


def components(n: int, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Connected-component label of each of ``n`` nodes joined by edges ``(i, j)``.

    >>> components(4, np.array([0]), np.array([2])).tolist()
    [0, 1, 0, 2]
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    graph = coo_matrix((np.ones(len(i), dtype=np.int8), (i, j)), shape=(n, n))
    return connected_components(graph, directed=False)[1]


def clusters_from_labels(labels: np.ndarray) -> list[list[int]]:
    """Groups of two or more indices sharing a label, largest first."""
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    cuts = np.flatnonzero(np.diff(sorted_labels)) + 1
    groups = [g.tolist() for g in np.split(order, cuts) if len(g) > 1]
    return sorted(groups, key=lambda g: (-len(g), g[0]))


@dataclass
class DuplicateGraph:
    """Confirmed duplicate relations among ``n`` fingerprinted images.

    Attributes
    ----------
    exact_clusters : list of list of int
        Images with identical decoded pixels.
    pairs : dict of ndarray
        ``i``, ``j``, ``distance`` (pHash bits), ``similarity`` (structure
        correlation), ``exact`` (bool), ``orientation`` (index into
        :data:`~brainmri.data.fingerprint.ORIENTATIONS` that maps ``i`` onto
        ``j``) and ``kind`` (one of :data:`KINDS`) of every confirmed pair,
        exact pairs included (one edge per member to its cluster's first
        image).
    cluster_of : ndarray of int
        Near-duplicate cluster label of every image (exact and near edges).
    """

    n: int
    exact_clusters: list[list[int]]
    pairs: dict[str, np.ndarray]
    cluster_of: np.ndarray

    @property
    def near_clusters(self) -> list[list[int]]:
        """Clusters of two or more images joined by exact or near edges,
        except those made of exact copies only (reported as exact)."""
        exact_sets = {frozenset(c) for c in self.exact_clusters}
        return [c for c in clusters_from_labels(self.cluster_of) if frozenset(c) not in exact_sets]


def _with_exact(near: dict[str, np.ndarray], ei: np.ndarray, ej: np.ndarray) -> dict[str, np.ndarray]:
    """The confirmed near pairs after the exact pairs ``(ei, ej)``, in the layout of :attr:`DuplicateGraph.pairs`."""
    n_exact = len(ei)
    return {
        "i": np.concatenate([ei, near["i"]]).astype(np.int64),
        "j": np.concatenate([ej, near["j"]]).astype(np.int64),
        "distance": np.concatenate([np.zeros(n_exact, np.int64), near["distance"]]),
        "similarity": np.concatenate([np.ones(n_exact, np.float32), near["similarity"]]).astype(np.float32),
        "exact": np.concatenate([np.ones(n_exact, bool), np.zeros(len(near["i"]), bool)]),
        "orientation": np.concatenate([np.zeros(n_exact, np.int64), near["orientation"]]).astype(np.int64),
        "kind": np.concatenate([np.full(n_exact, "identical", dtype=object), near["kind"]]),
    }


def find_duplicates(
    fingerprints: list[Fingerprint],
    *,
    radius: int,
    threshold: float,
    upright: bool = False,
    progress: Callable[[str], None] | None = None,
) -> DuplicateGraph:
    """Find exact duplicates and confirmed near-duplicates, in any of the 8 orientations.

    Parameters
    ----------
    fingerprints : list of Fingerprint
    radius : int
        pHash candidate radius in bits.
    threshold : float
        Smallest structure correlation that confirms a pair.
    upright : bool
        Compare the whole frames as they are only (the look-alike grouping,
        whose loose threshold would join mirrored look-alikes of a nearly
        symmetric organ).

    Returns
    -------
    DuplicateGraph
    """
    n = len(fingerprints)
    pixel_ids = (
        np.unique([f.pixel_hash for f in fingerprints], return_inverse=True)[1].ravel()
        if n
        else np.zeros(0, dtype=np.int64)
    )
    exact_clusters = clusters_from_labels(pixel_ids)
    q, g, b, dist = oriented_candidates(fingerprints, fingerprints, radius, upright=upright)
    # Each pair is found from both sides: keep it as (smaller, larger), the orientation inverted when swapped.
    swap = q > b
    q, b, g = np.where(swap, b, q), np.where(swap, q, b), np.where(swap, INVERSE[g], g)
    keep = (q != b) & (pixel_ids[q] != pixel_ids[b])
    code = (q[keep] * n + b[keep]) * len(ORIENTATIONS) + g[keep]
    code, first = np.unique(code, return_index=True)
    candidates = (q[keep][first], g[keep][first], b[keep][first], dist[keep][first])
    if progress:
        progress(f"confirming {len(code)} candidate pairs")
    near = confirm(fingerprints, fingerprints, candidates, threshold, upright=upright)
    logger.info(
        "%d candidate pairs within %d bits in any orientation, %d confirmed at similarity >= %.2f (%s)",
        len(code),
        radius,
        len(near["i"]),
        threshold,
        format_kinds(kind_counts(near["kind"])),
    )
    ei = np.concatenate([np.full(len(c) - 1, c[0]) for c in exact_clusters] or [np.zeros(0, np.int64)])
    ej = np.concatenate([np.asarray(c[1:]) for c in exact_clusters] or [np.zeros(0, np.int64)])
    pairs = _with_exact(near, ei.astype(np.int64), ej.astype(np.int64))
    return DuplicateGraph(n, exact_clusters, pairs, components(n, pairs["i"], pairs["j"]))


def find_cross_duplicates(
    reference: list[Fingerprint],
    other: list[Fingerprint],
    *,
    radius: int,
    threshold: float,
) -> dict[str, np.ndarray]:
    """Exact and confirmed near-duplicates between two sets of images, in any of the 8 orientations.

    Candidates come from the same oriented pHash join as
    :func:`find_duplicates`, restricted to pairs across the sets; a
    candidate is confirmed by the best structure correlation over
    :data:`SUBPIXEL_SHIFTS` (see the module docstring for why).

    Parameters
    ----------
    reference, other : list of Fingerprint
    radius : int
        pHash candidate radius in bits.
    threshold : float
        Smallest structure correlation that confirms a pair.

    Returns
    -------
    dict of ndarray
        ``i`` (index into ``reference``), ``j`` (index into ``other``),
        ``distance`` (pHash bits), ``similarity`` (1.0 for exact copies),
        ``exact`` (identical decoded pixels), ``orientation`` (that maps
        ``i`` onto ``j``) and ``kind`` of every confirmed pair, sorted by
        ``(i, j)``.
    """
    exact_i, exact_j = _identical_pairs(reference, other)
    q, g, b, dist = oriented_candidates(reference, other, radius)
    identical = {(int(i), int(j)) for i, j in zip(exact_i, exact_j, strict=True)}
    keep = np.array([(int(i), int(j)) not in identical for i, j in zip(q, b, strict=True)], dtype=bool)
    near = confirm(reference, other, (q[keep], g[keep], b[keep], dist[keep]), threshold, shifts=True)
    pairs = _with_exact(near, exact_i, exact_j)
    order = np.lexsort((pairs["j"], pairs["i"]))
    pairs = {k: v[order] for k, v in pairs.items()}
    logger.info(
        "%d candidate pairs across the two sets within %d bits in any orientation, %d confirmed (%s)",
        int(keep.sum()) + len(exact_i),
        radius,
        len(pairs["i"]),
        format_kinds(kind_counts(pairs["kind"])),
    )
    return pairs


def _identical_pairs(reference: list[Fingerprint], other: list[Fingerprint]) -> tuple[np.ndarray, np.ndarray]:
    """Every (reference, other) pair with identical decoded pixels."""
    by_hash: dict[str, list[int]] = {}
    for k, f in enumerate(reference):
        by_hash.setdefault(f.pixel_hash, []).append(k)
    pairs = sorted((i, j) for j, f in enumerate(other) for i in by_hash.get(f.pixel_hash, []))
    if not pairs:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    i, j = np.array(pairs, dtype=np.int64).T
    return i, j
