"""The provenance of a dataset's files in a run: the shortcut audit and the sources (``--grouping source``).

The files' provenance properties (:mod:`brainmri.features.provenance`) are
measured once per run (:class:`Provenance`) and serve both the shortcut
audit (:mod:`brainmri.evaluation.shortcuts`) and the inference of sources
(:mod:`brainmri.evaluation.sources`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from brainmri.data.audit import Analysis
from brainmri.data.splits import Split, source_splits
from brainmri.errors import DataError


def audit_shortcuts(analysis: Analysis, properties: list, *, seed: int = 0, n_jobs: int = -1) -> dict:
    """The shortcut audit of a read dataset (:mod:`brainmri.evaluation.shortcuts`), grouped by look-alike group.

    ``properties``: the files' :func:`~brainmri.evaluation.shortcuts.measure_files` (:meth:`Provenance.get`).
    """
    from brainmri.evaluation.shortcuts import shortcut_study

    labels = analysis.dataset.labels.astype(str)
    return shortcut_study(properties, labels, analysis.similar_groups, seed=seed, n_jobs=n_jobs)


class Provenance:
    """The provenance properties of a dataset's files, measured once when first asked for (shortcuts, sources)."""

    def __init__(self, analysis: Analysis, n_jobs: int, progress: Callable[[int], None] | None):
        self.analysis, self.n_jobs, self.progress, self.properties = analysis, n_jobs, progress, None

    def get(self) -> list:
        from brainmri.evaluation.shortcuts import measure_files

        if self.properties is None:
            paths = [it.path for it in self.analysis.dataset.items]
            self.properties = measure_files(paths, n_jobs=self.n_jobs, progress=self.progress)
        return self.properties


def dataset_sources(analysis: Analysis, provenance: Provenance, *, seed: int = 0) -> tuple[np.ndarray, dict]:
    """The source of every item: the manifest's ``source`` column, or sources inferred from the files (measured
    through ``provenance`` only then).

    Returns the source index of each item and a report: ``origin`` (``manifest`` or ``inferred``), ``names``, and
    for inferred sources what :func:`brainmri.evaluation.sources.infer_sources` says of them.
    """
    from brainmri.evaluation.sources import infer_sources

    ds = analysis.dataset
    if ds.has_sources:
        names, index = np.unique([it.source for it in ds.items], return_inverse=True)
        return index.ravel(), {"origin": "manifest", "names": [str(n) for n in names]}
    properties = provenance.get()
    if any(p is None for p in properties):
        raise DataError("some files could not be measured for their source; see the audit's unreadable list")
    sources, report = infer_sources(properties, ds.labels.astype(str), seed=seed)
    return sources, {"origin": "inferred", "names": [str(k) for k in range(report["n_sources"])], **report}


def source_folds(analysis: Analysis, provenance: Provenance, *, seed: int = 0) -> tuple[list[Split], list[str], dict]:
    """Leave-source-out splits of a read dataset, the notes on what they cannot score, and the sources' report.

    Raises
    ------
    DataError
        When DATA holds one source, or no held-out source can be scored.
    """
    sources, report = dataset_sources(analysis, provenance, seed=seed)
    if len(report["names"]) < 2:
        raise DataError(
            f"--grouping source: DATA holds one source ({report['origin']}"
            + (f", {report['method']}" if report["origin"] == "inferred" else "")
            + "); holding one out leaves nothing to train on. Add a source column to the CSV manifest, or use "
            "--test-data OTHER for a test on another source"
        )
    splits, notes = source_splits(analysis, sources, report["names"])
    if not splits:
        raise DataError("--grouping source: no held-out source can be scored; " + "; ".join(notes))
    if report["origin"] == "inferred":
        notes.insert(
            0,
            f"sources inferred from how the files were made ({report['method']}; mean posterior "
            f"{report['confidence']['mean_posterior']:.2f}): a hypothesis, not a record; a manifest's source column "
            "replaces it",
        )
    return splits, notes, report
