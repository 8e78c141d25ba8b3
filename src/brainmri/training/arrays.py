"""Decoded and preprocessed images (or volumes) as one array, cached: an epoch reads arrays, not JPEGs.

:class:`ImageArrays` is the first step of the image-based deep methods: it
turns image paths (or 2D arrays) into a float16 array of shape
``(n, size, size)``, values in [0, 1]. Decoding a JPEG, cropping and
resizing it costs milliseconds; reading the same image from memory costs
microseconds, so the images are decoded once per run (into the run's
:class:`~brainmri.data.cache.MemoryCache`) or once per machine (into
``CACHE_DIR/arrays/``). Entries are keyed like the feature cache: the file's
content hash plus the preprocessing settings and
``Preprocess.version``, so a change of either never reads old arrays.
float16 keeps 11 significant bits, more than the 8 bits of the JPEG and
PNG files it is decoded from, at half the memory of float32.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from brainmri.data.cache import ArrayCache, MemoryCache, file_digest, preprocess_key
from brainmri.data.nyul import learn_landmarks
from brainmri.data.preprocess import Preprocess, landmark_params, load_preprocessed
from brainmri.data.volumes import VolumePreprocess
from brainmri.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

#: Images decoded per worker task.
CHUNK = 64


def _decode(paths: list[str], preprocess: Preprocess) -> list[np.ndarray]:
    return [load_preprocessed(p, preprocess).astype(np.float16) for p in paths]


class ImageArrays(TransformerMixin, BaseEstimator):
    """Transformer from image paths (or 2D arrays) to an array of preprocessed images.

    Parameters
    ----------
    size : int
        Images are ``size x size`` pixels (replaces ``preprocess.size``).
    preprocess : Preprocess or None
        Shared preprocessing (crop, intensity clipping); None means
        ``Preprocess()``.
    cache_dir : str, MemoryCache or None
        Cache folder (arrays go to ``cache_dir/arrays``), a run's in-memory
        cache, or None (decode every time).
    n_jobs : int
        Worker processes decoding images that are not cached.

    Examples
    --------
    >>> import numpy as np
    >>> ImageArrays(size=16).fit([]).transform([np.ones((40, 30))]).shape
    (1, 16, 16)
    """

    #: Dimensions of an item, and what it is called in errors.
    _ndim, _kind = 2, "2D slice"

    def __init__(self, *, size=128, preprocess=None, cache_dir=None, n_jobs=1):
        self.size = size
        self.preprocess = preprocess
        self.cache_dir = cache_dir
        self.n_jobs = n_jobs

    def _preprocess(self) -> Preprocess:
        return dataclasses.replace(self.preprocess or Preprocess(), size=self.size)

    def fit(self, X=None, y=None):
        """Check the settings; learn Nyúl landmarks from ``X`` if the preprocessing asks for them.

        Only ``harmonise="nyul"`` without landmarks learns anything
        (:func:`~brainmri.data.harmonise.learn_landmarks`, from the cached
        arrays of the items without harmonisation); a bundle keeps the
        landmarks in its manifest's preprocessing, which its builder gets
        back, so this step is never stored.
        """
        given = self._preprocess()
        self.preprocess_ = learn_landmarks(given, [] if X is None else X, self._images)
        self.params_ = landmark_params(given, self.preprocess_)
        return self

    def transform(self, X) -> np.ndarray:
        """Preprocessed images, float16 of shape ``(len(X), size, size)``, values in [0, 1].

        Items of ``X`` are file paths or 2D arrays (which are preprocessed,
        never cached).
        """
        return self._images(X, getattr(self, "preprocess_", None) or self._preprocess())

    def _images(self, X, preprocess) -> np.ndarray:
        out = np.zeros((len(X), *(self.size,) * self._ndim), dtype=np.float16)
        files = [k for k, x in enumerate(X) if isinstance(x, (str, Path))]
        for k in sorted(set(range(len(X))) - set(files)):
            image = np.asarray(X[k])
            if image.ndim != self._ndim:
                raise DataError(f"item {k}: an array of shape {image.shape}; expected a {self._kind} or a file path")
            out[k] = preprocess(image)
        if files:
            out[files] = self._read([str(X[k]) for k in files], preprocess)
        return out

    def _read(self, paths: list[str], preprocess: Preprocess) -> np.ndarray:
        from joblib import Parallel, delayed

        cache = self._cache()
        key = f"{preprocess_key(preprocess)}-{self.size}"
        digests = [file_digest(p) for p in paths]
        known = cache.get(key, digests, shape=(self.size,) * self._ndim) if cache is not None else {}
        first: dict[str, str] = {}
        for path, digest in zip(paths, digests, strict=True):
            if digest not in known:
                first.setdefault(digest, path)
        if first:
            todo = list(first.items())
            chunks = [todo[s : s + CHUNK] for s in range(0, len(todo), CHUNK)]
            if self.n_jobs == 1 or len(chunks) == 1:
                decoded = [_decode([p for _, p in c], preprocess) for c in chunks]
            else:
                decoded = Parallel(n_jobs=self.n_jobs)(delayed(_decode)([p for _, p in c], preprocess) for c in chunks)
            fresh = {
                d: a for c, arrays in zip(chunks, decoded, strict=True) for (d, _), a in zip(c, arrays, strict=True)
            }
            if cache is not None:
                cache.put(key, fresh)
            known.update(fresh)
            logger.info("decoded %d images (%d from cache)", len(fresh), len(paths) - len(fresh))
        return np.stack([known[d] for d in digests])

    def _cache(self) -> ArrayCache | MemoryCache | None:
        if isinstance(self.cache_dir, MemoryCache):
            return self.cache_dir
        return ArrayCache(Path(self.cache_dir) / "arrays") if self.cache_dir else None

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = False
        return tags


class VolumeArrays(ImageArrays):
    """Transformer from volume paths (or 3D arrays) to an array of preprocessed volumes.

    :class:`ImageArrays` for 3D: the same cache (content hash + settings +
    :attr:`~brainmri.data.volumes.VolumePreprocess.version`), the same
    parallel decoding; each volume goes through
    :class:`~brainmri.data.volumes.VolumePreprocess` with the crop and
    clipping of ``preprocess``.

    Parameters
    ----------
    size : int
        Volumes are ``size x size x size`` voxels.
    preprocess, cache_dir, n_jobs
        As :class:`ImageArrays`.

    Examples
    --------
    >>> import numpy as np
    >>> VolumeArrays(size=8).fit([]).transform([np.ones((20, 24, 22))]).shape
    (1, 8, 8, 8)
    """

    _ndim, _kind = 3, "3D volume"

    def __init__(self, *, size=32, preprocess=None, cache_dir=None, n_jobs=1):
        super().__init__(size=size, preprocess=preprocess, cache_dir=cache_dir, n_jobs=n_jobs)

    def _preprocess(self) -> VolumePreprocess:
        return VolumePreprocess.like(self.preprocess, self.size)

    def fit(self, X=None, y=None):
        """Check the settings: the harmonisation options (``--harmonise``, ``--n4``) are for 2D slices only.

        Raises
        ------
        ConfigError
        """
        given = self.preprocess or Preprocess()
        if given.harmonise != "none" or given.n4:
            option = f"--harmonise {given.harmonise}" if given.harmonise != "none" else "--n4"
            raise ConfigError(
                f"{option}: harmonisation applies to 2D slices, not to volumes; leave it out for volume methods"
            )
        self.preprocess_ = self._preprocess()
        self.params_ = {}
        return self
