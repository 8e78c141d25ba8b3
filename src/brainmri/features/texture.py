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
    """Haralick-style GLCM texture features (``graycomatrix``/``graycoprops`` definitions of scikit-image).

    As in Kumari (2013), "SVM classification an approach on detecting
    abnormality in brain MRI images", Int. J. Eng. Res. Appl. 3(4):1686-1690.

    Parameters
    ----------
    distances : tuple of int
        Pixel offsets of the co-occurring pairs.
    angles : tuple of float
        Directions in radians.
    levels : int
        Gray levels after quantisation (2..256). 16 keeps the matrices of
        small tiles well populated and is much faster than 256.
    properties : tuple of str
        ``graycoprops`` properties.
    per_angle : bool
        Keep one value per angle; otherwise average over angles
        (rotation-invariant).
    grid : int
        Also compute the features on each cell of a ``grid x grid`` tiling
        of the image, which tells where texture changes (a tumour's
        location); 1 uses the whole image only.

    Notes
    -----
    The defaults (distances 1 and 3, 16 levels, whole image plus a 4x4
    tiling: 204 features) were chosen on ``brain-tumor-mri``'s official
    training split: with an RBF SVM, whole-image GLCM alone reached 80%
    test accuracy, per-angle values at 4 distances 89%, whole image + 4x4
    tiles 97% (see ``docs/benchmarks.md``).

    Output: ``len(properties) * len(distances) * (len(angles) if per_angle else 1)``
    features for the whole image, times ``1 + grid**2`` when ``grid > 1``.
    """

    version = 1  # bump with every change of the output (see ImageTransformer.version)

    def __init__(
        self,
        *,
        distances=(1, 3),
        angles=(0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4),
        levels=16,
        properties=GLCM_PROPERTIES,
        per_angle=False,
        grid=4,
    ):
        self.distances = distances
        self.angles = angles
        self.levels = levels
        self.properties = properties
        self.per_angle = per_angle
        self.grid = grid

    def _validate(self):
        self._check(2 <= int(self.levels) <= 256, "levels", self.levels, "an integer in 2..256")
        self._check(
            len(self.distances) > 0 and min(self.distances) >= 1, "distances", self.distances, "positive integers"
        )
        self._check(len(self.angles) > 0, "angles", self.angles, "at least one angle")
        self._check(1 <= int(self.grid) <= 8, "grid", self.grid, "an integer in 1..8")
        unknown = set(self.properties) - set(GLCM_PROPERTIES)
        self._check(
            not unknown and len(self.properties) > 0, "properties", self.properties, f"a subset of {GLCM_PROPERTIES}"
        )

    def _names(self):
        angle_part = [f"a{k}" for k in range(len(self.angles))] if self.per_angle else ["mean"]
        names = [f"{p}_d{d}_{a}" for p in self.properties for d in self.distances for a in angle_part]
        g = int(self.grid)
        cells = ["all"] + ([f"r{r}c{c}" for r in range(g) for c in range(g)] if g > 1 else [])
        return [f"glcm_{cell}_{n}" for cell in cells for n in names]

    def _extract(self, image):
        glcm = cooccurrence(quantize(image, self.levels), self.levels, self.distances, self.angles, int(self.grid))
        values = glcm_properties(glcm, self.properties)  # (n_props, cells, distances, angles)
        if not self.per_angle:
            values = values.mean(axis=3, keepdims=True)
        return values.transpose(1, 0, 2, 3).ravel()


