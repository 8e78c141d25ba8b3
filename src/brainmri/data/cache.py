"""Caches of what is computed from images: feature rows in SQLite, preprocessed arrays as ``.npy`` files.

Both are keyed by the content hash of each image (:func:`file_digest`,
:func:`item_digest`) plus the parameters and code versions of what computed
the entry (an extractor's ``cache_key``, :func:`preprocess_key`), so a second
run on the same data reads instead of recomputing, and never reads what
older code computed. SQLite gives atomic, concurrent-safe writes with the
standard library alone. A damaged entry (a truncated or corrupt file, a row
of the wrong length, NaN values) is computed again, never served. Without a
cache folder, a :class:`MemoryCache` shares the rows of one run between its
methods and folds.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from brainmri.data.dicom import find_series
from brainmri.data.preprocess import Preprocess
from brainmri.errors import DataError
from brainmri.files import atomic_path

logger = logging.getLogger(__name__)


@lru_cache(maxsize=200_000)
def _digest(path: str, mtime_ns: int, size: int) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "blake2b").hexdigest()[:32]


def file_digest(path: str | Path) -> str:
    """Content hash of a file (memoised on path, size and modification time), or of a DICOM series.

    A series (:func:`brainmri.data.dicom.find_series`) hashes its UID and
    the name and content of each of its files.
    """
    series = find_series(path)
    if series is not None:
        h = hashlib.blake2b(series.uid.encode(), digest_size=16)
        for file in series.files:
            h.update(file.name.encode() + b"\0" + file_digest(file).encode())
        return "series-" + h.hexdigest()
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
            con.execute(
                "CREATE TABLE IF NOT EXISTS features (key TEXT, digest TEXT, value BLOB, PRIMARY KEY (key, digest))"
            )
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
            raise DataError(
                f"feature cache {self.path}: {reason}; choose another --cache-dir or use --no-cache"
            ) from None

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
        logger.warning(
            "feature cache %s is corrupt (%s): moved it to %s and started a fresh cache", self.path, reason, target
        )

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
                logger.warning(
                    "feature cache %s: %d damaged entr%s (wrong length, NaN or not numbers); computing them again",
                    self.path,
                    damaged,
                    "y" if damaged == 1 else "ies",
                )
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


def preprocess_key(preprocess: Preprocess) -> str:
    """Cache-key part of a preprocessing: its code version and a hash of its settings."""
    text = repr(sorted(preprocess.to_dict().items()))
    return f"pre-v{preprocess.version}-" + hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


class ArrayCache:
    """Image arrays stored as ``.npy`` files, one per (preprocessing key, file content hash).

    Each file is written atomically; an unreadable one is decoded again.

    Parameters
    ----------
    folder : path
    """

    def __init__(self, folder: str | Path):
        self.folder = Path(folder)

    def _path(self, key: str, digest: str) -> Path:
        return self.folder / key / digest[:2] / f"{digest}.npy"

    def get(self, key: str, digests: Sequence[str], *, shape: tuple[int, ...] | None = None) -> dict[str, np.ndarray]:
        """Arrays found for ``digests``; missing, unreadable or damaged ones (another ``shape``, NaN) are absent."""
        found = {}
        for digest in set(digests):
            path = self._path(key, digest)
            if path.exists():
                try:
                    array = np.load(path, allow_pickle=False)
                except (OSError, ValueError, EOFError) as exc:
                    logger.warning("array cache %s: unreadable (%s); decoding the image again", path, exc)
                    continue
                if (shape is not None and array.shape != tuple(shape)) or not np.isfinite(array).all():
                    logger.warning(
                        "array cache %s: damaged (shape %s, or NaN); decoding the image again", path, array.shape
                    )
                    continue
                found[digest] = array
        return found

    def put(self, key: str, rows: dict[str, np.ndarray]) -> None:
        """Store ``rows`` (digest -> array) under ``key``."""
        for digest, array in rows.items():
            with atomic_path(self._path(key, digest)) as tmp, open(tmp, "wb") as fh:
                np.save(fh, array, allow_pickle=False)
