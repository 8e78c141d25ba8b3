"""``brainmri audit``: read a dataset, find its duplicates, leaks and shortcuts, and give the report.

:func:`run_audit` is what the command and :func:`brainmri.audit` run; the command prints the report
(:func:`~brainmri.data.audit.format_audit`) and writes ``audit.json``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path

import numpy as np

from brainmri.data.audit import analyse, audit_report, cross_dataset_leaks
from brainmri.data.dataset import load_dataset
from brainmri.data.duplicates import DuplicateParams
from brainmri.data.io import MAX_PIXELS, check_max_pixels
from brainmri.files import write_json
from brainmri.outputs import OutputFolder
from brainmri.runs.config import DataSettings
from brainmri.runs.provenance import Provenance, audit_shortcuts, dataset_sources

#: ``stage(n_items, what)``: a context that yields the function to call with the number of items done so far.
Stage = Callable[[int, str], AbstractContextManager[Callable[[int], None]]]


def run_audit(
    data: str | Path,
    *,
    against: str | Path | None = None,
    group_similar: bool = False,
    shortcuts: bool = False,
    duplicates: DuplicateParams | None = None,
    max_pixels: int = MAX_PIXELS,
    allow_outside_paths: bool = False,
    bids_label: str | None = None,
    bids_suffix: str = "T1w",
    seed: int = 0,
    n_jobs: int = -1,
    out: str | Path | None = None,
    stage: Stage | None = None,
) -> tuple[dict, int]:
    """Audit ``data``: the report of ``audit.json``, and the number of readable images.

    Parameters
    ----------
    data : path
        A dataset folder or CSV manifest.
    against : path or None
        A second collection: the copies of its images in ``data`` (``cross_dataset_leaks``).
    group_similar : bool
        Also count the look-alike groups (``similar_groups``).
    shortcuts : bool
        Also measure what predicts the label without anatomy (``shortcuts``, ``sources``).
    duplicates : DuplicateParams or None
        Thresholds of the duplicate search (None: the defaults).
    max_pixels, allow_outside_paths, seed, n_jobs
        As for every command.
    bids_label, bids_suffix
        For a BIDS dataset: the ``participants.tsv`` column with the class and the suffix of the images.
    out : path or None
        Folder of ``audit.json`` (checked before anything is read; never inside ``data``).
    stage : callable or None
        Progress of each stage (:data:`Stage`).
    """
    stage = stage or (lambda n, what: nullcontext(lambda done: None))
    params = duplicates or DuplicateParams()
    check_max_pixels(max_pixels)
    folder = OutputFolder(out, "audit") if out else None
    if folder is not None:
        folder.check(inputs=[data, *([against] if against else [])])
    listing = DataSettings(
        data=str(data), allow_outside_paths=allow_outside_paths, bids_label=bids_label, bids_suffix=bids_suffix
    ).listing()
    dataset = load_dataset(data, **listing)
    other = load_dataset(against, **listing) if against else None
    with stage(len(dataset), "reading") as update:
        analysis = analyse(dataset, params=params, n_jobs=n_jobs, progress=update, max_pixels=max_pixels)
    report = audit_report(analysis)
    if other is not None:
        with stage(len(other), "reading OTHER") as update:
            other_analysis = analyse(other, params=params, n_jobs=n_jobs, progress=update, max_pixels=max_pixels)
        report["cross_dataset_leaks"] = cross_dataset_leaks(analysis, other_analysis)
    if group_similar:
        sizes = np.bincount(analysis.similar_groups)
        report["similar_groups"] = {"n_groups": int(len(sizes)), "largest": int(sizes.max(initial=0))}
    if shortcuts:
        with stage(len(analysis.dataset), "shortcuts") as update:
            provenance = Provenance(analysis, n_jobs, update)
            properties = provenance.get()
        report["shortcuts"] = audit_shortcuts(analysis, properties, seed=seed, n_jobs=n_jobs)
        if all(p is not None for p in properties):
            report["sources"] = dataset_sources(analysis, provenance, seed=seed)[1]
    if folder is not None:
        with folder.recording():
            folder.start({"data": str(data)})
            write_json(folder / "audit.json", report)
    return report, len(analysis.dataset)
