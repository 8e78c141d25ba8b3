"""Preprocessing shared by every method: crop to the head, pad to a square, resize, correct, normalise.

Each step is optional; the :class:`Preprocess` settings are written next to
every result so a run can be repeated exactly. The intensity harmonisation
options (z-scoring in the head, Nyúl histogram standardisation, N4
bias-field correction) are in :mod:`brainmri.data.harmonise`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import ClassVar

import numpy as np

from brainmri.data.harmonise import HARMONISE, apply_landmarks, check_landmarks, n4_correct, zscore_in_head
from brainmri.data.head import crop_to_head, head_mask
from brainmri.data.io import read_image
from brainmri.errors import ConfigError, DataError

#: Largest side, in pixels, of a preprocessed image or a network's square input: 1024 x 1024 is four times the
#: largest slices of the public sets, and 7,000 such images already take 29 GB as float32.
MAX_IMAGE_SIZE = 1024


@dataclass(frozen=True)
class Preprocess:
    """Settings of the shared preprocessing.

    Parameters
    ----------
    crop : bool
        Crop to the bounding box of the largest connected component above an
        Otsu threshold (the head), removing empty background and labels.
    size : int or None
        Resize to ``size x size`` pixels; None keeps the (cropped) size.
    clip_percentiles : tuple of float or None
        Clip intensities to these percentiles, then scale to [0, 1]. None
        only scales min..max to [0, 1].
    harmonise : {"none", "zscore", "nyul"}
        Intensity standardisation after that scaling
        (:mod:`brainmri.data.harmonise`): none; z-scores inside the head mask
        (:func:`~brainmri.data.harmonise.zscore_in_head`); or Nyúl et al.'s
        histogram standardisation with ``landmarks`` learned on training
        images (:class:`~brainmri.data.harmonise.HistogramStandardizer`).
    n4 : bool
        N4 bias-field correction (SimpleITK) inside the head mask, after the
        resize (:func:`~brainmri.data.harmonise.n4_correct`).
    keep_aspect : bool
        Pad the (cropped) image to a square with its darkest value before
        the resize, so that the head keeps its shape; False stretches the
        crop to ``size x size``.
    landmarks : tuple of float or None
        The standard-scale landmarks of ``harmonise="nyul"``, learned on
        training images only, never set by hand: the first step of a method
        learns them in ``fit`` (:func:`~brainmri.data.harmonise.learn_landmarks`),
        and a bundle's manifest keeps them.
    canonical : bool
        Decode every file the same way before any other step
        (:func:`canonical_decoding`): one 8-bit grey channel and one JPEG
        quantisation, so that the file's mode, bit depth and JPEG tables
        (a shortcut when one class comes from one publisher's export) reach
        the model as little as possible.

    Attributes
    ----------
    version : int
        Version of the preprocessing code, part of the feature cache key
        (not a setting). Bump it in every change of :func:`crop_to_head`,
        :func:`resize`, :func:`normalize_intensity` or ``__call__`` that
        alters the output for some image, so cached features of the old
        code are never read; ``tests/features/test_versions.py`` fails
        when the output of a fixed image changes and the version does not.
        The settings added after version 1 (``harmonise`` and those after
        it) are left out of :meth:`to_dict` at their defaults, which do not
        change the output, so cache keys, results and bundles of earlier
        runs stay valid.
    """

    version: ClassVar[int] = 1

    crop: bool = True
    size: int | None = 224
    clip_percentiles: tuple[float, float] | None = (0.5, 99.5)
    harmonise: str = "none"
    n4: bool = False
    keep_aspect: bool = False
    landmarks: tuple[float, ...] | None = None
    canonical: bool = False

    def __post_init__(self):
        if self.harmonise not in HARMONISE:
            raise ConfigError(f"--harmonise must be one of {', '.join(HARMONISE)}, got {self.harmonise!r}")
        for name in ("crop", "n4", "keep_aspect", "canonical"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"preprocess {name} must be true or false, got {getattr(self, name)!r}")
        if self.landmarks is not None:
            if self.harmonise != "nyul":
                raise ConfigError(
                    f"preprocess landmarks apply to harmonise 'nyul' only, got harmonise {self.harmonise!r}"
                )
            object.__setattr__(self, "landmarks", check_landmarks(self.landmarks))
        if self.size is not None and (
            isinstance(self.size, bool) or not isinstance(self.size, int) or not 8 <= self.size <= MAX_IMAGE_SIZE
        ):
            raise ConfigError(
                f"--size must be an integer from 8 to {MAX_IMAGE_SIZE} (pixels a side), got {self.size!r}"
            )
        if self.clip_percentiles is not None:
            low, high = self.clip_percentiles
            if not 0 <= low < high <= 100:
                raise ConfigError(
                    f"clip percentiles must satisfy 0 <= low < high <= 100, got {self.clip_percentiles!r}"
                )

    def to_dict(self) -> dict:
        """The settings, without those added after version 1 that are at their defaults."""
        d = asdict(self)
        for f in fields(self)[_VERSION_1_FIELDS:]:
            if d[f.name] == f.default:
                del d[f.name]
        return d

    @classmethod
    def from_dict(cls, settings: dict) -> Preprocess:
        """The preprocessing that :meth:`to_dict` (or a bundle manifest, with ``version``) describes.

        >>> Preprocess.from_dict(Preprocess(size=64, harmonise="zscore").to_dict()) == Preprocess(size=64, harmonise="zscore")
        True
        """
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in settings.items() if k in known}
        for key in ("clip_percentiles", "landmarks"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        return cls(**values)

    def geometry(self, image: np.ndarray, reference: np.ndarray | None = None) -> np.ndarray:
        """The spatial steps (crop to the head, pad to a square, resize) of ``image``, as float32.

        ``reference`` (default ``image``) is the image whose head box crops
        it: a lesion mask is moved into the model's input space by the box
        of its image.
        """
        image = np.asarray(image, dtype=np.float32)
        if self.crop:
            image = crop_to_head(
                image, reference=None if reference is None else np.asarray(reference, dtype=np.float32)
            )
        if self.keep_aspect:
            image = pad_to_square(image)
        if self.size is not None and image.shape != (self.size, self.size):
            image = resize(image, self.size)
        return image

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """Apply the steps to one 2D image.

        Parameters
        ----------
        image : ndarray, shape (H, W)

        Returns
        -------
        ndarray of float32, shape (size, size) or cropped shape, values in [0, 1]
        """
        if image.ndim != 2:
            raise DataError(
                f"expected a 2D slice, got an array of shape {image.shape}; "
                "3D volumes need a 3D method or slicing first"
            )
        if self.canonical:
            image = canonical_decoding(image)
        image = self.geometry(image)
        if self.harmonise == "none" and not self.n4:
            return normalize_intensity(image, self.clip_percentiles)
        mask = head_mask(image)
        if self.n4:
            image = n4_correct(image, mask)
        image = normalize_intensity(image, self.clip_percentiles)
        if self.harmonise == "zscore":
            return zscore_in_head(image, mask)
        if self.harmonise == "nyul":
            if self.landmarks is None:
                raise ConfigError(
                    "harmonise 'nyul' needs landmarks learned on training images; fit the method "
                    "(its first step learns them) or load a bundle that has them"
                )
            return apply_landmarks(image, mask, self.landmarks)
        return image


#: Fields of :class:`Preprocess` at version 1 (crop, size, clip_percentiles); later ones are recorded only when set.
_VERSION_1_FIELDS = 3


#: JPEG quality of :func:`canonical_decoding`: coarser than the exports of the public sets (their luminance tables
#: are those of quality 75-95), so that its quantisation, not the file's, sets the fine detail the model sees.
CANONICAL_QUALITY = 75


def canonical_decoding(image: np.ndarray) -> np.ndarray:
    """``image`` as if every file had been exported the same way: 8-bit grey, then one JPEG round trip.

    The reader has already made one grey channel of every mode (the channel
    mean of grey RGB content, :func:`~brainmri.data.io.read_image`). This
    step scales the stored values (any bit depth, DICOM units) to 0..255,
    rounds them to 8 bits and passes them through one JPEG encoding at
    :data:`CANONICAL_QUALITY` with Pillow, so that PNG, grayscale JPEG and
    RGB JPEG files of one slice reach the model nearly alike (issue 23:
    98.5% of one public set's ``notumor`` files are RGB JPEGs). It cannot
    undo an earlier, coarser compression. Returns float32 in 0..255.

    >>> canonical_decoding(np.zeros((8, 8))).max()
    np.float32(0.0)
    """
    import io

    from PIL import Image

    image = np.asarray(image, dtype=np.float64)
    low, high = float(image.min()), float(image.max())
    scaled = np.zeros(image.shape) if high <= low else (image - low) * (255.0 / (high - low))
    buffer = io.BytesIO()
    Image.fromarray(np.round(scaled).astype(np.uint8), mode="L").save(buffer, format="JPEG", quality=CANONICAL_QUALITY)
    buffer.seek(0)
    with Image.open(buffer) as decoded:
        return np.asarray(decoded, dtype=np.float32)


def resize(image: np.ndarray, size: int) -> np.ndarray:
    """Bilinear, antialiased resize to ``size x size`` (float32).

    Pillow's float ("F") resize is used rather than ``skimage.transform.resize``
    because it is an order of magnitude faster and antialiases as well.
    """
    from PIL import Image

    return np.asarray(
        Image.fromarray(np.asarray(image, dtype=np.float32), mode="F").resize((size, size), Image.BILINEAR)
    )


def pad_to_square(image: np.ndarray) -> np.ndarray:
    """Pad the shorter side with the image's darkest value, equally on both sides, to a square.

    >>> pad_to_square(np.ones((2, 4))).tolist()
    [[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0]]
    >>> pad_to_square(np.array([[1.0, 2.0]])).tolist()
    [[1.0, 2.0], [1.0, 1.0]]
    """
    rows, cols = image.shape
    side = max(rows, cols)
    if rows == cols:
        return image
    top, left = (side - rows) // 2, (side - cols) // 2
    return np.pad(image, ((top, side - rows - top), (left, side - cols - left)), constant_values=image.min())


def normalize_intensity(image: np.ndarray, clip_percentiles: tuple[float, float] | None = (0.5, 99.5)) -> np.ndarray:
    """Clip to percentiles (optional) and scale to [0, 1] as float32.

    >>> normalize_intensity(np.array([[0.0, 5.0], [10.0, 20.0]]), None).tolist()
    [[0.0, 0.25], [0.5, 1.0]]
    """
    if clip_percentiles is not None:
        # Percentiles of every second row and column: 4x cheaper, same values to within noise.
        low, high = np.percentile(image[::2, ::2] if min(image.shape) >= 64 else image, clip_percentiles)
    else:
        low, high = float(image.min()), float(image.max())
    if high <= low:
        return np.zeros(image.shape, dtype=np.float32)
    return ((np.clip(image, low, high) - low) / (high - low)).astype(np.float32)


def load_preprocessed(path: str | Path | np.ndarray, preprocess: Preprocess) -> np.ndarray:
    """Read one file (or take a 2D array as it is) and apply ``preprocess``; a 2D float32 image in [0, 1]."""
    image = path if isinstance(path, np.ndarray) else read_image(path)[0]
    try:
        return preprocess(image)
    except DataError as exc:
        raise DataError(f"{'an image array' if isinstance(path, np.ndarray) else path}: {exc}") from None


def read_preprocessed(items, preprocess: Preprocess) -> list[np.ndarray]:
    """:func:`load_preprocessed` of every item (file path or 2D array)."""
    return [load_preprocessed(x if isinstance(x, np.ndarray) else str(x), preprocess) for x in items]


def landmark_params(given: Preprocess, fitted: Preprocess) -> dict:
    """What a first step learned, for the method's ``params_``: the Nyúl landmarks, when it learned them."""
    if given.landmarks is None and fitted.landmarks is not None:
        return {"nyul_landmarks": list(fitted.landmarks)}
    return {}
