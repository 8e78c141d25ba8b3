"""Read every image of a dataset once, in parallel, and keep what audits and splits need.

Unreadable files do not stop the scan: each is reported with its reason.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from brainmri.data.dataset import Dataset
from brainmri.data.duplicates import Fingerprint, fingerprint
from brainmri.data.io import read_image
from brainmri.errors import DataError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScanRecord:
    """What one file looked like when read.

    ``error`` is None for readable files; then ``fingerprint`` is set.
    """

    error: str | None
    format: str | None = None
    shape: tuple[int, ...] | None = None
    mode: str | None = None
    bit_depth: int | None = None
    fingerprint: Fingerprint | None = None


def _scan_one(path: Path) -> ScanRecord:
    try:
        array, meta = read_image(path)
    except DataError as exc:
        return ScanRecord(str(exc))
    if meta.format == "dicom" and array.ndim == 3:
        array = np.moveaxis(array, 0, -1)  # frames first in DICOM; fingerprint slices the last axis
    return ScanRecord(None, meta.format, tuple(meta.original_shape), meta.mode, meta.bit_depth, fingerprint(array))


def _scan_chunk(paths: list[Path]) -> list[ScanRecord]:
    return [_scan_one(p) for p in paths]


def scan_dataset(
    dataset: Dataset,
    *,
    n_jobs: int = -1,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = 128,
) -> list[ScanRecord]:
    """Read and fingerprint every item of ``dataset``.

    Parameters
    ----------
    dataset : Dataset
    n_jobs : int
        Worker processes (joblib convention: -1 uses every core).
    progress : callable, optional
        Called with the number of items just finished.

    Returns
    -------
    list of ScanRecord
        One per item, in item order.
    """
    from joblib import Parallel, delayed

    paths = [it.path for it in dataset.items]
    chunks = [paths[s : s + chunk_size] for s in range(0, len(paths), chunk_size)]
    if n_jobs == 1 or len(chunks) <= 1:
        results = (_scan_chunk(c) for c in chunks)
    else:
        results = Parallel(n_jobs=n_jobs, return_as="generator")(delayed(_scan_chunk)(c) for c in chunks)
    records: list[ScanRecord] = []
    for chunk_records in results:
        records += chunk_records
        if progress:
            progress(len(chunk_records))
    bad = sum(r.error is not None for r in records)
    if bad:
        logger.warning("%d of %d files could not be read", bad, len(records))
    return records
