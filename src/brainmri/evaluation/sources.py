"""Where the images of a collection came from, when nobody wrote it down: sources inferred from how files were made.

Public collections are often stitched together from several older ones
(brain-tumor-mri from figshare, SARTAJ and Br35H), each exported its own way
and acquired on its own scanners, and the classes are seldom spread evenly
across them. A test on another source needs to know the sources. When a
manifest has no ``source`` column, :func:`infer_sources` clusters the files
by the properties that describe their making and not their anatomy (the
``file metadata`` and ``acquisition`` groups of
:mod:`brainmri.features.provenance`: format, mode, size and JPEG tables,
one-hot; bytes per pixel, bit depth, noise, blockiness, ghosts, grey levels
and background level, standardised) with a Gaussian mixture
(scikit-learn), choosing the number of sources from 2 to
:data:`MAX_SOURCES` with the best silhouette among those that beat, by
:data:`MIN_GAIN`, the silhouette of the same clustering of one source (a
Gaussian with the files' own mean and covariance, the best of
:data:`NULL_DRAWS` draws), and one source when none does. Measured (2026-12-07): brain-tumor-mri 2
sources, silhouette 0.40 against 0.21 (the grayscale files, 3,093, which are
figshare's 3,064 tumour slices and 29 others, and the RGB ones);
brain-tumor-yes-no 2, 0.37 against 0.13; alzheimer-mri one (0.18 against
0.19); synthetic slices written one way, at most 0.14 above. The Bayesian
information criterion was tried first and kept falling up to 6 sources on
brain-tumor-mri; a silhouette alone splits even one source (0.36 for two
clusters of the synthetic slices). How confident
the clustering is comes with it: the mean posterior probability of each
file's source, the share of files above 0.9, and the silhouette of the
clusters. An inferred source is a hypothesis, not a record: say so wherever
it is used.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import numpy as np

from brainmri.features.provenance import GROUPS, NAMES, FileProperties

#: The largest number of sources tried.
MAX_SOURCES = 6
#: How much the silhouette (on a sample of 2,000 files) must beat that of one Gaussian source for a clustering to
#: be trusted; below it the collection is one source.
MIN_GAIN = 0.15
#: Draws of the one-source reference; the best of their silhouettes is the bar.
NULL_DRAWS = 3
#: Categorical properties one-hot encoded for the clustering (at most this many levels each, the rest pooled).
_CATEGORIES = ("format", "mode", "size", "jpeg_tables")
_LEVELS = 12
_NUMERIC = [
    n for n in GROUPS["file metadata"] + GROUPS["acquisition"] if n not in ("format", "mode", "height", "width")
]


def source_matrix(properties: Sequence[FileProperties]) -> np.ndarray:
    """The clustering's input: one-hot categories and standardised numeric properties, one row per file."""
    columns = []
    for prop in _CATEGORIES:
        values = [p.labels[prop] for p in properties]
        common = [v for v, _ in Counter(values).most_common(_LEVELS)]
        columns += [[float(v == level) for v in values] for level in common]
    numeric = np.stack([p.values[[NAMES.index(n) for n in _NUMERIC]] for p in properties]).astype(np.float64)
    spread = numeric.std(axis=0)
    numeric = (numeric - numeric.mean(axis=0)) / np.where(spread > 0, spread, 1.0)
    return np.column_stack([np.array(columns).T if columns else np.zeros((len(properties), 0)), numeric])


