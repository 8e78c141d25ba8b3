"""Nyúl histogram standardisation: the standard-scale landmarks, learned from a method's training images.

The landmarks are learned once, in the first step's ``fit``, from the
training items only (:func:`learn_landmarks`); applying them is
:func:`brainmri.data.harmonise.apply_landmarks`, part of the preprocessing
(:mod:`brainmri.data.harmonise` describes the method and its reference).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Sequence

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from brainmri.data.harmonise import apply_landmarks, check_landmarks, image_landmarks
from brainmri.data.head import head_mask
from brainmri.errors import ConfigError, DataError

logger = logging.getLogger(__name__)


#: Training images that the landmarks are learned from, at most (evenly spaced over the training items): the
#: averaged landmarks of 1000 images move by well under 1/255 when more are added.
MAX_LANDMARK_IMAGES = 1000


class HistogramStandardizer(TransformerMixin, BaseEstimator):
    """Nyúl histogram standardisation of 2D images, its landmarks learned in ``fit``.

    ``fit`` maps every training image's :data:`PERCENTILES` inside its head
    mask linearly from [pc1, pc2] onto [0, 1] and averages them: those are
    the standard-scale landmarks. ``transform`` maps every image's own
    percentiles onto them (:func:`apply_landmarks`).

    Parameters
    ----------
    max_images : int or None
        Learn from at most this many images, evenly spaced over ``X`` (None:
        all of them).

    Attributes
    ----------
    landmarks_ : ndarray of float64, shape (len(PERCENTILES),)
        From 0 to 1, rounded to 6 decimals (so that they round-trip through
        JSON unchanged).
    n_images_ : int
        Images they were learned from.

    Examples
    --------
    >>> images = [np.linspace(0, 1, 400).reshape(20, 20) ** 2] * 3
    >>> landmarks = HistogramStandardizer().fit(images).landmarks_
    >>> len(landmarks), float(landmarks[0]), float(landmarks[-1])
    (11, 0.0, 1.0)
    """

    def __init__(self, *, max_images=MAX_LANDMARK_IMAGES):
        self.max_images = max_images

    def fit(self, X, y=None):
        """Learn the standard-scale landmarks from the images ``X`` (sequence of 2D arrays)."""
        if self.max_images is not None and (
            isinstance(self.max_images, bool) or not isinstance(self.max_images, int) or self.max_images < 1
        ):
            raise ConfigError(
                f"HistogramStandardizer max_images must be a positive integer or None, got {self.max_images!r}"
            )
        images = _sample(list(X), self.max_images)
        if not images:
            raise DataError("Nyúl histogram standardisation needs training images to learn its landmarks, got none")
        rows = []
        for image in images:
            image = _check_image(image)
            own = image_landmarks(image, head_mask(image))
            span = own[-1] - own[0]
            if span > 1e-6:  # a flat image says nothing about the histogram's shape
                rows.append((own - own[0]) / span)
        if not rows:
            raise DataError(
                f"Nyúl histogram standardisation: the {len(images)} training images are all flat inside "
                "the head; nothing to learn landmarks from"
            )
        self.landmarks_ = np.asarray(check_landmarks(np.round(np.mean(rows, axis=0), 6)))
        self.n_images_ = len(rows)
        return self

    def transform(self, X) -> np.ndarray:
        """The images standardised: float32 of shape ``(n, H, W)`` (all images must share a shape)."""
        check_is_fitted(self, "landmarks_")
        out = [apply_landmarks(image, head_mask(image), self.landmarks_) for image in map(_check_image, X)]
        return np.stack(out) if out else np.zeros((0, 0, 0), dtype=np.float32)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        return tags


def _check_image(image) -> np.ndarray:
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise DataError(f"histogram standardisation takes 2D slices, got an array of shape {image.shape}")
    return image


def _sample(items: list, at_most: int | None) -> list:
    """At most ``at_most`` of ``items``, evenly spaced (all when None or fewer)."""
    if at_most is None or len(items) <= at_most:
        return items
    return [items[k] for k in np.linspace(0, len(items) - 1, at_most).round().astype(int)]


def learn_landmarks(preprocess, X, read: Callable[[list, object], Sequence[np.ndarray]]):
    """``preprocess`` with Nyúl landmarks learned from the training items ``X``, when it asks for them.

    The first step of a method calls this in ``fit`` with its training
    items. A preprocessing without ``harmonise="nyul"``, or with landmarks
    already (from a bundle), is returned as it is.

    Parameters
    ----------
    preprocess : Preprocess
    X : sequence of path or 2D ndarray
        The training items.
    read : callable
        ``read(items, preprocess)``: the items preprocessed by
        ``preprocess`` (the step's own, cached reading).

    Returns
    -------
    Preprocess
    """
    if preprocess.harmonise != "nyul" or preprocess.landmarks is not None:
        return preprocess
    sample = _sample(list(X), MAX_LANDMARK_IMAGES)
    base = dataclasses.replace(preprocess, harmonise="none")
    fitted = HistogramStandardizer(max_images=None).fit(list(read(sample, base)))
    logger.info("learned Nyúl landmarks from %d training images: %s", fitted.n_images_, fitted.landmarks_.tolist())
    return dataclasses.replace(preprocess, landmarks=tuple(fitted.landmarks_.tolist()))
