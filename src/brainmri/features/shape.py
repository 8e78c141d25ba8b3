"""Shape features of the Otsu foreground's largest connected component."""

from __future__ import annotations

import numpy as np

from brainmri.features.base import ImageTransformer
from brainmri.features.intensity import otsu_mask

_PROPS = (
    "area",
    "perimeter",
    "eccentricity",
    "solidity",
    "extent",
    "major_axis",
    "minor_axis",
    "orientation",
    "n_components",
)


class ShapeFeatures(ImageTransformer):
    """Geometry of the largest bright region (scikit-image ``regionprops``).

    Shape features as in Zhan et al. (2013). Areas and lengths are relative
    to the image size so that features do not depend on resolution; images
    larger than 192 px are measured on a mask subsampled to about 100 px.

    Output: area fraction, perimeter / image side, eccentricity, solidity,
    extent, major and minor axis / image side, orientation, number of
    components, then the 7 Hu moments (log-scaled).
    """

    version = 1  # bump with every change of the output (see ImageTransformer.version)

    def _names(self):
        return [f"shape_{p}" for p in _PROPS] + [f"shape_hu{k}" for k in range(7)]

    def _extract(self, image):
        from scipy import ndimage
        from skimage.measure import regionprops

        mask = otsu_mask(image)
        step = max(1, min(mask.shape) // 96)
        # Measured on a mask reduced to ~100 px a side: convex hull, perimeter
        # and moments of a 224 px mask cost ~15 ms, and every feature below
        # is relative to the image size, so the reduction barely moves them.
        mask = mask[::step, ::step]
        labels, n_components = ndimage.label(mask, structure=np.ones((3, 3)))
        if n_components == 0:
            return np.zeros(len(_PROPS) + 7)
        sizes = np.bincount(labels.ravel())
        sizes[0] = 0
        # Measure the largest component only: noise makes hundreds of tiny ones.
        (region,) = regionprops((labels == sizes.argmax()).astype(np.uint8))
        side = float(max(mask.shape))
        hu = region.moments_hu
        values = [
            region.area / mask.size,
            region.perimeter / side,
            region.eccentricity,
            region.solidity,
            region.extent,
            region.axis_major_length / side,
            region.axis_minor_length / side,
            region.orientation,
            n_components,
        ]
        return np.concatenate([values, -np.sign(hu) * np.log10(np.abs(hu) + 1e-30)])
