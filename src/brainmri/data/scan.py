"""Read every image of a dataset once, in parallel, and keep what audits and splits need.

Unreadable files do not stop the scan: each is reported with its reason.
Besides what :func:`~brainmri.data.io.read_image` refuses, the scan refuses
degenerate images (:func:`~brainmri.data.io.degenerate_reason`: a side below
:data:`~brainmri.data.io.MIN_SIDE` pixels, or every pixel the same) and
warns about 2D images above half the pixel limit, which take gigabytes of
memory to read.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainmri.data.dataset import Dataset
from brainmri.data.fingerprint import Fingerprint, fingerprint
from brainmri.data.io import MAX_PIXELS, check_max_pixels, degenerate_reason, read_image
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


def _scan_one(path: Path, max_pixels: int) -> ScanRecord:
    try:
        array, meta = read_image(path, max_pixels=max_pixels)
    except DataError as exc:
        return ScanRecord(str(exc))
    problem = degenerate_reason(array)
    if problem:
        return ScanRecord(f"{path}: {problem}")
    if meta.format == "dicom" and meta.mode != "volume" and array.ndim == 3:
        array = np.moveaxis(array, 0, -1)  # frames first in DICOM; fingerprint slices the last axis
    return ScanRecord(None, meta.format, tuple(meta.original_shape), meta.mode, meta.bit_depth, fingerprint(array))


def _scan_chunk(paths: list[Path], max_pixels: int) -> list[ScanRecord]:
    return [_scan_one(p, max_pixels) for p in paths]


def scan_dataset(
    dataset: Dataset,
    *,
    n_jobs: int = -1,
    progress: Callable[[int], None] | None = None,
    chunk_size: int = 128,
    max_pixels: int = MAX_PIXELS,
) -> list[ScanRecord]:
    """Read and fingerprint every item of ``dataset``.

    Parameters
    ----------
    dataset : Dataset
    n_jobs : int
        Worker processes (joblib convention: -1 uses every core).
    progress : callable, optional
        Called with the number of items just finished.
    max_pixels : int
        2D images with more pixels are unreadable (``--max-pixels``); those
        above half of it are read, with a warning logged.

    Returns
    -------
    list of ScanRecord
        One per item, in item order.
    """
    from joblib import Parallel, delayed

    max_pixels = check_max_pixels(max_pixels)
    paths = [it.path for it in dataset.items]
    chunks = [paths[s : s + chunk_size] for s in range(0, len(paths), chunk_size)]
    if n_jobs == 1 or len(chunks) <= 1:
        results = (_scan_chunk(c, max_pixels) for c in chunks)
    else:
        results = Parallel(n_jobs=n_jobs, return_as="generator")(delayed(_scan_chunk)(c, max_pixels) for c in chunks)
    records: list[ScanRecord] = []
    for chunk_records in results:
        records += chunk_records
        if progress:
            progress(len(chunk_records))
    bad = sum(r.error is not None for r in records)
    if bad:
        logger.warning("%d of %d files could not be read", bad, len(records))
    _warn_large(paths, records, max_pixels)
    return records


def _warn_large(paths: list[Path], records: list[ScanRecord], max_pixels: int) -> None:
    """Log the 2D images above half the pixel limit: each takes gigabytes to read and preprocess."""
    large = [
        (p, r.shape[0] * r.shape[1])
        for p, r in zip(paths, records, strict=True)
        if r.error is None and r.format not in ("dicom", "nifti") and r.shape[0] * r.shape[1] > max_pixels // 2
    ]
    if large:
        path, pixels = max(large, key=lambda x: x[1])
        logger.warning(
            "%d image(s) have over %s pixels (half the --max-pixels limit), the largest %s with %s: each needs "
            "at least %.1f GB of memory to read as float32; downscale them if that is not intended",
            len(large),
            f"{max_pixels // 2:,}",
            path,
            f"{pixels:,}",
            pixels * 4 / 1e9,
        )
