"""Brute-force truth for near-duplicate detection, and how brainmri's audit measures up to it (issue 22).

Usage: .venv/bin/python bench/duplicate_truth.py [DATA] [--size 128] [--cache DIR] [--json OUT] [--no-brainmri]
Default DATA: ../shared/datasets/brain-tumor-mri; --cache defaults to /tmp/brainmri-dup-truth.

The truth uses no brainmri code: brainmri is imported only to run what is measured, so the ruler does not
share the product's mistakes. Every image (``<class>/...`` or ``<split>/<class>/...`` with the split folder
names brainmri understands; hidden names skipped) is decoded with Pillow to grayscale and seen in two views:

* *crop*: the frame cut to the bounding box of its pixels above 10% of the image's maximum. The black background
  of brain-tumor-mri's JPEGs stays below 2% of the maximum in the median image (10% in nine of ten), while scalp and
  tissue lie well above it, so the box is the head; a copy padded, cropped or resized differently still lands on
  the same box. A box under 8 pixels a side (a blank image) falls back to the full frame;
* *full*: the whole frame, for copies whose annotations or bright borders move the box.

Each view is resized to SIZE x SIZE (Pillow bilinear, which averages when it shrinks), centred and scaled to
unit norm, so that a dot product is the Pearson correlation ``r``. For every pair of images ``r`` is the best
over the 8 symmetries of the square (identity, mirror (left-right), flip (up-down), rot180, transpose, rot90,
rot270 (counter-clockwise, as ``np.rot90``), antitranspose) and over both views, and ``r_identity`` the best
without a symmetry. Every pair is compared, as float32 matrix products: a strip of BLOCK images at a time,
turned by each symmetry, against every later image (``T_g(X[strip]) @ X[later].T``). The products run on the
images' left-right symmetric and antisymmetric halves, which give a symmetry and its mirror image from one
full-length product (:func:`mirror_parts`), half the work; each run checks them against the 16 direct products
on 64 images. Only pairs at ``r >= 0.90`` (and each image's best ``r`` to any other) are kept. A pair ``(i, j)``,
``i < j`` in path order, has symmetry ``g`` when image ``j`` looks like ``g`` applied to image ``i``; a
held-out/training pair is oriented as held-out = ``g``(training). Images with the same decoded grayscale pixels
are flagged as identical. A *copy* is a pair at ``r >= 0.95`` or pixel-identical; one *only under a symmetry*
has ``r_identity < 0.95``. The truth is cached in --cache (an .npz keyed by the dataset's path and file
listing, SIZE and :data:`VERSION`), so a rerun only measures brainmri.

Then ``brainmri audit DATA --out TMP -q`` runs in a subprocess (wall time; peak resident memory of its largest
process, read by a small wrapper process) and ``brainmri.data.audit.analyse`` in this process (wall time). Its
items are matched to the truth's by relative path, and measured:

* recall of copy pairs: found when brainmri puts both images in one duplicate cluster (``graph.cluster_of``),
  overall, for held-out/training pairs, with and without a symmetry, per band of ``r`` and per symmetry kind
  (also: found as a direct pair); pairs with an image brainmri did not read are left out and counted;
* leaking held-out images: those of ``cross_split_leaks`` against the held-out images the truth finds copying
  a training image (per class and kind); a leak is confirmed when its held-out image copies some training
  image, and the pair brainmri reports for it (held-out image, closest training image) is checked too;
* precision of brainmri's non-identical pairs: the share whose truth ``r`` (any symmetry, either view) is at
  least 0.90, and at least 0.95; ``r`` of pairs below the stored ones is recomputed from their images
  (:func:`pair_correlations`: the 16 direct products);
* up to 10 missed copy pairs, unconfirmed brainmri pairs and missed leaks (a fixed random sample), to look at.

Results: a table on stdout, progress on stderr, and everything in --json. The brainmri measured is the one
Python imports: set PYTHONPATH to an exported tree (``git archive HEAD src | tar -x -C DIR``) to measure a
given commit while the working tree changes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

ROOT = Path(__file__).resolve().parents[1]
STARTED = time.perf_counter()

#: Bump when the truth's definition changes: older cache files are then ignored.
VERSION = 2
#: Pairs at or above this correlation are stored (and confirm a brainmri pair).
KEEP_R = 0.90
#: Pairs at or above this correlation are copies.
COPY_R = 0.95
#: Share of the image's maximum above which a pixel belongs to the crop view's bounding box.
FOREGROUND = 0.10
#: Images per strip of the exhaustive search (a 1024 x n float32 strip per view and symmetry).
BLOCK = 1024
#: Missed and unconfirmed pairs shown.
SAMPLE = 10

# The listing below repeats brainmri.data.dataset's split names on purpose: the ruler reads the data without
# brainmri's code, so that a bug there cannot hide in both.
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}
HELD_OUT = ("test", "val")
VIEWS = ("crop", "full")

#: The 8 symmetries of the square, on a stack of images of shape (n, side, side).
SYMMETRIES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": lambda a: a,
    "mirror": lambda a: a[:, :, ::-1],
    "flip": lambda a: a[:, ::-1, :],
    "rot180": lambda a: a[:, ::-1, ::-1],
    "transpose": lambda a: a.transpose(0, 2, 1),
    "rot90": lambda a: np.rot90(a, 1, axes=(1, 2)),
    "rot270": lambda a: np.rot90(a, 3, axes=(1, 2)),
    "antitranspose": lambda a: a.transpose(0, 2, 1)[:, ::-1, ::-1],
}
NAMES = tuple(SYMMETRIES)
#: The symmetries as quarter turns ``np.rot90(x, k)``, k = 0..3, and as those turns followed by the left-right mirror.
ROTATED = ("identity", "rot90", "rot180", "rot270")
MIRRORED = ("mirror", "antitranspose", "flip", "transpose")
SQRT_HALF = np.float32(np.sqrt(0.5))
#: Symmetries that are not their own inverse.
INVERSE = {"rot90": "rot270", "rot270": "rot90"}
#: Kinds of copy, in the order tables show them.
KINDS = ("identical", *NAMES)
#: Bands of copy pairs by correlation, for recall per band: the looser copies are where look-alikes hide.
R_BANDS = ((COPY_R, 0.99, "r 0.95-0.99"), (0.99, 0.999, "r 0.99-0.999"), (0.999, np.inf, "r >= 0.999"))
HISTOGRAM = ((-1.0, "< 0.80"), (0.80, "0.80-0.90"), (0.90, "0.90-0.95"), (0.95, "0.95-0.99"), (0.99, ">= 0.99"))


def say(message: str) -> None:
    """Print one progress line on stderr, after the seconds since the start."""
    print(f"{time.perf_counter() - STARTED:6.0f} s  {message}", file=sys.stderr, flush=True)


@dataclass
class Truth:
    """Every image of a dataset and its best-matching pairs.

    Attributes
    ----------
    rels, labels, splits, digests : ndarray of str, shape (n,)
        Path relative to the dataset root, class, split (``""`` when none) and pixel digest of each readable image,
        sorted by path.
    pairs : dict of ndarray
        ``i``, ``j`` (int64, ``i < j``), ``r`` (float32), ``code`` (int8: ``8 * view + symmetry``) and
        ``r_identity`` (float32: the best over views without a symmetry) of every pair with ``r >= KEEP_R``,
        sorted by ``(i, j)``.
    best_r, best_to : ndarray, shape (n,)
        Each image's best correlation to any other image (float32) and that image's index (int64).
    unreadable : list of str
        ``path: reason`` of each file that could not be decoded.
    meta : dict
        ``data``, ``size``, ``version``, ``seconds`` and ``peak_rss_mb`` of the run that computed it.
    """

    rels: np.ndarray
    labels: np.ndarray
    splits: np.ndarray
    digests: np.ndarray
    pairs: dict[str, np.ndarray]
    best_r: np.ndarray
    best_to: np.ndarray
    unreadable: list[str]
    meta: dict

    def save(self, path: Path) -> None:
        """Write the truth to ``path`` (.npz), complete or not at all."""
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(path.name + ".partial")
        with open(partial, "wb") as fh:
            np.savez(
                fh,
                rels=self.rels,
                labels=self.labels,
                splits=self.splits,
                digests=self.digests,
                best_r=self.best_r,
                best_to=self.best_to,
                unreadable=np.array(self.unreadable, dtype=str),
                meta=np.array(json.dumps(self.meta)),
                **{f"pair_{k}": v for k, v in self.pairs.items()},
            )
        partial.replace(path)

    @classmethod
    def load(cls, path: Path) -> Truth:
        """Read a truth written by :meth:`save`."""
        with np.load(path, allow_pickle=False) as z:
            pairs = {k[len("pair_") :]: z[k] for k in z.files if k.startswith("pair_")}
            return cls(
                z["rels"],
                z["labels"],
                z["splits"],
                z["digests"],
                pairs,
                z["best_r"],
                z["best_to"],
                z["unreadable"].tolist(),
                json.loads(str(z["meta"])),
            )


def list_images(root: Path) -> list[tuple[str, str, str]]:
    """``(relative path, class, split)`` of every image file below ``root``, sorted by path.

    A file belongs to the class folder at the top of ``root``, or below a split folder (``Training``, ``test``,
    ...); hidden names and files outside a class folder are skipped.
    """
    rows = []
    for path in root.rglob("*"):
        parts = path.relative_to(root).parts
        if any(p.startswith(".") for p in parts) or not path.name.lower().endswith(SUFFIXES) or not path.is_file():
            continue
        split = SPLIT_FOLDERS.get(parts[0].lower(), "")
        inside = parts[1:] if split else parts
        if len(inside) >= 2:
            rows.append(("/".join(parts), inside[0], split))
    return sorted(rows)


def unit_vector(pixels: np.ndarray, size: int) -> np.ndarray:
    """``pixels`` resized to ``size`` x ``size`` (bilinear), centred and scaled to unit norm.

    Returns
    -------
    ndarray of float32, shape (size * size,)
        All zeros for a constant image.
    """
    image = Image.fromarray(np.ascontiguousarray(pixels, dtype=np.float32))
    small = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.float64).ravel()
    small -= small.mean()
    norm = np.sqrt(np.square(small).sum())  # not np.linalg.norm: a BLAS call per image crawls on a busy machine
    return (small / norm if norm > 0 else small).astype(np.float32)


def image_views(path: Path, size: int) -> tuple[np.ndarray, str]:
    """The crop and full views of one image, and the digest of its decoded grayscale pixels.

    Returns
    -------
    views : ndarray of float32, shape (2, size * size)
        :func:`unit_vector` of the crop view, then of the full frame.
    digest : str
    """
    with Image.open(path) as image:
        gray = image if image.mode in ("L", "I", "I;16", "F") else image.convert("L")
        pixels = np.asarray(gray, dtype=np.float32)
    digest = hashlib.blake2b(str(pixels.shape).encode() + pixels.tobytes(), digest_size=16).hexdigest()
    mask = pixels > FOREGROUND * pixels.max()
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    crop = pixels
    if len(rows) and min(rows[-1] - rows[0], cols[-1] - cols[0]) >= 7:
        crop = pixels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return np.stack([unit_vector(crop, size), unit_vector(pixels, size)]), digest


def load_views(root: Path, rels: list[str], size: int) -> tuple[np.ndarray, list[str], dict[int, str]]:
    """:func:`image_views` of every file, read by 4 threads (Pillow decodes and resizes without the GIL).

    Returns
    -------
    views : ndarray of float32, shape (2, len(rels), size * size)
        Zeros for unreadable files.
    digests : list of str
    unreadable : dict
        ``{index: "path: reason"}``.
    """
    n = len(rels)
    views = np.zeros((2, n, size * size), dtype=np.float32)
    digests = [""] * n
    unreadable: dict[int, str] = {}

    def read(k: int) -> None:
        try:
            views[:, k], digests[k] = image_views(root / rels[k], size)
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            unreadable[k] = f"{rels[k]}: {exc}"

    with ThreadPoolExecutor(max_workers=4) as pool:
        for done, _ in enumerate(pool.map(read, range(n)), 1):
            if done % 1000 == 0 or done == n and n > 1000:
                say(f"read {done}/{n} images")
    return views, digests, unreadable


def mirror_parts(images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The left-right symmetric and antisymmetric parts of images, on their left half.

    With ``s, a = mirror_parts(...)`` of images ``u`` and ``y``: ``u . y = s(u) . s(y) + a(u) . a(y)`` and
    ``mirror(u) . y = s(u) . s(y) - a(u) . a(y)``, so one pair of half-length products gives both correlations.

    Parameters
    ----------
    images : ndarray, shape (n, side, side), side even

    Returns
    -------
    s, a : ndarray of float32, shape (n, side * side // 2)
    """
    n, half = len(images), images.shape[2] // 2
    left, right = images[:, :, :half], images[:, :, ::-1][:, :, :half]
    return ((left + right) * SQRT_HALF).reshape(n, -1), ((left - right) * SQRT_HALF).reshape(n, -1)


