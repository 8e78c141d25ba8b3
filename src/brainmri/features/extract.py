"""From image files to feature matrices: read, preprocess, extract - in parallel, cached on disk.

The features of every image are cached (:mod:`brainmri.data.cache`) by the
content hash of the file plus the extractor's and preprocessing's
parameters and code versions (``ImageTransformer.version``,
``Preprocess.version``), so a second benchmark on the same data (or another
method needing the same extractor) reads the features instead of
recomputing them, and never reads features that older code computed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin, clone

from brainmri.data.cache import FeatureCache, MemoryCache, item_digest, open_cache, preprocess_key
from brainmri.data.nyul import learn_landmarks
from brainmri.data.preprocess import Preprocess, landmark_params, load_preprocessed, read_preprocessed
from brainmri.features.base import ImageTransformer

logger = logging.getLogger(__name__)


def _extract_chunk(
    paths: list[str | np.ndarray], preprocess: Preprocess, extractors: list[ImageTransformer]
) -> list[list[np.ndarray]]:
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
    known = [
        cache.get(k, digests, length=ex.n_features_out_) if cache is not None else {}
        for k, ex in zip(keys, extractors, strict=True)
    ]
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
            else Parallel(n_jobs=n_jobs, return_as="generator")(
                job([paths[k] for k in c], preprocess, extractors) for c in chunks
            )
        )
        fresh: list[dict[str, np.ndarray]] = [{} for _ in extractors]
        for chunk, blocks in zip(chunks, runner, strict=True):
            for e, block in enumerate(blocks):
                for k, row in zip(chunk, block, strict=True):
                    fresh[e][digests[k]] = row
            if progress:
                progress(len(chunk))
        for e, rows in enumerate(fresh):
            known[e].update(rows)
            if cache is not None:
                cache.put(keys[e], rows)
        logger.info("computed features of %d images (%d from cache)", len(todo), len(paths) - len(todo))
    blocks = [
        np.vstack([kn[d] for d in digests]) if digests else np.zeros((0, ex.n_features_out_))
        for kn, ex in zip(known, extractors, strict=True)
    ]
    return np.hstack(blocks)


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
        self.feature_names_ = [name for _, ex in self.extractors for name in clone(ex).fit().feature_names_]
        self.n_features_out_ = len(self.feature_names_)
        self.preprocess_ = learn_landmarks(self.preprocess or Preprocess(), X, read_preprocessed)
        self.params_ = landmark_params(self.preprocess or Preprocess(), self.preprocess_)
        return self

    def transform(self, X) -> np.ndarray:
        return compute_features(
            list(X),
            [ex for _, ex in self.extractors],
            preprocess=getattr(self, "preprocess_", self.preprocess),
            cache=open_cache(self.cache_dir),
            n_jobs=self.n_jobs,
        )

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
            if (
                preprocess is not None
                and step.cache_dir
                and not (preprocess.harmonise == "nyul" and preprocess.landmarks is None)
            ):
                where = step.cache_dir if isinstance(step.cache_dir, MemoryCache) else str(step.cache_dir)
                group = wanted.setdefault((where, preprocess), {})
                for _, extractor in step.extractors:
                    group.setdefault(extractor.cache_key(), extractor)
    for (where, preprocess), extractors in wanted.items():
        compute_features(
            paths,
            list(extractors.values()),
            preprocess=preprocess,
            cache=open_cache(where),
            n_jobs=n_jobs,
            progress=progress,
        )
    return sum(len(e) for e in wanted.values())