def cooccurrence(levels: np.ndarray, n_levels: int, distances, angles, grid: int = 1) -> np.ndarray:
    """Symmetric co-occurrence counts of the whole image and of each tile of a ``grid x grid`` tiling.

    Same offsets and counts as ``skimage.feature.graycomatrix(..., symmetric=True)``
    (neighbour at row ``+round(sin(angle) * d)``, column ``+round(cos(angle) * d)``),
    but every tile's matrix comes from one ``np.bincount`` per offset: a pair
    belongs to the tile of its first pixel. Hand-written because scikit-image
    builds one matrix per call and the tiled features need ``1 + grid**2``
    matrices per image, which made GLCM extraction 4x slower.

    Returns
    -------
    ndarray of float64, shape (1 + grid**2 if grid > 1 else 1, len(distances), len(angles), n_levels, n_levels)
        Raw (unnormalised) counts; index 0 is the whole image.
    """
    rows, cols = levels.shape
    n_tiles = grid * grid
    size = n_levels * n_levels
    # Code of each pixel as a first element: tile * L^2 + level * L; adding the
    # neighbour's level gives the bin. int32 keeps the arrays small and fast.
    tile = (np.arange(rows)[:, None] * grid // rows) * grid + (np.arange(cols)[None, :] * grid // cols)
    first_code = (tile * size + levels.astype(np.int64) * n_levels).astype(np.int32)
    second_level = levels.astype(np.int32)
    out = np.zeros((n_tiles, len(distances), len(angles), n_levels, n_levels))
    for a, angle in enumerate(angles):
        for d, distance in enumerate(distances):
            dr, dc = int(round(np.sin(angle) * distance)), int(round(np.cos(angle) * distance))
            r0, r1 = max(0, -dr), min(rows, rows - dr)
            c0, c1 = max(0, -dc), min(cols, cols - dc)
            if r1 <= r0 or c1 <= c0:
                continue
            codes = first_code[r0:r1, c0:c1] + second_level[r0 + dr : r1 + dr, c0 + dc : c1 + dc]
            counts = np.bincount(codes.ravel(), minlength=n_tiles * size).reshape(n_tiles, n_levels, n_levels)
            out[:, d, a] = counts + counts.transpose(0, 2, 1)
    whole = out.sum(axis=0, keepdims=True)
    return whole if grid == 1 else np.concatenate([whole, out])


def glcm_properties(counts: np.ndarray, properties=GLCM_PROPERTIES) -> np.ndarray:
    """Haralick properties of co-occurrence matrices, as ``skimage.feature.graycoprops`` defines them.

    Parameters
    ----------
    counts : ndarray, shape (..., L, L)
        Co-occurrence counts (normalised here).
    properties : sequence of str

    Returns
    -------
    ndarray, shape (len(properties), ...)
        A constant region's correlation is 1, as in scikit-image.
    """
    total = counts.sum(axis=(-2, -1), keepdims=True)
    P = counts / np.where(total == 0, 1, total)
    n = P.shape[-1]
    i = np.arange(n, dtype=np.float64)[:, None]
    j = np.arange(n, dtype=np.float64)[None, :]
    flat = P.reshape(*P.shape[:-2], n * n)

    def weighted(weights):
        return flat @ np.broadcast_to(weights, (n, n)).ravel()

    out = []
    for prop in properties:
        if prop == "contrast":
            value = weighted((i - j) ** 2)
        elif prop == "dissimilarity":
            value = weighted(np.abs(i - j))
        elif prop == "homogeneity":
            value = weighted(1.0 / (1.0 + (i - j) ** 2))
        elif prop in ("ASM", "energy"):
            value = np.einsum("...k,...k->...", flat, flat)
            value = np.sqrt(value) if prop == "energy" else value
        else:  # correlation
            mu_i, mu_j = weighted(i), weighted(j)
            var_i = weighted(i**2) - mu_i**2
            var_j = weighted(j**2) - mu_j**2
            cov = weighted(i * j) - mu_i * mu_j
            std_i, std_j = np.sqrt(np.maximum(var_i, 0)), np.sqrt(np.maximum(var_j, 0))
            flat_region = (std_i < 1e-15) | (std_j < 1e-15)
            value = np.where(flat_region, 1.0, cov / np.where(flat_region, 1.0, std_i * std_j))
        out.append(value)
    return np.stack(out)


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

    version = 1  # bump with every change of the output (see ImageTransformer.version)

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
