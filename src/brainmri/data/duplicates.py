"""Exact and near-duplicate detection that scales and does not chain.

The approach, and the evidence for its defaults (measured on the two real
datasets in ``../shared/datasets``, see ``docs/datasets.md``):

1. Every image gets a *fingerprint*: a hash of its decoded pixels (exact
   duplicates), a 64-bit DCT perceptual hash (pHash) of a 32x32 thumbnail,
   and a 64x64 *structure thumbnail*: the image minus its Gaussian blur
   (sigma 2 px), z-scored. The structure thumbnail keeps gyri, edges and
   lesions and drops global brightness and contrast.
2. Candidate pairs are the pairs whose pHashes differ in at most
   ``hash_radius`` bits, found with a multi-index hash (see
   :func:`candidate_pairs`), so the cost grows with the number of
   candidates, not with all pairs.
3. A candidate is confirmed as a near-duplicate when the Pearson correlation
   of the two structure thumbnails is at least ``near_threshold``.

Why not pHash alone: on ``alzheimer-mri`` unrelated slices of similar anatomy
sit at pHash distance 6-10 and transitive grouping at distance <= 8 joins all
6,400 slices into one cluster. Their structure correlation is 0.3-0.6 while
copies and re-encodes score above 0.9 (median 0.95), so the confirmation
breaks the chains: the largest cluster drops to 32 images.

``--group-similar`` uses the same machinery with looser settings
(``similar_radius``, ``similar_threshold``) to also join look-alikes such as
adjacent slices of one patient.

Copies *between* two datasets (:func:`find_cross_duplicates`, used by
``audit --against`` and ``benchmark --test-data``) use the same hash and
threshold, with one difference: the confirmation takes the best correlation
over shifts of -0.5, 0 and +0.5 thumbnail pixel in each direction
(:data:`SUBPIXEL_SHIFTS`). Collections compiled from each other resize images
with their own kernels, crops and pixel-centre conventions, which
misregisters a copy by a fraction of a pixel, and a high-pass map is
sensitive to that. Evidence: ``brain-tumor-yes-no`` holds 115 copies of
``brain-tumor-mri`` images (its README). Without shifts the default
confirmation finds 114; the missed one (``yes/Y36.JPG``, 251x204, a copy of
``Testing/meningioma/Te-me_0036.jpg``, 224x224; pixel correlation 0.985 at
64x64) scores 0.88, and 0.98 after a half-pixel horizontal shift. With shifts
all 115 score >= 0.96 while the best non-copy within the hash radius scores
0.79 (0.67 without shifts). Shifts do not make look-alikes pass: of the 11,509
``alzheimer-mri`` candidate pairs at 0.60-0.90 without shifts (adjacent
slices), none reaches 0.90 with them. Within one dataset the unshifted
confirmation is kept, so the clusters above are unchanged.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

import numpy as np

from brainmri.data.preprocess import resize
from brainmri.errors import ConfigError

logger = logging.getLogger(__name__)

THUMB = 64

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


@dataclass(frozen=True)
class Fingerprint:
    """What duplicate detection needs of one image."""

    pixel_hash: str
    phash: np.uint64
    thumb: np.ndarray  # (THUMB*THUMB,) float16, z-scored structure


def fingerprint(image: np.ndarray) -> Fingerprint:
    """Fingerprint a 2D image (a 3D volume is represented by its middle slice).

    Parameters
    ----------
    image : ndarray, shape (H, W) or (A, B, C)

    Returns
    -------
    Fingerprint
    """
    digest = hashlib.blake2b(str(image.shape).encode(), digest_size=16)
    digest.update(np.ascontiguousarray(image).data)
    pixel_hash = digest.hexdigest()
    plane = image if image.ndim == 2 else np.take(image, image.shape[-1] // 2, axis=-1)
    small = resize(plane, THUMB)
    return Fingerprint(pixel_hash, _phash(resize(small, 32)), _structure_thumb(small))


def _phash(small: np.ndarray) -> np.uint64:
    """DCT perceptual hash: low 8x8 DCT coefficients of a 32x32 thumbnail above their median.

    Written here rather than taken from ``imagehash`` because that package
    re-decodes through Pillow's 8-bit path; this works on any float array.
    """
    from scipy.fft import dctn

    coeffs = dctn(small.astype(np.float64), norm="ortho")[:8, :8].ravel()
    bits = coeffs > np.median(coeffs)
    return np.packbits(bits).view(">u8")[0].astype(np.uint64)


def _structure_thumb(small: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    detail = small - gaussian_filter(small, 2.0)
    std = detail.std()
    detail = (detail - detail.mean()) / std if std > 0 else np.zeros_like(detail)
    return detail.ravel().astype(np.float16)


def hamming(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Bitwise Hamming distance between uint64 hashes.

    >>> hamming(np.array([0b1011], np.uint64), np.array([0b0001], np.uint64)).tolist()
    [2]
    """
    return np.bitwise_count(np.bitwise_xor(a, b)).astype(np.int64)


