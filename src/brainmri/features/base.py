"""The protocol shared by every feature extractor."""

from __future__ import annotations

import hashlib
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from brainmri.errors import ConfigError, DataError


class ImageTransformer(TransformerMixin, BaseEstimator):
    """Base of the extractors: stateless transformers from images to feature rows.

    ``X`` is a sequence of 2D float images with values in [0, 1] (the output
    of :class:`~brainmri.data.preprocess.Preprocess`), or an array of shape
    ``(n_images, H, W)``. ``transform`` returns float64 of shape
    ``(n_images, n_features)``. Subclasses store their arguments in
    ``__init__`` and implement ``_validate``, ``_names`` and ``_extract``
    (one image to a 1D vector), and set ``version``.

    Attributes
    ----------
    version : int
        Version of the extractor's output, part of :meth:`cache_key`. Bump it
        in every change that alters the features of some image under the same
        parameters, so the feature cache never serves rows of the old code;
        ``tests/features/test_versions.py`` fails when the output of a fixed
        image changes and the version does not.
    """

    version: ClassVar[int]

    def _validate(self) -> None:  # pragma: no cover - overridden
        pass

    def _names(self) -> list[str]:
        raise NotImplementedError

    def _extract(self, image: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check(self, ok: bool, name: str, value, allowed: str) -> None:
        if not ok:
            raise ConfigError(f"{type(self).__name__}: {name} must be {allowed}, got {value!r}")

    def fit(self, X=None, y=None):
        """Validate the parameters (the extractors learn nothing from data)."""
        self._validate()
        self.feature_names_ = list(self._names())
        self.n_features_out_ = len(self.feature_names_)
        return self

    def transform(self, X) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        rows = []
        for k, image in enumerate(X):
            image = np.asarray(image, dtype=np.float64)
            if image.ndim != 2:
                raise DataError(f"{type(self).__name__}: image {k} has shape {image.shape}; expected a 2D slice")
            rows.append(self._extract(image))
        if not rows:
            return np.zeros((0, self.n_features_out_))
        return np.vstack(rows).astype(np.float64)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        check_is_fitted(self, "feature_names_")
        return np.asarray(self.feature_names_, dtype=object)

    def cache_key(self) -> str:
        """Identifies the extractor, its code version and its parameters (the feature cache key)."""
        text = type(self).__name__ + repr(sorted(self.get_params().items()))
        digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
        return f"{type(self).__name__}-v{self.version}-{digest}"

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = False
        return tags
