"""From image files to feature matrices: read, preprocess, extract - in parallel, cached on disk.

The cache is a SQLite file keyed by the content hash of each image file
plus the extractor's and preprocessing's parameters and code versions
(``ImageTransformer.version``, ``Preprocess.version``), so a second benchmark
on the same data (or another method needing the same extractor) reads the
features instead of recomputing them, and never reads features that older
code computed. SQLite gives atomic, concurrent-safe writes with the standard
library alone. Without a cache folder, a :class:`MemoryCache` shares the
features of one run between its methods and folds.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import time
from functools import lru_cache
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone

from brainmri.data.io import read_image
from brainmri.data.preprocess import Preprocess
from brainmri.errors import DataError
from brainmri.features.base import ImageTransformer

logger = logging.getLogger(__name__)


@lru_cache(maxsize=200_000)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "blake2b").hexdigest()[:32]


def file_digest(path: str | Path) -> str:
    """Content hash of a file (memoised on path, size and modification time)."""
    st = os.stat(path)
    return _digest(str(path), st.st_mtime_ns, st.st_size)


def item_digest(item: str | Path | np.ndarray) -> str:
    """Content hash of an image item: a file's bytes, or a 2D array's pixels (prefixed ``px-``)."""
    if isinstance(item, np.ndarray):
        pixels = np.ascontiguousarray(item)
        head = f"{pixels.dtype.str}{pixels.shape}".encode()
        return "px-" + hashlib.blake2b(head + pixels.tobytes(), digest_size=16).hexdigest()
    return file_digest(item)


#: SQLite result codes of a file that is not, or no longer, a valid database.
_CORRUPT_CODES = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)


class _Corrupt(Exception):
    """The cache file is truncated or not a SQLite database."""


class FeatureCache:
    """Feature rows stored by (extractor key, image content hash) in a SQLite file.

    A file that SQLite finds corrupt, or whose size is not a whole number of
    pages (a truncated copy, which SQLite would read as zero-padded rows), is
    renamed to ``<name>.corrupt-<timestamp>`` (never deleted) and replaced by
    a fresh, empty cache, with a warning naming the moved file.

    Parameters
    ----------
    path : str or Path
        The database file; created on first use.
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        con = sqlite3.connect(self.path, timeout=60)
        try:
            con.execute("CREATE TABLE IF NOT EXISTS features (key TEXT, digest TEXT, value BLOB, PRIMARY KEY (key, digest))")
            (page_size,) = con.execute("PRAGMA page_size").fetchone()
            con.execute("BEGIN")  # a shared lock: no other process writes the file while its size is read
            con.execute("SELECT count(*) FROM sqlite_master").fetchone()
            size = self.path.stat().st_size
            con.execute("COMMIT")
            if size % page_size:
                raise _Corrupt(f"truncated: {size} bytes is not a whole number of {page_size}-byte pages")
        except BaseException:
            con.close()
            raise
        return con

    def _session(self, work: Callable[[sqlite3.Connection], object]):
        """``work(connection)`` on a fresh connection; corruption raises ``_Corrupt``."""
        try:
            con = self._connect()
            try:
                return work(con)
            finally:
                con.close()
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorcode", 0) & 0xFF in _CORRUPT_CODES:
                raise _Corrupt(str(exc)) from None
            raise

    def _run(self, work: Callable[[sqlite3.Connection], object]):
        """``work(connection)``; a corrupt file is moved aside first and ``work`` runs on a fresh one."""
        try:
            try:
                return self._session(work)
            except _Corrupt as exc:
                self._move_aside(exc)
                return self._session(work)
        except (_Corrupt, sqlite3.OperationalError, OSError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
            raise DataError(f"feature cache {self.path}: {reason}; choose another --cache-dir or use --no-cache") from None

    def _move_aside(self, reason: Exception) -> None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while target.exists():
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            self.path.rename(target)
        except FileNotFoundError:  # another process moved it first
            return
        # A journal left beside the broken file belongs to it, not to the fresh cache.
        for suffix in ("-journal", "-wal", "-shm"):
            sidecar = self.path.with_name(self.path.name + suffix)
            if sidecar.exists():
                sidecar.rename(target.with_name(target.name + suffix))
        logger.warning("feature cache %s is corrupt (%s): moved it to %s and started a fresh cache",
                       self.path, reason, target)

    def get(self, key: str, digests: Sequence[str], *, length: int | None = None) -> dict[str, np.ndarray]:
        """Rows found for ``digests`` (missing ones are absent from the result).

        A damaged row (a blob that is not a whole number of float64 values,
        NaN or infinite values, or another ``length`` than expected) is left
        out with a warning, so that it is computed again and replaced.
        """

        def select(con: sqlite3.Connection) -> dict[str, np.ndarray]:
            found, damaged = {}, 0
            wanted = sorted(set(digests))
            for s in range(0, len(wanted), 900):
                chunk = wanted[s : s + 900]
                marks = ",".join("?" * len(chunk))
                for digest, value in con.execute(
                    # CAST: a value stored as text (a damaged row) comes back as bytes, never as a decoding error
                    f"SELECT digest, CAST(value AS BLOB) FROM features WHERE key = ? AND digest IN ({marks})",
                    [key, *chunk],
                ):
                    row = _stored_row(value, length)
                    if row is None:
                        damaged += 1
                    else:
                        found[digest] = row
            if damaged:
                logger.warning("feature cache %s: %d damaged entr%s (wrong length, NaN or not numbers); computing "
                               "them again", self.path, damaged, "y" if damaged == 1 else "ies")
            return found

        return self._run(select)

    def put(self, key: str, rows: dict[str, np.ndarray]) -> None:
        """Store ``rows`` (digest -> feature vector) under ``key``."""

        def insert(con: sqlite3.Connection) -> None:
            with con:
                con.executemany(
                    "INSERT OR REPLACE INTO features VALUES (?, ?, ?)",
                    [(key, d, np.asarray(v, dtype=np.float64).tobytes()) for d, v in rows.items()],
                )

        self._run(insert)


def _stored_row(value, length: int | None) -> np.ndarray | None:
    """The float64 row a cache blob holds, or None when the blob is damaged."""
    if not isinstance(value, bytes) or len(value) % 8 or (length is not None and len(value) != 8 * length):
        return None
    row = np.frombuffer(value, dtype=np.float64)
    return row if np.isfinite(row).all() else None


class MemoryCache:
    """:class:`FeatureCache`'s interface over a dictionary: rows live as long as the object.

    A benchmark without a cache folder (``--no-cache``) gives one to every
    method and fold of the run, so each image's features are computed once
    per run instead of once per method and fold, and nothing is written to
    disk. Copies (``sklearn.base.clone`` deep-copies parameters) share the
    rows of the original.
    """

    def __init__(self):
        self._rows: dict[str, dict[str, np.ndarray]] = {}

    def __deepcopy__(self, memo) -> MemoryCache:
        return self

    def get(self, key: str, digests: Sequence[str], **expected) -> dict[str, np.ndarray]:
        """Rows found for ``digests`` (missing ones are absent from the result); ``expected`` is ignored (the
        rows never left memory)."""
        table = self._rows.get(key, {})
        return {d: table[d] for d in set(digests) if d in table}

    def put(self, key: str, rows: dict[str, np.ndarray]) -> None:
        """Store ``rows`` (digest -> feature vector) under ``key``."""
        self._rows.setdefault(key, {}).update(rows)


def open_cache(cache_dir: str | Path | MemoryCache | None) -> FeatureCache | MemoryCache | None:
    """The cache that a ``cache_dir`` setting designates.

    A folder gives the :class:`FeatureCache` file ``features.sqlite`` in it; a
    :class:`MemoryCache` is used as it is; None (or ``""``) means no cache.
    """
    if isinstance(cache_dir, MemoryCache):
        return cache_dir
    return FeatureCache(Path(cache_dir) / "features.sqlite") if cache_dir else None


def load_preprocessed(path: str | Path | np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """Read one file (or take a 2D array as it is) and apply ``preprocess``; a 2D float32 image in [0, 1]."""
    image = path if isinstance(path, np.ndarray) else read_image(path)[0]
    try:
        return preprocess(image)
    except DataError as exc:
        raise DataError(f"{'an image array' if isinstance(path, np.ndarray) else path}: {exc}") from None


def read_preprocessed(items, preprocess: Preprocess) -> list[np.ndarray]:
    """:func:`load_preprocessed` of every item (file path or 2D array)."""
    return [load_preprocessed(x if isinstance(x, np.ndarray) else str(x), preprocess) for x in items]


def landmark_params(given: Preprocess, fitted: Preprocess) -> dict:
    """What a first step learned, for the method's ``params_``: the Nyúl landmarks, when it learned them."""
    if given.landmarks is None and fitted.landmarks is not None:
        return {"nyul_landmarks": list(fitted.landmarks)}
    return {}


def _extract_chunk(paths: list[str | np.ndarray], preprocess: Preprocess, extractors: list[ImageTransformer]) -> list[list[np.ndarray]]:
    images = [load_preprocessed(p, preprocess) for p in paths]
    return [ex.transform(images) for ex in extractors]


def compute_features(
    paths: Sequence[str | Path],
    extractors: Sequence[ImageTransformer],
    *,
    preprocess: Preprocess | None = None,
    cache: FeatureCache | MemoryCache | None = None,
    n_jobs: int = 1,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = 64,
) -> np.ndarray:
    """Feature matrix of ``paths``: every extractor's columns side by side.

    Parameters
    ----------
    paths : sequence of path or 2D ndarray
        Image files, or images already read (cached by their pixels' hash).
    extractors : sequence of ImageTransformer
        Fitted or not (they learn nothing from data).
    preprocess : Preprocess, optional
        Defaults to ``Preprocess()``.
    cache : FeatureCache or MemoryCache, optional
    n_jobs : int
        Worker processes for the images not in the cache.
    progress : callable, optional
        Called with the number of images just computed.

    Returns
    -------
    ndarray of float64, shape (len(paths), total features)
    """
    from joblib import Parallel, delayed

    preprocess = preprocess or Preprocess()
    extractors = [clone(ex).fit() for ex in extractors]
    paths = [p if isinstance(p, np.ndarray) else str(p) for p in paths]
    digests = [item_digest(p) for p in paths]
    keys = [f"{ex.cache_key()}|{preprocess_key(preprocess)}" for ex in extractors]
    known = [cache.get(k, digests, length=ex.n_features_out_) if cache is not None else {}
             for k, ex in zip(keys, extractors)]
    todo = sorted({k for k, d in enumerate(digests) if any(d not in kn for kn in known)})
    if todo:
        first = {}
        for k in todo:
            first.setdefault(digests[k], k)
        todo = sorted(first.values())
        chunks = [todo[s : s + chunk_size] for s in range(0, len(todo), chunk_size)]
        job = delayed(_extract_chunk)
        runner = (
            (_extract_chunk([paths[k] for k in c], preprocess, extractors) for c in chunks)
            if n_jobs == 1 or len(chunks) == 1
            else Parallel(n_jobs=n_jobs, return_as="generator")(job([paths[k] for k in c], preprocess, extractors) for c in chunks)
        )
        fresh: list[dict[str, np.ndarray]] = [{} for _ in extractors]
        for chunk, blocks in zip(chunks, runner):
            for e, block in enumerate(blocks):
                for k, row in zip(chunk, block):
                    fresh[e][digests[k]] = row
            if progress:
                progress(len(chunk))
        for e, rows in enumerate(fresh):
            known[e].update(rows)
            if cache is not None:
                cache.put(keys[e], rows)
        logger.info("computed features of %d images (%d from cache)", len(todo), len(paths) - len(todo))
    blocks = [np.vstack([kn[d] for d in digests]) if digests else np.zeros((0, ex.n_features_out_)) for kn, ex in zip(known, extractors)]
    return np.hstack(blocks)


def preprocess_key(preprocess: Preprocess) -> str:
    """Cache-key part of a preprocessing: its code version and a hash of its settings."""
    text = repr(sorted(preprocess.to_dict().items()))
    return f"pre-v{preprocess.version}-" + hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


class ImageFeatures(TransformerMixin, BaseEstimator):
    """Transformer from images (file paths or 2D arrays) to features, for the first step of a pipeline.

    It learns nothing from data (scikit-learn tag ``requires_fit`` False), so
    a saved model bundle does not store it: the method's builder makes it
    again (:mod:`brainmri.models.bundle`). The one exception is a
    preprocessing with ``harmonise="nyul"`` and no landmarks: ``fit`` learns
    them from its training items (:func:`~brainmri.data.harmonise.learn_landmarks`)
    and features are computed with them (``preprocess_``); a bundle keeps
    them in its manifest's preprocessing, which its builder gets back.

    Parameters
    ----------
    extractors : list of (name, ImageTransformer)
        Their columns are concatenated in this order.
    preprocess : Preprocess or None
        Shared preprocessing; None means ``Preprocess()``.
    cache_dir : str, MemoryCache or None
        Folder of the feature cache, or an in-memory cache shared with other
        pipelines (as ``Pipeline(memory=...)`` takes a folder or an object);
        None computes without caching.
    n_jobs : int
        Worker processes.

    Attributes
    ----------
    preprocess_ : Preprocess
        The preprocessing of the features: ``preprocess``, with the learned
        landmarks if it asked for them.
    params_ : dict
        The learned landmarks, when there are some (empty otherwise).
    """

    def __init__(self, extractors, *, preprocess=None, cache_dir=None, n_jobs=1):
        self.extractors = extractors
        self.preprocess = preprocess
        self.cache_dir = cache_dir
        self.n_jobs = n_jobs

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.requires_fit = False
        return tags

    def fit(self, X, y=None):
        from brainmri.data.harmonise import learn_landmarks

        self.feature_names_ = [name for _, ex in self.extractors for name in clone(ex).fit().feature_names_]
        self.n_features_out_ = len(self.feature_names_)
        self.preprocess_ = learn_landmarks(self.preprocess or Preprocess(), X, read_preprocessed)
        self.params_ = landmark_params(self.preprocess or Preprocess(), self.preprocess_)
        return self

    def transform(self, X) -> np.ndarray:
        return compute_features(list(X), [ex for _, ex in self.extractors],
                                preprocess=getattr(self, "preprocess_", self.preprocess),
                                cache=open_cache(self.cache_dir), n_jobs=self.n_jobs)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        return np.asarray(self.feature_names_, dtype=object)


def precompute_features(models, paths, *, n_jobs: int = 1, progress: Callable[[int], None] | None = None) -> int:
    """Fill the feature cache for every cached ``ImageFeatures`` step of ``models`` in one pass.

    Methods that share extractors (the GLCM of ``glcm-svm`` and
    ``multifeature-rf``) or preprocessing then read each image once, instead
    of once per method and fold. Models without such a step are ignored.

    Returns
    -------
    int
        Number of distinct extractors computed or found in the cache.
    """
    wanted: dict[tuple, dict[str, ImageTransformer]] = {}
    for model in models:
        for _, step in getattr(model, "steps", []):
            preprocess = step.preprocess or Preprocess() if isinstance(step, ImageFeatures) else None
            # A step that learns landmarks in fit computes its features then: they depend on the fold.
            if preprocess is not None and step.cache_dir and not (preprocess.harmonise == "nyul" and preprocess.landmarks is None):
                where = step.cache_dir if isinstance(step.cache_dir, MemoryCache) else str(step.cache_dir)
                group = wanted.setdefault((where, preprocess), {})
                for _, extractor in step.extractors:
                    group.setdefault(extractor.cache_key(), extractor)
    for (where, preprocess), extractors in wanted.items():
        compute_features(paths, list(extractors.values()), preprocess=preprocess, cache=open_cache(where),
                         n_jobs=n_jobs, progress=progress)
    return sum(len(e) for e in wanted.values())