def join_mirror(s: np.ndarray, a: np.ndarray) -> np.ndarray:
    """The images of :func:`mirror_parts`, shape (n, side, side)."""
    half = int(round(np.sqrt(s.shape[1] / 2)))
    left = ((s + a) * SQRT_HALF).reshape(len(s), 2 * half, half)
    right = ((s - a) * SQRT_HALF).reshape(len(s), 2 * half, half)
    return np.concatenate([left, right[:, :, ::-1]], axis=2)


def to_parts(views: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`mirror_parts` of each view of ``views`` (2, n, side * side), a block of images at a time."""
    _, n, d = views.shape
    side = int(round(np.sqrt(d)))
    parts = []
    for view in views:
        s, a = np.empty((n, d // 2), dtype=np.float32), np.empty((n, d // 2), dtype=np.float32)
        for start in range(0, n, BLOCK):
            s[start : start + BLOCK], a[start : start + BLOCK] = mirror_parts(
                view[start : start + BLOCK].reshape(-1, side, side)
            )
        parts.append((s, a))
    return parts


def strip_best(
    parts: list[tuple[np.ndarray, np.ndarray]], start: int, stop: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Best correlation of images ``start:stop`` with every image from ``start`` on, over views and symmetries.

    Each of the 8 symmetries is a rotation ``np.rot90(x, k)`` (:data:`ROTATED`), optionally followed by the
    left-right mirror (:data:`MIRRORED`); :func:`mirror_parts` gives a rotation and its mirror from two
    half-length products, so a view costs 4 full-length products instead of 8.

    Parameters
    ----------
    parts : list of (s, a)
        :func:`to_parts` of the crop and full views.

    Returns
    -------
    r : ndarray of float32, shape (stop - start, n - start)
        ``r[a, b]``: the best over views ``v`` and symmetries ``g`` of ``T_g(X_v[start + a]) . X_v[start + b]``.
    code : ndarray of int8, same shape
        ``8 * v + g`` (``g`` indexes :data:`NAMES`) of that best.
    identity : ndarray of float32, same shape
        The best over views without a symmetry.
    """
    best = code = identity = None
    for v, (sym, anti) in enumerate(parts):
        rows = join_mirror(sym[start:stop], anti[start:stop])
        for k in range(4):
            s, a = mirror_parts(np.rot90(rows, k, axes=(1, 2)))
            plain = s @ sym[start:].T
            cross = a @ anti[start:].T
            mirrored = plain - cross
            plain += cross
            if k == 0:
                identity = plain.copy() if identity is None else np.maximum(identity, plain)
            for name, r in ((ROTATED[k], plain), (MIRRORED[k], mirrored)):
                if best is None:
                    best, code = r, np.full(r.shape, NAMES.index(name), dtype=np.int8)
                    continue
                code[r > best] = 8 * v + NAMES.index(name)
                np.maximum(best, r, out=best)
    return best, code, identity


def check_products(views: np.ndarray, n_check: int = 64) -> float:
    """Largest difference between :func:`strip_best` and the 16 direct products ``T_g(X) @ X.T``, on a sample.

    Parameters
    ----------
    views : ndarray of float32, shape (2, n, side * side)
    n_check : int
        Images drawn at random (seed 0); every pair among them is compared.
    """
    pick = np.sort(np.random.default_rng(0).permutation(views.shape[1])[:n_check])
    sub = views[:, pick]
    side = int(round(np.sqrt(views.shape[2])))
    direct = [
        np.ascontiguousarray(transform(view.reshape(-1, side, side))).reshape(len(pick), -1) @ view.T
        for view in sub
        for transform in SYMMETRIES.values()
    ]
    return float(np.abs(np.max(direct, axis=0) - strip_best(to_parts(sub), 0, len(pick))[0]).max())


def search_pairs(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Every pair with a best correlation of at least :data:`KEEP_R`, and each image's best match.

    Parameters
    ----------
    parts : list of (s, a)
        :func:`to_parts` of the unit vectors (:func:`unit_vector`) of the crop and full views.

    Returns
    -------
    pairs : dict of ndarray
        ``i``, ``j``, ``r``, ``code``, ``r_identity`` (see :class:`Truth`).
    best_r, best_to : ndarray, shape (n,)
    """
    n = len(parts[0][0])
    best_r = np.full(n, -np.inf, dtype=np.float32)
    best_to = np.full(n, -1, dtype=np.int64)
    found = []
    for start in range(0, n, BLOCK):
        stop = min(start + BLOCK, n)
        r, code, identity = strip_best(parts, start, stop)
        r[np.tril_indices(stop - start, m=n - start)] = -np.inf  # each pair once, i < j
        for axis, who in ((1, np.arange(start, stop)), (0, np.arange(start, n))):
            partner = r.argmax(axis=axis)
            value = np.take_along_axis(r, np.expand_dims(partner, axis), axis).squeeze(axis)
            better = value > best_r[who]
            best_r[who[better]] = value[better]
            best_to[who[better]] = partner[better] + start
        a, b = np.nonzero(r >= KEEP_R)
        found.append((a + start, b + start, r[a, b], code[a, b], identity[a, b]))
        say(f"compared images {start}-{stop - 1} with all later ones: {sum(len(f[0]) for f in found)} pairs so far")
    columns = [np.concatenate(c) for c in zip(*found, strict=True)] if found else [np.zeros(0)] * 5
    pairs = dict(zip(("i", "j", "r", "code", "r_identity"), columns, strict=True))
    pairs |= {"i": pairs["i"].astype(np.int64), "j": pairs["j"].astype(np.int64), "code": pairs["code"].astype(np.int8)}
    return pairs, best_r, best_to


def compute_truth(data: Path, size: int) -> Truth:
    """List, read and compare every image of ``data`` (the exhaustive search; minutes)."""
    start = time.perf_counter()
    rows = list_images(data)
    say(f"{data}: {len(rows)} images; reading them at {size}x{size}")
    rels = [r[0] for r in rows]
    views, digests, unreadable = load_views(data, rels, size)
    if unreadable:
        keep = np.array([k not in unreadable for k in range(len(rows))])
        views, rows, digests = (
            views[:, keep],
            [r for r, k in zip(rows, keep, strict=True) if k],
            list(np.array(digests)[keep]),
        )
    say(f"comparing {len(rows)} images pairwise over 2 views x 8 symmetries")
    check = check_products(views)
    if not check < 1e-4:
        raise RuntimeError(f"the mirror-part products differ from the direct ones by {check}: a bug in this script")
    parts = to_parts(views)
    del views  # the parts hold the same numbers
    pairs, best_r, best_to = search_pairs(parts)
    meta = {
        "data": str(data),
        "size": size,
        "version": VERSION,
        "seconds": round(time.perf_counter() - start, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "check_max_abs_diff": check,
    }
    columns = [np.array(c, dtype=str) for c in zip(*rows, strict=True)] if rows else [np.zeros(0, str)] * 3
    return Truth(*columns, np.array(digests, dtype=str), pairs, best_r, best_to, sorted(unreadable.values()), meta)


def cache_path(cache: Path, data: Path, size: int) -> Path:
    """The cache file of ``data`` at ``size``: its name changes with the path, the file listing and :data:`VERSION`."""
    listing = hashlib.sha256(f"{data}|{size}|{VERSION}".encode())
    for rel, _, _ in list_images(data):
        stat = (data / rel).stat()
        listing.update(f"{rel}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
    return cache / f"{data.name}-{size}-{listing.hexdigest()[:16]}.npz"


def get_truth(data: Path, size: int, cache: Path) -> tuple[Truth, bool]:
    """The truth of ``data`` from the cache, or computed (and cached); True when it came from the cache."""
    path = cache_path(cache, data, size)
    if path.exists():
        say(f"truth from {path}")
        return Truth.load(path), True
    truth = compute_truth(data, size)
    truth.save(path)
    say(f"truth in {truth.meta['seconds']} s, peak memory {truth.meta['peak_rss_mb']} MB; cached in {path}")
    return truth, False


def identical_groups(digests: np.ndarray) -> list[np.ndarray]:
    """Indices of the images sharing each repeated pixel digest."""
    ids = np.unique(digests, return_inverse=True)[1].ravel()
    order = np.argsort(ids, kind="stable")
    groups = np.split(order, np.flatnonzero(np.diff(ids[order])) + 1)
    return [g for g in groups if len(g) > 1]


def copy_pairs(truth: Truth) -> dict[str, np.ndarray]:
    """Every copy pair: ``r >= COPY_R`` or pixel-identical.

    Returns
    -------
    dict of ndarray
        ``i``, ``j`` (``i < j``), ``r``, ``kind`` (``"identical"`` or a symmetry name), ``view`` and ``plain``
        (identical, or a copy without a symmetry too: ``r_identity >= COPY_R``).
    """
    p, n = truth.pairs, len(truth.rels)
    same = truth.digests[p["i"]] == truth.digests[p["j"]]
    keep = same | (p["r"] >= COPY_R)
    pairs = {k: v[keep] for k, v in p.items()} | {"same": same[keep]}
    extra = np.array([pair for g in identical_groups(truth.digests) for pair in combinations(sorted(g), 2)])
    if len(extra):  # identical images without a correlation (constant images)
        extra = extra[~np.isin(extra[:, 0] * n + extra[:, 1], pairs["i"] * n + pairs["j"])]
        ones = np.ones(len(extra), dtype=np.float32)
        add = {"i": extra[:, 0], "j": extra[:, 1], "r": ones, "code": np.full(len(extra), 8), "r_identity": ones}
        pairs = {k: np.r_[v, add.get(k, np.ones(len(extra), dtype=bool))] for k, v in pairs.items()}
    return {
        "i": pairs["i"],
        "j": pairs["j"],
        "r": pairs["r"],
        "kind": np.where(pairs["same"], "identical", np.array(NAMES)[pairs["code"] % 8]),
        "view": np.array(VIEWS)[pairs["code"] // 8],
        "plain": pairs["same"] | (pairs["r_identity"] >= COPY_R),
    }


def held_train(splits: np.ndarray, i: np.ndarray, j: np.ndarray, *, first: bool | None = None) -> np.ndarray:
    """Which pairs ``(i, j)`` join a held-out image and a training image (``first``: the held-out one is ``i``)."""
    i_held = np.isin(splits[i], HELD_OUT) & (splits[j] == "train")
    j_held = (splits[i] == "train") & np.isin(splits[j], HELD_OUT)
    return {True: i_held, False: j_held, None: i_held | j_held}[first]


def held_out_copies(truth: Truth, copies: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each held-out image's best copy in training: identical first, then the highest ``r``.

    Returns
    -------
    dict of ndarray
        ``held``, ``train`` (indices), ``r``, ``kind`` (held = kind(train)) and ``view``, one row per held-out
        image that copies a training image, and ``plain``: whether it copies one without a symmetry.
    """
    i, j = copies["i"], copies["j"]
    held_first = held_train(truth.splits, i, j, first=True)
    held_second = held_train(truth.splits, i, j, first=False)
    kind = copies["kind"]
    rows = {
        "held": np.r_[i[held_first], j[held_second]],
        "train": np.r_[j[held_first], i[held_second]],
        "r": np.r_[copies["r"][held_first], copies["r"][held_second]],
        "kind": np.r_[[INVERSE.get(k, k) for k in kind[held_first]], kind[held_second]].astype(str),
        "view": np.r_[copies["view"][held_first], copies["view"][held_second]].astype(str),
    }
    plain = rows["held"][np.r_[copies["plain"][held_first], copies["plain"][held_second]]]
    order = np.lexsort((-rows["r"], rows["kind"] != "identical", rows["held"]))
    first = order[np.diff(rows["held"][order], prepend=-1) != 0]
    return {k: v[first] for k, v in rows.items()} | {"plain": np.isin(rows["held"][first], plain)}


def truth_report(truth: Truth, copies: dict[str, np.ndarray], from_cache: bool) -> dict:
    """Counts of the truth: images, stored pairs, copies per kind, view and class, copy clusters, leaks."""
    n, labels = len(truth.rels), truth.labels
    i, j = copies["i"], copies["j"]
    in_copy = np.zeros(n, dtype=bool)
    in_copy[i] = in_copy[j] = True
    clusters = connected_components(coo_matrix((np.ones(len(i)), (i, j)), shape=(n, n)), directed=False)[1]
    sizes = np.bincount(clusters) if n else np.zeros(0, int)
    edges = [e for e, _ in HISTOGRAM] + [np.inf]
    report = {
        "n_images": n,
        "n_unreadable": len(truth.unreadable),
        "unreadable": truth.unreadable,
        "images": count_by(truth.splits, labels),
        "pairs_at_keep_r": len(truth.pairs["i"]),
        "copy_pairs": len(i),
        "copy_pairs_per_kind": dict(Counter(copies["kind"].tolist())),
        "copy_pairs_only_under_a_symmetry": int((~copies["plain"]).sum()),
        "copy_pairs_per_r_band": {
            name: int(((copies["r"] >= lo) & (copies["r"] < hi)).sum()) for lo, hi, name in R_BANDS
        },
        "copy_pairs_per_view": dict(Counter(copies["view"][copies["kind"] != "identical"].tolist())),
        "copy_pairs_across_classes": int((labels[i] != labels[j]).sum()),
        "images_in_a_copy_pair": {
            c: {"with_copy": int(in_copy[labels == c].sum()), "of": int((labels == c).sum())}
            for c in sorted(set(labels.tolist()))
        },
        "copy_clusters": int((sizes > 1).sum()),
        "largest_copy_cluster": int(sizes.max(initial=1)),
        "best_r_histogram": {
            name: int(((truth.best_r >= lo) & (truth.best_r < hi)).sum())
            for (lo, name), hi in zip(HISTOGRAM, edges[1:], strict=True)
        },
        "seconds": truth.meta["seconds"],
        "peak_rss_mb": truth.meta["peak_rss_mb"],
        "from_cache": from_cache,
    }
    if (truth.splits == "train").any() and np.isin(truth.splits, HELD_OUT).any():
        report["held_out"] = held_out_report(truth, copies, held_out_copies(truth, copies), in_copy)
    return report


def count_by(splits: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, int]]:
    """``{split or "all": {class: n}}``."""
    counts = Counter(zip((s or "all" for s in splits.tolist()), labels.tolist(), strict=True))
    out: dict[str, dict[str, int]] = {}
    for (split, label), k in sorted(counts.items()):
        out.setdefault(split, {})[label] = k
    return out


def held_out_report(truth: Truth, copies: dict, held: dict[str, np.ndarray], in_copy: np.ndarray) -> dict:
    """Held-out images that copy a training image, per class and kind; those that copy nothing."""
    is_held = np.isin(truth.splits, HELD_OUT)
    copying = np.zeros(len(truth.rels), dtype=bool)
    copying[held["held"]] = True
    kind_of = dict(zip(held["held"].tolist(), held["kind"].tolist(), strict=True))
    symmetric_only = np.zeros(len(truth.rels), dtype=bool)
    symmetric_only[held["held"][~held["plain"]]] = True
    per_class = {}
    for c in sorted(set(truth.labels[is_held].tolist())):
        mine = is_held & (truth.labels == c)
        kinds = Counter(kind_of[k] for k in np.flatnonzero(mine & copying))
        per_class[c] = {
            "of": int(mine.sum()),
            "copying_train": int((mine & copying).sum()),
            "only_under_a_symmetry": int((mine & symmetric_only).sum()),
            "copy_nothing_in_train": int((mine & ~copying).sum()),
            "copy_nothing_at_all": int((mine & ~in_copy).sum()),
            "kinds": {k: kinds[k] for k in KINDS if kinds[k]},
        }
    return {
        "n_held_out": int(is_held.sum()),
        "copying_train": int(len(held["held"])),
        "only_under_a_symmetry": int(symmetric_only.sum()),
        "copy_nothing_in_train": int((is_held & ~copying).sum()),
        "copy_nothing_at_all": int((is_held & ~in_copy).sum()),
        "copying_train_per_kind": {k: v for k in KINDS if (v := int((held["kind"] == k).sum()))},
        "copying_train_per_view": dict(Counter(held["view"][held["kind"] != "identical"].tolist())),
        "copy_pairs_held_out_train": int(held_train(truth.splits, copies["i"], copies["j"]).sum()),
        "per_class": per_class,
    }


def ratio(part: int, whole: int) -> float | None:
    """``part / whole`` to 4 decimals, None when ``whole`` is 0."""
    return round(part / whole, 4) if whole else None


def pair_correlations(
    data: Path, rels: np.ndarray, i: np.ndarray, j: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Best correlation and its code (as in :func:`strip_best`) of arbitrary pairs, from their images.

    Only the images of the pairs are read, so this is cheap for a few thousand pairs.
    """
    best = np.full(len(i), -np.inf, dtype=np.float32)
    code = np.zeros(len(i), dtype=np.int8)
    if not len(i):
        return best, code
    needed, inverse = np.unique(np.r_[i, j], return_inverse=True)
    views = load_views(data, rels[needed].tolist(), size)[0]
    a, b = inverse[: len(i)], inverse[len(i) :]
    for start in range(0, len(i), BLOCK):
        s = slice(start, start + BLOCK)
        for v, view in enumerate(views):
            rows = view[a[s]].reshape(-1, size, size)
            partners = view[b[s]]
            for g, transform in enumerate(SYMMETRIES.values()):
                r = np.einsum("kd,kd->k", np.ascontiguousarray(transform(rows)).reshape(len(partners), -1), partners)
                better = r > best[s]
                best[s][better] = r[better]
                code[s][better] = 8 * v + g
    return best, code


def truth_r(truth: Truth, i: np.ndarray, j: np.ndarray, data: Path) -> tuple[np.ndarray, np.ndarray]:
    """Truth correlation and code of pairs ``i < j``: stored ones looked up, the others (below KEEP_R) recomputed."""
    n = len(truth.rels)
    keys = truth.pairs["i"] * n + truth.pairs["j"]
    order = np.argsort(keys)
    query = i * n + j
    r = np.full(len(i), np.nan, dtype=np.float32)
    code = np.zeros(len(i), dtype=np.int8)
    hit = np.zeros(len(i), dtype=bool)
    if len(keys):
        pos = order[np.minimum(np.searchsorted(keys[order], query), len(keys) - 1)]
        hit = keys[pos] == query
        r[hit], code[hit] = truth.pairs["r"][pos[hit]], truth.pairs["code"][pos[hit]]
    if (~hit).any():
        say(f"recomputing r of {int((~hit).sum())} brainmri pairs below {KEEP_R} from their images")
        r[~hit], code[~hit] = pair_correlations(data, truth.rels, i[~hit], j[~hit], truth.meta["size"])
    return r, code


#: Runs a command and writes the peak resident memory of its largest process (kB) to the file named first. A small
#: process of its own, because a child forked from this one inherits this one's high-water mark on Linux.
PEAK_WRAPPER = (
    "import pathlib, resource, subprocess, sys; done = subprocess.run(sys.argv[2:]); "
    "pathlib.Path(sys.argv[1]).write_text(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)); "
    "sys.exit(done.returncode)"
)


def run_cli(data: Path) -> dict:
    """``brainmri audit DATA --out TMP -q`` in a subprocess: wall time, peak memory and what audit.json says."""
    command = [str(Path(sys.executable).with_name("brainmri")), "audit", str(data), "--out", "TMP", "-q"]
    with tempfile.TemporaryDirectory() as tmp:
        out, peak = Path(tmp) / "audit", Path(tmp) / "peak"
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", PEAK_WRAPPER, str(peak), *command[:-2], str(out), "-q"],
            capture_output=True,
            text=True,
        )
        seconds = time.perf_counter() - start
        report = json.loads((out / "audit.json").read_text(encoding="utf-8")) if (out / "audit.json").exists() else {}
        peak_kb = int(peak.read_text()) if peak.exists() else 0
    if done.returncode:
        say(f"brainmri audit exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    return {
        "command": " ".join(command),
        "returncode": done.returncode,
        "seconds": round(seconds, 1),
        # The largest process among brainmri and the children it waited for (not their sum).
        "peak_rss_mb_largest_process": round(peak_kb / 1024),
        "cross_split_leaks": len(report.get("cross_split_leaks", [])),
        "near_duplicate_clusters": len(report.get("near_duplicate_clusters", [])),
        "exact_duplicate_clusters": len(report.get("exact_duplicate_clusters", [])),
    }


def run_analyse(data: Path) -> tuple[object, list[dict], dict]:
    """``brainmri.data.audit.analyse`` of ``data`` in this process (timed), and its cross-split leaks."""
    # brainmri is imported here only: the truth never uses it, and --no-brainmri runs without it installed.
    from brainmri.data.audit import analyse, cross_split_leaks
    from brainmri.data.dataset import load_dataset
    from brainmri.version import __version__

    start = time.perf_counter()
    analysis = analyse(load_dataset(data))
    seconds = time.perf_counter() - start
    module = sys.modules["brainmri.data.audit"].__file__
    return (
        analysis,
        cross_split_leaks(analysis),
        {"version": __version__, "module": module, "seconds": round(seconds, 1)},
    )


def brainmri_pairs(analysis, to_truth: np.ndarray) -> dict[str, np.ndarray]:
    """brainmri's confirmed pairs in truth indices (``i < j``); ``kind`` is ``"-"`` when brainmri gives none."""
    p = analysis.graph.pairs
    a, b = to_truth[p["i"]], to_truth[p["j"]]
    ok = (a >= 0) & (b >= 0)
    kind = np.asarray(p["kind"], dtype=str) if "kind" in p else np.full(len(a), "-")
    return {
        "i": np.minimum(a, b)[ok],
        "j": np.maximum(a, b)[ok],
        "similarity": np.asarray(p["similarity"], dtype=np.float32)[ok],
        "exact": np.asarray(p["exact"], dtype=bool)[ok],
        "kind": kind[ok],
    }


def plain_value(value):
    """A numpy scalar as a JSON-ready Python value; floats to 4 decimals."""
    value = value.item() if hasattr(value, "item") else value
    return round(value, 4) if isinstance(value, float) else value


def pair_rows(truth: Truth, i: np.ndarray, j: np.ndarray, **columns: np.ndarray) -> list[dict]:
    """Up to :data:`SAMPLE` pairs drawn at random (seed 0), as dicts with paths and classes, highest ``r`` first."""
    pick = np.random.default_rng(0).permutation(len(i))[:SAMPLE]
    rows = [
        {
            "path_i": str(truth.rels[i[k]]),
            "path_j": str(truth.rels[j[k]]),
            "labels": f"{truth.labels[i[k]]}/{truth.labels[j[k]]}",
            **{name: plain_value(value[k]) for name, value in columns.items()},
        }
        for k in pick
    ]
    return sorted(rows, key=lambda row: -row.get("r", 0))


def recall_report(truth: Truth, copies: dict, cluster: np.ndarray, pairs: dict) -> tuple[dict, list[dict]]:
    """Share of the truth's copy pairs whose two images brainmri puts in one cluster, and a sample of misses.

    Pairs with an image brainmri did not read (it refuses constant images, for one) are left out and counted.

    Parameters
    ----------
    cluster : ndarray of int, shape (n,)
        brainmri's cluster of each truth image (-1 for images brainmri did not read).
    pairs : dict
        :func:`brainmri_pairs`.
    """
    n, i, j = len(truth.rels), copies["i"], copies["j"]
    read = (cluster[i] >= 0) & (cluster[j] >= 0)
    found = read & (cluster[i] == cluster[j])
    direct = np.isin(i * n + j, pairs["i"] * n + pairs["j"])
    groups = {
        "all": read,
        "held-out/train": read & held_train(truth.splits, i, j),
        "without a symmetry": read & copies["plain"],
        "only under a symmetry": read & ~copies["plain"],
    }
    groups |= {name: read & (copies["r"] >= lo) & (copies["r"] < hi) for lo, hi, name in R_BANDS}
    groups |= {f"kind {k}": read & (copies["kind"] == k) for k in KINDS}
    report = {
        name: {
            "pairs": int(m.sum()),
            "found": int(found[m].sum()),
            "recall": ratio(int(found[m].sum()), int(m.sum())),
            "direct_pair": int(direct[m].sum()),
        }
        for name, m in groups.items()
        if m.any() or name == "all"
    }
    report["all"]["left_out_unread"] = int((~read).sum())
    miss = read & ~found
    sample = pair_rows(
        truth, i[miss], j[miss], r=copies["r"][miss], kind=copies["kind"][miss], view=copies["view"][miss]
    )
    return report, sample


def precision_report(truth: Truth, pairs: dict, data: Path) -> tuple[dict, list[dict]]:
    """Share of brainmri's non-identical pairs that the truth puts at ``r >= KEEP_R``, and a sample of the others."""
    near = ~pairs["exact"]
    i, j, kinds, similarity = pairs["i"][near], pairs["j"][near], pairs["kind"][near], pairs["similarity"][near]
    r, code = truth_r(truth, i, j, data)
    ok = r >= KEEP_R
    edges = [e for e, _ in HISTOGRAM] + [np.inf]
    report = {
        "pairs": int(len(i)),
        "confirmed": int(ok.sum()),
        "precision": ratio(int(ok.sum()), len(i)),
        "share_at_copy_r": ratio(int((r >= COPY_R).sum()), len(i)),
        "truth_r_histogram": {
            name: int(((r >= lo) & (r < hi)).sum()) for (lo, name), hi in zip(HISTOGRAM, edges[1:], strict=True)
        },
        "per_brainmri_kind": {
            k: {
                "pairs": int((kinds == k).sum()),
                "precision": ratio(int(ok[kinds == k].sum()), int((kinds == k).sum())),
            }
            for k in sorted(set(kinds.tolist()))
        },
    }
    bad = ~ok
    sample = pair_rows(
        truth,
        i[bad],
        j[bad],
        r=r[bad],
        truth_kind=np.array(NAMES)[code[bad] % 8],
        truth_view=np.array(VIEWS)[code[bad] // 8],
        brainmri_similarity=similarity[bad],
        brainmri_kind=kinds[bad],
    )
    return report, sample


def leak_report(truth: Truth, held: dict[str, np.ndarray], leaks: list[dict], data: Path) -> dict:
    """brainmri's leaking held-out images (``cross_split_leaks``) against the truth's, per class and kind.

    A brainmri leak is *confirmed* when the truth finds its held-out image copying some training image; its
    *reported pair* (held-out image, closest training image) is checked too.
    """
    n, index = len(truth.rels), {rel: k for k, rel in enumerate(truth.rels.tolist())}
    test = np.array([index.get(leak["test_path"], -1) for leak in leaks], dtype=np.int64)
    train = np.array([index.get(leak["train_path"], -1) for leak in leaks], dtype=np.int64)
    flagged, copying, symmetric_only, lookalike = (np.zeros(n, dtype=bool) for _ in range(4))
    flagged[test[test >= 0]] = True
    copying[held["held"]] = True
    symmetric_only[held["held"][~held["plain"]]] = True
    p = truth.pairs
    near = held_train(truth.splits, p["i"], p["j"])  # stored pairs (r >= KEEP_R) across held-out/train
    lookalike[np.where(np.isin(truth.splits[p["i"][near]], HELD_OUT), p["i"][near], p["j"][near])] = True
    ok = (test >= 0) & (train >= 0)
    a, b = np.minimum(test, train)[ok], np.maximum(test, train)[ok]
    r = truth_r(truth, a, b, data)[0]
    same = truth.digests[a] == truth.digests[b]
    confirmed, unconfirmed = flagged & copying, flagged & ~copying
    missed = ~flagged[held["held"]]
    kinds = {k: held["held"][held["kind"] == k] for k in KINDS if (held["kind"] == k).any()}
    kinds["only under a symmetry"] = np.flatnonzero(symmetric_only)
    return {
        "truth_leaking": int(copying.sum()),
        "brainmri_leaking": len(leaks),
        "confirmed": int(confirmed.sum()),
        "reported_pair_is_copy": int((same | (r >= COPY_R)).sum()),
        "reported_pair_at_keep_r": int((same | (r >= KEEP_R)).sum()),
        "unconfirmed": int(unconfirmed.sum()),
        "unconfirmed_lookalike_090_095": int((unconfirmed & lookalike).sum()),
        "unconfirmed_below_090": int((unconfirmed & ~lookalike).sum()),
        "recall": ratio(int(confirmed.sum()), int(copying.sum())),
        "precision": ratio(int(confirmed.sum()), len(leaks)),
        "per_class": {
            c: {
                "truth": int((copying & mine).sum()),
                "brainmri": int((flagged & mine).sum()),
                "confirmed": int((confirmed & mine).sum()),
            }
            for c in sorted(set(truth.labels[flagged | copying].tolist()))
            if (mine := truth.labels == c).any()
        },
        "per_kind": {k: {"truth": len(v), "found": int(flagged[v].sum())} for k, v in kinds.items()},
        "missed_sample": pair_rows(
            truth, held["held"][missed], held["train"][missed], r=held["r"][missed], kind=held["kind"][missed]
        ),
    }


def measure_brainmri(data: Path, truth: Truth, copies: dict) -> dict:
    """Run brainmri's audit (subprocess, then in this process) and measure it against the truth."""
    say(f"running brainmri audit {data} (subprocess)")
    cli = run_cli(data)
    say(f"  {cli['seconds']} s, peak {cli['peak_rss_mb_largest_process']} MB; running analyse() in this process")
    analysis, leaks, info = run_analyse(data)
    say(f"  {info['seconds']} s; measuring")
    rels = [analysis.dataset.relpath(it) for it in analysis.dataset.items]
    index = {rel: k for k, rel in enumerate(truth.rels.tolist())}
    to_truth = np.array([index.get(rel, -1) for rel in rels], dtype=np.int64)
    mapped = to_truth >= 0
    cluster = np.full(len(truth.rels), -1, dtype=np.int64)
    cluster[to_truth[mapped]] = np.asarray(analysis.graph.cluster_of)[mapped]
    pairs = brainmri_pairs(analysis, to_truth)
    recall, missed = recall_report(truth, copies, cluster, pairs)
    precision, unconfirmed = precision_report(truth, pairs, data)
    out = {
        **info,
        "cli": cli,
        "n_items": len(rels),
        "n_unreadable": len(analysis.unreadable),
        "items_not_in_truth": int((~mapped).sum()),
        "truth_images_not_in_brainmri": int(len(truth.rels) - mapped.sum()),
        "pairs": int(len(pairs["i"])),
        "exact_pairs": int(pairs["exact"].sum()),
        "has_kind": bool("kind" in analysis.graph.pairs),
        "recall": recall,
        "precision": precision,
        "missed_sample": missed,
        "unconfirmed_sample": unconfirmed,
    }
    if np.isin(truth.splits, HELD_OUT).any() and (truth.splits == "train").any():
        out["leaks"] = leak_report(truth, held_out_copies(truth, copies), leaks, data)
    return out


def table(header: list[str], rows: list[list]) -> list[str]:
    """Lines of a plain text table: the first column left-aligned, the others right-aligned."""
    cells = [header, *([str(c) for c in row] for row in rows)]
    widths = [max(len(row[k]) for row in cells) for k in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) if k == 0 else c.rjust(w) for k, (c, w) in enumerate(zip(row, widths, strict=True)))
        for row in cells
    ]
    return [lines[0], "-" * len(lines[0]), *lines[1:]]


def inline(counts: dict) -> str:
    """``a 1, b 2`` (``none`` when empty)."""
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "none"


def format_truth(doc: dict) -> list[str]:
    """Terminal lines of the truth's counts."""
    t = doc["truth"]
    pair_kinds = {k: t["copy_pairs_per_kind"][k] for k in KINDS if k in t["copy_pairs_per_kind"]}
    lines = [
        f"truth of {doc['data']}: {t['n_images']} images ({t['n_unreadable']} unreadable) at {doc['size']}x"
        f"{doc['size']}; computed in {t['seconds']} s, peak memory {t['peak_rss_mb']} MB"
        + (" (read from the cache)" if t["from_cache"] else ""),
        f"pairs at r >= {KEEP_R}: {t['pairs_at_keep_r']}; copy pairs (r >= {COPY_R} or identical): {t['copy_pairs']}, "
        f"{t['copy_pairs_across_classes']} across classes; {t['copy_clusters']} copy clusters, largest "
        f"{t['largest_copy_cluster']}",
        f"copy pairs per kind: {inline(pair_kinds)}"
        f"; {t['copy_pairs_only_under_a_symmetry']} of them copies only under a symmetry (r without one < {COPY_R})",
        f"copy pairs per view (not identical): {inline(t['copy_pairs_per_view'])}; per band: "
        f"{inline(t['copy_pairs_per_r_band'])}",
        f"each image's best r to any other: {inline(t['best_r_histogram'])}",
        "",
        *table(
            ["class", "images", "in a copy pair"],
            [[c, v["of"], v["with_copy"]] for c, v in t["images_in_a_copy_pair"].items()],
        ),
    ]
    h = t.get("held_out")
    if h:
        kinds = list(h["copying_train_per_kind"])
        every = {**h, "of": h["n_held_out"], "kinds": h["copying_train_per_kind"]}
        rows = [
            [c, v["of"], v["copying_train"], *(v["kinds"].get(k, 0) for k in kinds), v["only_under_a_symmetry"]]
            + [v["copy_nothing_in_train"], v["copy_nothing_at_all"]]
            for c, v in [*h["per_class"].items(), ("all", every)]
        ]
        lines += [
            "",
            f"held-out images copying a training image: {h['copying_train']} of {h['n_held_out']} "
            f"({h['copy_pairs_held_out_train']} held-out/train copy pairs). Kind of each image's best copy "
            f"(held-out = kind(train)); views {inline(h['copying_train_per_view'])}; 'only under a symmetry': no "
            f"training copy without one",
            *table(
                ["class", "held out", "copying", *kinds, "only under a symmetry", "copy nothing in train"]
                + ["copy nothing at all"],
                rows,
            ),
        ]
    return lines


def format_samples(title: str, rows: list[dict]) -> list[str]:
    """A sample of pairs, one line each."""
    lines = [f"{title} ({len(rows)}):"] if rows else []
    for row in rows:
        rest = ", ".join(f"{k} {v}" for k, v in row.items() if k not in ("path_i", "path_j"))
        lines.append(f"  {row['path_i']}  {row['path_j']}  ({rest})")
    return lines


def format_brainmri(b: dict) -> list[str]:
    """Terminal lines of the comparison with brainmri."""
    cli, p = b["cli"], b["precision"]
    per_kind = {k: f"{v['precision']} of {v['pairs']}" for k, v in p["per_brainmri_kind"].items()}
    lines = [
        "",
        f"brainmri {b['version']} ({b['module']}): analyse() {b['seconds']} s in this process; `brainmri audit` "
        f"{cli['seconds']} s, peak memory {cli['peak_rss_mb_largest_process']} MB (largest process), exit "
        f"{cli['returncode']}, {cli['cross_split_leaks']} cross-split leaks",
        f"items {b['n_items']} ({b['n_unreadable']} unreadable; {b['items_not_in_truth']} not in the truth, "
        f"{b['truth_images_not_in_brainmri']} truth images not read); pairs {b['pairs']} ({b['exact_pairs']} exact); "
        f"pair kinds given: {'yes' if b['has_kind'] else 'no'}",
        "",
        "recall of the truth's copy pairs (found: both images in one brainmri cluster; direct pair: a brainmri "
        f"pair itself; {b['recall']['all']['left_out_unread']} pairs with an image brainmri did not read left out)",
        *table(
            ["copy pairs", "n", "found", "recall", "direct pair"],
            [[k, v["pairs"], v["found"], v["recall"], v["direct_pair"]] for k, v in b["recall"].items()],
        ),
        "",
        f"precision of brainmri's non-identical pairs: {p['confirmed']} of {p['pairs']} at truth r >= {KEEP_R} "
        f"({p['precision']}); at r >= {COPY_R}: {p['share_at_copy_r']}",
        f"  truth r of those pairs: {inline(p['truth_r_histogram'])}",
        f"  per brainmri kind: {inline(per_kind)}",
    ]
    leaks = b.get("leaks")
    if leaks:
        lines += [
            "",
            f"leaking held-out images: truth {leaks['truth_leaking']}, brainmri {leaks['brainmri_leaking']}, "
            f"confirmed {leaks['confirmed']} (recall {leaks['recall']}, precision {leaks['precision']}); "
            f"unconfirmed {leaks['unconfirmed']}: {leaks['unconfirmed_lookalike_090_095']} at truth r 0.90-0.95 to a "
            f"training image, {leaks['unconfirmed_below_090']} below 0.90",
            f"  the pair brainmri reports for each leak (held-out image, closest training image): a truth copy for "
            f"{leaks['reported_pair_is_copy']}, at r >= {KEEP_R} for {leaks['reported_pair_at_keep_r']}",
            *table(
                ["class", "truth", "brainmri", "confirmed"], [[c, *v.values()] for c, v in leaks["per_class"].items()]
            ),
            *table(["kind (truth)", "truth", "found"], [[k, *v.values()] for k, v in leaks["per_kind"].items()]),
        ]
    lines += ["", *format_samples("missed copy pairs, a random sample", b["missed_sample"])]
    lines += format_samples("unconfirmed brainmri pairs, a random sample", b["unconfirmed_sample"])
    if leaks:
        lines += format_samples("missed leaking held-out images, a random sample", leaks["missed_sample"])
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", nargs="?", type=Path, default=ROOT.parent / "shared/datasets/brain-tumor-mri")
    parser.add_argument("--size", type=int, default=128, help="side of the compared views in pixels (default 128)")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "brainmri-dup-truth")
    parser.add_argument("--json", type=Path, help="also write every figure here")
    parser.add_argument("--no-brainmri", action="store_true", help="only the truth")
    args = parser.parse_args(argv)
    if args.size < 8 or args.size % 2:
        parser.error(f"--size must be an even number of pixels, at least 8, got {args.size}")
    data = args.data.resolve()
    if not data.is_dir():
        parser.error(f"DATA must be a dataset folder, got {args.data}")
    truth, from_cache = get_truth(data, args.size, args.cache)
    copies = copy_pairs(truth)
    doc = {
        "data": str(data),
        "size": args.size,
        "version": VERSION,
        "keep_r": KEEP_R,
        "copy_r": COPY_R,
        "foreground": FOREGROUND,
        "machine": f"{os.cpu_count()} cores, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end",
        "truth": truth_report(truth, copies, from_cache),
    }
    lines = format_truth(doc)
    if not args.no_brainmri:
        doc["brainmri"] = measure_brainmri(data, truth, copies)
        lines += format_brainmri(doc["brainmri"])
    print("\n".join(lines))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
        say(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
