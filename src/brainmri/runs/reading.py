"""The one preamble of ``benchmark``, ``train`` and ``tune``: DATA read and audited once, and ``--extra-data`` read
and checked as DATA is; :func:`audit_summary` gives the audit counts that results and bundle manifests carry.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from brainmri.data.audit import Analysis, analyse
from brainmri.data.dataset import load_dataset
from brainmri.data.extra import check_extra_classes, load_extra
from brainmri.data.io import item_kind
from brainmri.data.labels import apply_label_map
from brainmri.errors import DataError
from brainmri.models.catalog import check_inputs
from brainmri.runs.config import DataSettings


def audit_summary(report: dict) -> dict:
    """The counts of an ``audit.json`` report that results and bundle manifests carry."""
    return {
        "n_unreadable": report["n_unreadable"],
        "exact_duplicate_clusters": len(report["exact_duplicate_clusters"]),
        "exact_duplicate_images": report["n_exact_duplicate_images"],
        "near_duplicate_clusters": len(report["near_duplicate_clusters"]),
        "near_duplicate_images": report["n_near_duplicate_images"],
        "largest_cluster_size": report["largest_cluster_size"],
        "conflicting_label_clusters": len(report["conflicting_label_clusters"]),
        "cross_split_leaks": len(report["cross_split_leaks"]),
        "leaks_per_class": report["leaks_per_class"],
        "copy_kinds": report["copy_kinds"],
        "leak_kinds": report["leak_kinds"],
        **({"shortcuts": report["shortcuts"]} if "shortcuts" in report else {}),
    }


def read_training_data(
    settings: DataSettings,
    *,
    methods,
    option: str = "--methods",
    label_map: dict | None = None,
    n_jobs: int = -1,
    progress: Callable[[int], None] | None = None,
) -> Analysis:
    """Read and audit DATA once (every image decoded and fingerprinted), as ``benchmark``, ``train`` and ``tune`` do.

    Unreadable images are skipped and reported by the audit; the dataset
    must keep at least one readable image, of the kind (slices or volumes)
    that ``methods`` read.

    Raises
    ------
    DataError
        No readable image in DATA.
    ConfigError
        A method reads another kind of item than DATA holds (``option``
        names the option that chose the methods).
    """
    dataset = apply_label_map(load_dataset(settings.data, **settings.listing()), label_map, "DATA")
    analysis = analyse(
        dataset, params=settings.duplicates, n_jobs=n_jobs, progress=progress, max_pixels=settings.max_pixels
    )
    if not len(analysis.dataset):
        raise DataError(f"{settings.data}: no readable image; run `brainmri audit` to see why")
    check_inputs(methods, (item_kind(r.shape, r.mode) for r in analysis.records), option)
    return analysis


def read_extra_data(
    settings: DataSettings,
    extra_data: str,
    extra_label_map: dict | None,
    classes: list[str],
    against: list[Analysis],
    *,
    n_jobs: int = -1,
    progress: Callable[[int], None] | None = None,
):
    """``--extra-data`` read and audited as DATA is, its copies of the ``against`` collections dropped
    (:func:`~brainmri.data.extra.load_extra`)."""
    return load_extra(
        extra_data,
        extra_label_map,
        classes,
        against=against,
        params=settings.duplicates,
        n_jobs=n_jobs,
        progress=progress,
        max_pixels=settings.max_pixels,
        listing=settings.listing(),
    )


def check_extra_listing(settings: DataSettings, extra_data: str, extra_label_map: dict | None, classes) -> int:
    """Refuse, from its listing alone, ``--extra-data`` whose classes do not map onto ``classes``; its item count."""
    listing = apply_label_map(
        load_dataset(extra_data, **settings.listing()),
        extra_label_map,
        "--extra-data",
        option="--extra-label-map",
    )
    check_extra_classes(listing.classes, classes, extra_data)
    return len(listing)


def item_sources(dataset, n_test: int = 0, extra_data: str | None = None, n_extra: int = 0) -> np.ndarray:
    """The source of every item of a plan (DATA's, then ``n_test`` test items, then ``n_extra`` extra ones).

    DATA's items keep their manifest's ``source`` column, or are all of one
    source named after DATA's folder; the extra items form a source of their
    own (``extra:<folder>``); test items are never trained on (``test``).
    Source-balanced sampling (:mod:`brainmri.training.sampling`) reads them.
    """
    name = Path(str(dataset.root)).name or "DATA"
    own = [it.source or name for it in dataset.items] if dataset.has_sources else [name] * len(dataset)
    extra = [f"extra:{Path(str(extra_data)).name}"] * n_extra
    return np.array(own + ["test"] * n_test + extra, dtype=object)
