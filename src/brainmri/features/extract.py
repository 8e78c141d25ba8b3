"""From image files to feature matrices: read, preprocess, extract - in parallel, cached on disk.

The cache is a SQLite file keyed by the content hash of each image file
plus the extractor's and preprocessing's parameters, so a second benchmark
on the same data (or another method needing the same extractor) reads the
features instead of recomputing them. SQLite gives atomic, concurrent-safe
writes with the standard library alone.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
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


class FeatureCache:
    """Feature rows stored by (extractor key, image content hash) in a SQLite file.

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
        con.execute("CREATE TABLE IF NOT EXISTS features (key TEXT, digest TEXT, value BLOB, PRIMARY KEY (key, digest))")
        return con

    def get(self, key: str, digests: Sequence[str]) -> dict[str, np.ndarray]:
        """Rows found for ``digests`` (missing ones are absent from the result)."""
        found: dict[str, np.ndarray] = {}
        con = self._connect()
        try:
            wanted = sorted(set(digests))
            for s in range(0, len(wanted), 900):
                chunk = wanted[s : s + 900]
                marks = ",".join("?" * len(chunk))
                for digest, value in con.execute(
                    f"SELECT digest, value FROM features WHERE key = ? AND digest IN ({marks})", [key, *chunk]
                ):
                    found[digest] = np.frombuffer(value, dtype=np.float64)
        finally:
            con.close()
        return found

    def put(self, key: str, rows: dict[str, np.ndarray]) -> None:
        con = self._connect()
        try:
            with con:
                con.executemany(
                    "INSERT OR REPLACE INTO features VALUES (?, ?, ?)",
                    [(key, d, np.asarray(v, dtype=np.float64).tobytes()) for d, v in rows.items()],
                )
        finally:
            con.close()


def load_preprocessed(path: str | Path, preprocess: Preprocess) -> np.ndarray:
    """Read one file and apply ``preprocess``; a 2D float32 image in [0, 1]."""
    image, _ = read_image(path)
    try:
        return preprocess(image)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from None


def _extract_chunk(paths: list[str], preprocess: Preprocess, extractors: list[ImageTransformer]) -> list[list[np.ndarray]]:
    images = [load_preprocessed(p, preprocess) for p in paths]
    return [ex.transform(images) for ex in extractors]


def compute_features(
    paths: Sequence[str | Path],
    extractors: Sequence[ImageTransformer],
    *,
    preprocess: Preprocess | None = None,
    cache: FeatureCache | None = None,
    n_jobs: int = 1,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = 64,
) -> np.ndarray:
    """Feature matrix of ``paths``: every extractor's columns side by side.

    Parameters
    ----------
    paths : sequence of path
    extractors : sequence of ImageTransformer
        Fitted or not (they learn nothing from data).
    preprocess : Preprocess, optional
        Defaults to ``Preprocess()``.
    cache : FeatureCache, optional
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
    paths = [str(p) for p in paths]
    digests = [file_digest(p) for p in paths]
    keys = [f"{ex.cache_key()}|{_preprocess_key(preprocess)}" for ex in extractors]
    known = [cache.get(k, digests) if cache else {} for k in keys]
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
            if cache:
                cache.put(keys[e], rows)
        logger.info("computed features of %d images (%d from cache)", len(todo), len(paths) - len(todo))
    blocks = [np.vstack([kn[d] for d in digests]) if digests else np.zeros((0, ex.n_features_out_)) for kn, ex in zip(known, extractors)]
    return np.hstack(blocks)


def _preprocess_key(preprocess: Preprocess) -> str:
    return hashlib.blake2b(repr(sorted(preprocess.to_dict().items())).encode(), digest_size=6).hexdigest()


class ImageFeatures(TransformerMixin, BaseEstimator):
    """Transformer from image paths to features, for the first step of a pipeline.

    Parameters
    ----------
    extractors : list of (name, ImageTransformer)
        Their columns are concatenated in this order.
    preprocess : Preprocess or None
        Shared preprocessing; None means ``Preprocess()``.
    cache_dir : str or None
        Folder of the feature cache; None computes without caching.
    n_jobs : int
        Worker processes.
    """

    def __init__(self, extractors, *, preprocess=None, cache_dir=None, n_jobs=1):
        self.extractors = extractors
        self.preprocess = preprocess
        self.cache_dir = cache_dir
        self.n_jobs = n_jobs

    def fit(self, X, y=None):
        self.feature_names_ = [name for _, ex in self.extractors for name in clone(ex).fit().feature_names_]
        self.n_features_out_ = len(self.feature_names_)
        return self

    def transform(self, X) -> np.ndarray:
        cache = FeatureCache(Path(self.cache_dir) / "features.sqlite") if self.cache_dir else None
        return compute_features(list(X), [ex for _, ex in self.extractors], preprocess=self.preprocess,
                                cache=cache, n_jobs=self.n_jobs)

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
            if isinstance(step, ImageFeatures) and step.cache_dir:
                preprocess = step.preprocess or Preprocess()
                group = wanted.setdefault((str(step.cache_dir), preprocess), {})
                for _, extractor in step.extractors:
                    group.setdefault(extractor.cache_key(), extractor)
    for (cache_dir, preprocess), extractors in wanted.items():
        compute_features(paths, list(extractors.values()), preprocess=preprocess,
                         cache=FeatureCache(Path(cache_dir) / "features.sqlite"), n_jobs=n_jobs, progress=progress)
    return sum(len(e) for e in wanted.values())