def infer_sources(
    properties: Sequence[FileProperties], labels: Sequence[str], *, seed: int = 0, max_sources: int = MAX_SOURCES
) -> tuple[np.ndarray, dict]:
    """Cluster files into sources (see the module docstring).

    Returns
    -------
    sources : ndarray of int, shape (n,)
        Source of each file, numbered from 0 by decreasing size.
    report : dict
        ``n_sources``, ``method``, ``silhouette`` (per number of sources tried), ``confidence`` (``mean_posterior``,
        ``share_above_0_9``, ``silhouette``), ``sources`` (per source: ``n``, ``classes`` (counts),
        ``properties`` (commonest value of each categorical property with its share)), and
        ``single_source_classes`` (classes found in one source only).
    """
    X = source_matrix(properties)
    y = np.asarray(labels, dtype=str)
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(X), size=min(len(X), 2000), replace=False)
    # One source, as a reference: a Gaussian with the files' own mean and covariance (unimodal, correlated alike).
    nulls = [rng.multivariate_normal(X.mean(axis=0), np.cov(X.T), size=len(X)) for _ in range(NULL_DRAWS)]
    fits, silhouettes, gains = {}, {}, {}
    for k in range(2, min(max_sources, len(X) - 1) + 1):
        model, score = _fit(X, k, sample, seed)
        if score is None:
            continue
        null = max((_fit(n, k, sample, seed)[1] or -1.0) for n in nulls)
        fits[k], silhouettes[k], gains[k] = model, score, score - null
    trusted = [k for k in gains if gains[k] >= MIN_GAIN]
    best = max(trusted, key=silhouettes.get) if trusted else None
    if best is None:
        raw, top = np.zeros(len(X), dtype=int), np.ones(len(X))
    else:
        posterior = fits[best].predict_proba(X)
        raw, top = posterior.argmax(axis=1), posterior.max(axis=1)
    order = [c for c, _ in Counter(raw.tolist()).most_common()]
    sources = np.array([order.index(c) for c in raw])
    report = {
        "n_sources": len(order),
        "method": "Gaussian mixture over file metadata and export/noise descriptors; the number of sources with the "
        f"best silhouette among those beating one Gaussian source's by {MIN_GAIN}, else one source",
        "silhouette": {str(k): round(v, 4) for k, v in silhouettes.items()},
        "silhouette_over_one_source": {str(k): round(v, 4) for k, v in gains.items()},
        "confidence": {
            "mean_posterior": round(float(top.mean()), 4),
            "share_above_0_9": round(float((top > 0.9).mean()), 4),
            "silhouette": round(silhouettes[best], 4) if len(order) > 1 else None,
            "over_one_source": round(gains[best], 4) if len(order) > 1 else None,
        },
        "sources": [_describe(properties, y, sources == s) for s in range(len(order))],
    }
    report["single_source_classes"] = {
        c: int(next(s for s in range(len(order)) if np.any((sources == s) & (y == c))))
        for c in sorted(set(y.tolist()))
        if len(order) > 1 and len(set(sources[y == c].tolist())) == 1
    }
    return sources, report


def _fit(X: np.ndarray, k: int, sample: np.ndarray, seed: int):
    """A ``k``-source Gaussian mixture of ``X`` and the silhouette of its clusters on ``sample`` (None if 1 cluster)."""
    from sklearn.metrics import silhouette_score
    from sklearn.mixture import GaussianMixture

    model = GaussianMixture(k, covariance_type="diag", reg_covar=1e-3, n_init=2, random_state=seed).fit(X)
    found = model.predict(X[sample])
    return model, (float(silhouette_score(X[sample], found)) if len(set(found.tolist())) > 1 else None)


def _describe(properties: Sequence[FileProperties], y: np.ndarray, members: np.ndarray) -> dict:
    idx = np.flatnonzero(members)
    props = {}
    for prop in ("mode", "jpeg_tables", "size", "contrast_class", "background_class"):
        value, count = Counter(properties[i].labels[prop] for i in idx).most_common(1)[0]
        props[prop] = {"value": value, "share": round(count / len(idx), 4)}
    return {"n": int(len(idx)), "classes": dict(sorted(Counter(y[idx].tolist()).items())), "properties": props}


def format_sources(report: dict) -> list[str]:
    """Terminal lines of an :func:`infer_sources` report."""
    conf = report["confidence"]
    silhouette = "n/a" if conf["silhouette"] is None else f"{conf['silhouette']:.2f}"
    lines = [
        f"inferred sources: {report['n_sources']} (a hypothesis from how the files were made; mean posterior "
        f"{conf['mean_posterior']:.2f}, {conf['share_above_0_9']:.0%} of files above 0.9, silhouette {silhouette})"
    ]
    for s, block in enumerate(report["sources"]):
        classes = ", ".join(f"{c} {n}" for c, n in block["classes"].items())
        props = ", ".join(f"{v['value']} {v['share']:.0%}" for v in block["properties"].values())
        lines.append(f"  source {s}: {block['n']} files ({classes}); {props}")
    for c, s in report["single_source_classes"].items():
        lines.append(f"  class {c} is found in source {s} only: a test on another source cannot score it")
    return lines