def candidate_pairs(hashes: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All pairs ``i < j`` whose 64-bit hashes are within ``radius`` bits.

    Multi-index hashing (Norouzi et al., CVPR 2012): the 64 bits are cut
    into four 16-bit chunks. Two hashes within ``radius`` bits differ in at
    most ``radius // 4`` bits on at least one chunk (pigeonhole), so each
    chunk is probed with every key within that sub-radius and only the items
    found are compared. Written by hand because no maintained Python library
    offers a vectorised Hamming-radius join; the cost grows with the number
    of candidates, not with all pairs.

    Returns
    -------
    I, J, distance : ndarray of int64, shape (n_pairs,)
        Sorted by ``(I, J)``.
    """
    from itertools import combinations

    hashes = np.asarray(hashes, dtype=np.uint64)
    n = len(hashes)
    sub = radius // 4
    masks = np.array(
        [sum(1 << b for b in bits) for r in range(sub + 1) for bits in combinations(range(16), r)], dtype=np.int64
    )
    found = []
    for shift in (0, 16, 32, 48):
        keys = ((hashes >> np.uint64(shift)) & np.uint64(0xFFFF)).astype(np.int64)
        order = np.argsort(keys, kind="stable")
        sorted_keys = keys[order]
        for mask in masks:
            probe = keys ^ mask
            lo = np.searchsorted(sorted_keys, probe, side="left")
            hi = np.searchsorted(sorted_keys, probe, side="right")
            counts = hi - lo
            if not counts.any():
                continue
            query = np.repeat(np.arange(n), counts)
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            match = order[np.repeat(lo, counts) + offsets]
            keep = query < match
            i, j = query[keep], match[keep]
            close = hamming(hashes[i], hashes[j]) <= radius
            found.append(i[close] * n + j[close])
    codes = np.unique(np.concatenate(found)) if found else np.zeros(0, dtype=np.int64)
    i, j = codes // n, codes % n
    return i, j, hamming(hashes[i], hashes[j])


def structure_similarity(
    thumbs: np.ndarray, i: np.ndarray, j: np.ndarray, *, partners: np.ndarray | None = None
) -> np.ndarray:
    """Pearson correlation of the structure thumbnails of pairs ``(i, j)``.

    ``i`` indexes ``thumbs`` and ``j`` indexes ``partners`` (default:
    ``thumbs`` too). Pairs are taken per first index, one matrix-vector
    product each: this reads each partner once and is ~10x faster than
    gathering both sides.
    """
    thumbs = np.asarray(thumbs, dtype=np.float32)
    partners = thumbs if partners is None else np.asarray(partners, dtype=np.float32)
    order = np.argsort(i, kind="stable")
    si, sj = i[order], j[order]
    sims = np.empty(len(i), dtype=np.float32)
    starts = np.flatnonzero(np.r_[True, si[1:] != si[:-1]]) if len(si) else np.zeros(0, dtype=int)
    ends = np.r_[starts[1:], len(si)] if len(si) else np.zeros(0, dtype=int)
    for s, e in zip(starts, ends, strict=True):
        sims[s:e] = partners[sj[s:e]] @ thumbs[si[s]]
    out = np.empty_like(sims)
    out[order] = sims / thumbs.shape[1]
    return out


def shifted_thumbs(thumbs: np.ndarray) -> np.ndarray:
    """Every structure thumbnail moved by each pair of :data:`SUBPIXEL_SHIFTS` (bilinear), re-z-scored.

    Parameters
    ----------
    thumbs : ndarray, shape (n, THUMB*THUMB)

    Returns
    -------
    ndarray of float32, shape (len(SUBPIXEL_SHIFTS) ** 2, n, THUMB*THUMB)
    """
    from scipy.ndimage import shift

    planes = np.asarray(thumbs, dtype=np.float32).reshape(-1, THUMB, THUMB)
    out = []
    for dy in SUBPIXEL_SHIFTS:
        for dx in SUBPIXEL_SHIFTS:
            moved = shift(planes, (0, dy, dx), order=1, mode="nearest")
            moved -= moved.mean(axis=(1, 2), keepdims=True)
            std = moved.std(axis=(1, 2), keepdims=True)
            out.append((moved / np.where(std > 0, std, 1)).reshape(len(planes), -1))
    return np.stack(out)


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
        correlation), ``exact`` (bool) of every confirmed pair, exact pairs
        included (one edge per member to its cluster's first image).
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


def find_duplicates(
    fingerprints: list[Fingerprint],
    *,
    radius: int,
    threshold: float,
    progress: Callable[[str], None] | None = None,
) -> DuplicateGraph:
    """Find exact duplicates and confirmed near-duplicates.

    Parameters
    ----------
    fingerprints : list of Fingerprint
    radius : int
        pHash candidate radius in bits.
    threshold : float
        Smallest structure correlation that confirms a pair.

    Returns
    -------
    DuplicateGraph
    """
    n = len(fingerprints)
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        return DuplicateGraph(
            0,
            [],
            {
                "i": empty,
                "j": empty,
                "distance": empty,
                "similarity": empty.astype(np.float32),
                "exact": empty.astype(bool),
            },
            empty,
        )
    pixel_ids = np.unique([f.pixel_hash for f in fingerprints], return_inverse=True)[1].ravel()
    exact_clusters = clusters_from_labels(pixel_ids)
    hashes = np.array([f.phash for f in fingerprints], dtype=np.uint64)
    thumbs = np.stack([f.thumb for f in fingerprints]).astype(np.float32)

    ci, cj, dist = candidate_pairs(hashes, radius)
    not_exact = pixel_ids[ci] != pixel_ids[cj]
    ci, cj, dist = ci[not_exact], cj[not_exact], dist[not_exact]
    if progress:
        progress(f"confirming {len(ci)} candidate pairs")
    sim = structure_similarity(thumbs, ci, cj)
    keep = sim >= threshold
    logger.info(
        "%d candidate pairs within %d bits, %d confirmed at similarity >= %.2f",
        len(ci),
        radius,
        int(keep.sum()),
        threshold,
    )

    ei = np.concatenate([np.full(len(c) - 1, c[0]) for c in exact_clusters] or [np.zeros(0, np.int64)]).astype(np.int64)
    ej = np.concatenate([np.asarray(c[1:]) for c in exact_clusters] or [np.zeros(0, np.int64)]).astype(np.int64)
    pairs = {
        "i": np.concatenate([ei, ci[keep]]),
        "j": np.concatenate([ej, cj[keep]]),
        "distance": np.concatenate([np.zeros(len(ei), np.int64), dist[keep]]),
        "similarity": np.concatenate([np.ones(len(ei), np.float32), sim[keep]]),
        "exact": np.concatenate([np.ones(len(ei), bool), np.zeros(int(keep.sum()), bool)]),
    }
    return DuplicateGraph(n, exact_clusters, pairs, components(n, pairs["i"], pairs["j"]))


def find_cross_duplicates(
    reference: list[Fingerprint],
    other: list[Fingerprint],
    *,
    radius: int,
    threshold: float,
) -> dict[str, np.ndarray]:
    """Exact and confirmed near-duplicates between two sets of images.

    Candidates come from the same pHash radius join as
    :func:`find_duplicates`, run over both sets and restricted to pairs
    across them; a candidate is confirmed by the best structure correlation
    over :data:`SUBPIXEL_SHIFTS` (see the module docstring for why).

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
        ``distance`` (pHash bits), ``similarity`` (1.0 for exact copies) and
        ``exact`` (identical decoded pixels) of every confirmed pair, sorted
        by ``(i, j)``.
    """
    n = len(reference)
    both = [*reference, *other]
    hashes = np.array([f.phash for f in both], dtype=np.uint64)
    ci, cj, dist = candidate_pairs(hashes, radius)
    across = (ci < n) & (cj >= n)
    ci, cj, dist = ci[across], cj[across] - n, dist[across]
    pixel_ids = np.unique([f.pixel_hash for f in both], return_inverse=True)[1].ravel() if both else np.zeros(0, int)
    exact = pixel_ids[ci] == pixel_ids[cj + n]
    sim = np.ones(len(ci), dtype=np.float32)
    if len(other) and (~exact).any():
        thumbs = np.stack([f.thumb for f in reference]).astype(np.float32)
        moved = shifted_thumbs(np.stack([f.thumb for f in other]))
        a, b = ci[~exact], cj[~exact]
        sim[~exact] = np.max([structure_similarity(thumbs, a, b, partners=m) for m in moved], axis=0)
    keep = exact | (sim >= threshold)
    logger.info(
        "%d candidate pairs across the two sets within %d bits, %d confirmed (%d exact)",
        len(ci),
        radius,
        int(keep.sum()),
        int(exact.sum()),
    )
    return {"i": ci[keep], "j": cj[keep], "distance": dist[keep], "similarity": sim[keep], "exact": exact[keep]}
