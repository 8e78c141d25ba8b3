"""Texture features: gray-level co-occurrence (GLCM) and local binary patterns.

Transformers here take ``X``, a sequence of preprocessed 2D images (float,
values in [0, 1]), and return a ``(n_images, n_features)`` float64 array.
"""

from __future__ import annotations

import numpy as np

from brainmri.features.base import ImageTransformer

GLCM_PROPERTIES = ("contrast", "dissimilarity", "homogeneity", "energy", "correlation", "ASM")


def quantize(image: np.ndarray, levels: int) -> np.ndarray:
    """Map an image in [0, 1] to integer gray levels ``0 .. levels-1``.

    >>> quantize(np.array([[0.0, 0.5, 1.0]]), 4).tolist()
    [[0, 2, 3]]
    """
    return np.minimum((np.clip(image, 0, 1) * levels).astype(np.int64), levels - 1).astype(np.uint8)


class GLCMFeatures(ImageTransformer):
    """Haralick-style GLCM texture features (scikit-image ``graycomatrix``/``graycoprops``).

    As in Kumari (2013), "SVM classification an approach on detecting
    abnormality in brain MRI images", Int. J. Eng. Res. Appl. 3(4):1686-1690.

    Parameters
    ----------
    distances : tuple of int
        Pixel offsets of the co-occurring pairs.
    angles : tuple of float
        Directions in radians.
    levels : int
        Gray levels after quantisation (2..256). 32 keeps matrices dense on
        small images and is ~20x faster than 256.
    properties : tuple of str
        ``graycoprops`` properties.
    per_angle : bool
        Keep one value per angle; otherwise average over angles
        (rotation-invariant).
    grid : int
        Also compute the features on each cell of a ``grid x grid`` tiling
        of the image, which tells where texture changes (a tumour's
        location); 1 uses the whole image only.

    Output: ``len(properties) * len(distances) * (len(angles) if per_angle else 1)``
    features for the whole image, times ``1 + grid**2`` when ``grid > 1``.
    """

    def __init__(self, *, distances=(1, 2, 4), angles=(0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4), levels=32,
                 properties=GLCM_PROPERTIES, per_angle=False, grid=1):
        self.distances = distances
        self.angles = angles
        self.levels = levels
        self.properties = properties
        self.per_angle = per_angle
        self.grid = grid

    def _validate(self):
        self._check(2 <= int(self.levels) <= 256, "levels", self.levels, "an integer in 2..256")
        self._check(len(self.distances) > 0 and min(self.distances) >= 1, "distances", self.distances, "positive integers")
        self._check(len(self.angles) > 0, "angles", self.angles, "at least one angle")
        self._check(1 <= int(self.grid) <= 8, "grid", self.grid, "an integer in 1..8")
        unknown = set(self.properties) - set(GLCM_PROPERTIES)
        self._check(not unknown and len(self.properties) > 0, "properties", self.properties, f"a subset of {GLCM_PROPERTIES}")

    def _names(self):
        angle_part = [f"a{k}" for k in range(len(self.angles))] if self.per_angle else ["mean"]
        names = [f"{p}_d{d}_{a}" for p in self.properties for d in self.distances for a in angle_part]
        g = int(self.grid)
        cells = ["all"] + ([f"r{r}c{c}" for r in range(g) for c in range(g)] if g > 1 else [])
        return [f"glcm_{cell}_{n}" for cell in cells for n in names]

    def _extract(self, image):
        levels = quantize(image, self.levels)
        g = int(self.grid)
        if g == 1:
            return self._cell(levels)
        rows = np.array_split(np.arange(levels.shape[0]), g)
        cols = np.array_split(np.arange(levels.shape[1]), g)
        cells = [levels[r[0] : r[-1] + 1, c[0] : c[-1] + 1] for r in rows for c in cols]
        return np.concatenate([self._cell(levels)] + [self._cell(cell) for cell in cells])

    def _cell(self, levels):
        from skimage.feature import graycomatrix, graycoprops

        glcm = graycomatrix(levels, list(self.distances), list(self.angles),
                            levels=self.levels, symmetric=True, normed=True)
        values = []
        for prop in self.properties:
            table = graycoprops(glcm, prop)  # (n_distances, n_angles)
            table = np.nan_to_num(table, nan=1.0)  # correlation of a constant image
            values.append(table if self.per_angle else table.mean(axis=1, keepdims=True))
        return np.concatenate([v.ravel() for v in values])


class LBPFeatures(ImageTransformer):
    """Histogram of uniform local binary patterns (scikit-image ``local_binary_pattern``).

    Parameters
    ----------
    points : int
        Neighbours on the circle.
    radius : float
        Circle radius in pixels.

    Output: ``points + 2`` features (the uniform-pattern histogram, normalised).
    """

    def __init__(self, *, points=8, radius=1.0):
        self.points = points
        self.radius = radius

    def _validate(self):
        self._check(int(self.points) >= 4, "points", self.points, "an integer >= 4")
        self._check(float(self.radius) > 0, "radius", self.radius, "a positive number")

    def _names(self):
        return [f"lbp_{k}" for k in range(int(self.points) + 2)]

    def _extract(self, image):
        from skimage.feature import local_binary_pattern

        codes = local_binary_pattern(quantize(image, 256), int(self.points), float(self.radius), method="uniform")
        hist = np.bincount(codes.astype(np.int64).ravel(), minlength=int(self.points) + 2).astype(np.float64)
        return hist / hist.sum()
