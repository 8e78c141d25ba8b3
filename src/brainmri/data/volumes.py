"""Preprocessing of 3D volumes: crop to the head, resample to a common cubic grid, normalise intensities.

The 3D counterpart of :class:`~brainmri.data.preprocess.Preprocess`, with the
same settings (crop, size, intensity clipping) and the same steps, so that a
volume method reads like a slice method: the head's bounding box (the largest
bright connected component, :func:`~brainmri.data.head.head_box` in
3D), a linear, antialiased resize to ``size x size x size`` voxels
(``skimage.transform.resize``), percentile clipping and scaling to [0, 1].
Volumes arrive in RAS+ voxel order (:func:`~brainmri.data.io.read_image`
reorients every NIfTI volume), so every volume's first axis runs left to
right, its second back to front, its third bottom to top.

Why nibabel and scipy/scikit-image rather than MONAI's transforms
(``LoadImage``, ``Orientation``, ``Spacing``, ``Resize``, ``ScaleIntensity``):
brainmri reads every file through one reader that turns each failure into a
one-line error and that the audit, the splits, ``predict`` and ``explain``
share; MONAI's ``LoadImage`` would be a second reader with other errors and
MetaTensors to convert back. What is left after reading (orientation,
cropping, resizing, scaling) is four numpy calls, and keeping them beside
their 2D versions keeps both in one place.

Like the 2D preprocessing, the resize does not keep the aspect ratio: the
head's box is stretched to a cube. Every volume of a dataset goes through
the same mapping, so a model sees consistent anatomy; physical spacing is not
used (a brain scanned at 1 mm and one at 1.5 mm both fill the cube).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import ClassVar

import numpy as np

from brainmri.data.head import head_box
from brainmri.data.preprocess import Preprocess, normalize_intensity
from brainmri.errors import ConfigError, DataError

#: Largest side, in voxels, of a resampled volume (128 cubed is 8 MB a volume as float32).
MAX_VOLUME_SIZE = 128


@dataclass(frozen=True)
class VolumePreprocess:
    """Settings of the volume preprocessing.

    Parameters
    ----------
    crop : bool
        Crop to the bounding box of the head (largest bright 3D component).
    size : int
        Resample to ``size x size x size`` voxels (32 or 48 keeps a 3D CNN
        fast on a CPU).
    clip_percentiles : tuple of float or None
        Clip intensities to these percentiles, then scale to [0, 1]; None
        scales min..max.

    Attributes
    ----------
    version : int
        Version of the code, part of the array cache key (bump it with every
        change of the output).

    Examples
    --------
    >>> volume = np.zeros((20, 24, 22), np.float32); volume[4:16, 6:18, 5:17] = 1.0
    >>> VolumePreprocess(size=8)(volume).shape
    (8, 8, 8)
    """

    version: ClassVar[int] = 1

    crop: bool = True
    size: int = 32
    clip_percentiles: tuple[float, float] | None = (0.5, 99.5)

    def __post_init__(self):
        if isinstance(self.size, bool) or not isinstance(self.size, int) or not 8 <= self.size <= MAX_VOLUME_SIZE:
            raise ConfigError(
                f"volume size must be an integer from 8 to {MAX_VOLUME_SIZE} (voxels a side), got {self.size!r}"
            )
        Preprocess(clip_percentiles=self.clip_percentiles)  # the same check of the percentiles

    @classmethod
    def like(cls, preprocess: Preprocess | None, size: int) -> VolumePreprocess:
        """The volume preprocessing with the crop and clipping of a (2D) ``preprocess``, at ``size`` voxels."""
        preprocess = preprocess or Preprocess()
        return cls(crop=preprocess.crop, size=size, clip_percentiles=preprocess.clip_percentiles)

    def to_dict(self) -> dict:
        return {"kind": "volume", **asdict(self)}

    def box(self, volume: np.ndarray) -> tuple[slice, ...] | None:
        """The head's box of ``volume`` that :meth:`__call__` crops to (None: no crop)."""
        return head_box(volume) if self.crop else None

    def resample(self, volume: np.ndarray, box: tuple[slice, ...] | None, *, order: int = 1) -> np.ndarray:
        """``volume`` cropped to ``box`` and resized to the cubic grid (float32).

        ``order=0`` (nearest, no antialiasing) moves label or mask volumes
        onto the grid of their image.
        """
        from skimage.transform import resize

        if box is not None:
            volume = volume[box]
        shape = (self.size,) * 3
        if volume.shape != shape:
            volume = resize(
                np.asarray(volume, dtype=np.float32), shape, order=order, anti_aliasing=order > 0, preserve_range=True
            )
        return np.asarray(volume, dtype=np.float32)

    def __call__(self, volume: np.ndarray) -> np.ndarray:
        """Apply the steps to one volume.

        Parameters
        ----------
        volume : ndarray, shape (X, Y, Z)

        Returns
        -------
        ndarray of float32, shape (size, size, size), values in [0, 1]

        Raises
        ------
        DataError
            Not a 3D array, or every voxel 0.
        """
        volume = np.asarray(volume, dtype=np.float32)
        if volume.ndim != 3:
            raise DataError(
                f"expected a 3D volume, got an array of shape {volume.shape}; volume methods "
                "(cnn3d) take NIfTI volumes, 2D slices need a 2D method"
            )
        if not volume.any():
            raise DataError("every voxel of the volume is 0 (a failed conversion or an empty mask?); remove it")
        return normalize_intensity(self.resample(volume, self.box(volume)), self.clip_percentiles)
