"""The head in a slice or a volume: Otsu's threshold, the largest bright connected component, its box and mask.

Cropping (:mod:`brainmri.data.preprocess`), harmonisation
(:mod:`brainmri.data.harmonise`), volumes (:mod:`brainmri.data.volumes`),
shifts and the acquisition descriptors all find the head the same way; it
lives here, below them, so that none of them imports another for it.
"""

from __future__ import annotations

import numpy as np


def otsu_threshold(image: np.ndarray) -> float:
    """Otsu's threshold from a 256-bin histogram (scikit-image's ``threshold_otsu``).

    The histogram is built with ``np.bincount`` and handed to scikit-image,
    which is 5x cheaper than letting it call ``np.histogram`` on floats.

    >>> otsu_threshold(np.array([[0.0, 0.0], [1.0, 1.0]])) < 1.0
    True
    """
    from skimage.filters import threshold_otsu

    low, high = float(image.min()), float(image.max())
    if high == low:
        return low
    scale = 255.0 / (high - low)
    counts = np.bincount(((image - low) * scale).astype(np.int64).ravel(), minlength=256)[:256]
    centers = low + (np.arange(256) + 0.5) / scale
    return float(threshold_otsu(hist=(counts, centers)))


def crop_to_head(image: np.ndarray, margin: int = 2, *, reference: np.ndarray | None = None) -> np.ndarray:
    """Crop to the bounding box of the largest bright connected component (:func:`head_box`).

    The box is that of ``reference`` when given (an image of the same shape:
    the image of a lesion mask). Returns ``image`` itself when no head is
    found.

    >>> img = np.zeros((10, 10)); img[3:6, 4:8] = 1.0
    >>> crop_to_head(img, margin=0).shape
    (3, 4)
    """
    box = head_box(image if reference is None else reference, margin)
    return image if box is None else image[box]


def head_box(image: np.ndarray, margin: int = 2) -> tuple[slice, ...] | None:
    """Bounding box of the largest bright connected component (the head), one slice per axis.

    None when the image is constant or the component is tiny (under 1% of
    the image), which would mean the threshold found no head. Images of
    128 px and more are searched at half resolution (the box is then
    accurate to 2 px, within the margin). Explanations crop lesion masks
    with the box of their image, so that masks and maps stay aligned. The
    same code boxes 2D slices and 3D volumes (:mod:`brainmri.data.volumes`).

    >>> img = np.zeros((10, 10)); img[3:6, 4:8] = 1.0
    >>> head_box(img, margin=0)
    (slice(3, 6, None), slice(4, 8, None))
    """
    from scipy import ndimage

    found = _largest_component(image)
    if found is None:
        return None
    labels, largest, step = found
    box = ndimage.find_objects(labels, max_label=largest)[largest - 1]
    return tuple(
        slice(max(axis.start * step - margin, 0), min(axis.stop * step + margin, side))
        for axis, side in zip(box, image.shape, strict=True)
    )


def head_mask(image: np.ndarray) -> np.ndarray:
    """The head: the largest bright connected component, holes filled, at full size (the mask of harmonisation).

    As :func:`head_box`, but Otsu's threshold is taken on the logarithm of
    the intensities (above the minimum, plus 1% of the range), so that a
    change of gain or a gamma curve, which only shift or scale the
    logarithm, leave the mask as it is: the mask of a synthetic slice moved
    by 1% of its pixels under a gamma of 2.2, against 13% with a threshold
    on the intensities. A window that crushes dark tissue to black still
    moves it (15-19% under the ``window`` shift at severity 3). The whole
    image when no head is found (a constant image, or a component under 1%
    of it).

    >>> img = np.zeros((10, 10)); img[2:8, 2:8] = 1.0; img[4, 4] = 0.0
    >>> int(head_mask(img).sum())
    36
    """
    from scipy import ndimage

    image = np.asarray(image, dtype=np.float32)
    low, span = float(image.min()), float(image.max() - image.min())
    found = _largest_component(np.log(image - low + 0.01 * span)) if span > 0 else None
    if found is None:
        return np.ones(image.shape, dtype=bool)
    labels, largest, step = found
    mask = ndimage.binary_fill_holes(labels == largest)
    if step > 1:
        mask = np.repeat(np.repeat(mask, step, axis=0), step, axis=1)[: image.shape[0], : image.shape[1]]
    return mask


def _largest_component(image: np.ndarray):
    """Labels of the pixels above Otsu's threshold (at half resolution from 128 px), the largest label and the step.

    None when the image is constant or the largest component is under 1% of it.
    """
    from scipy import ndimage

    if image.min() == image.max():
        return None
    step = 2 if min(image.shape) >= 128 else 1
    small = image[(slice(None, None, step),) * image.ndim]
    labels, n = ndimage.label(small > otsu_threshold(small), structure=np.ones((3,) * image.ndim))
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    largest = int(sizes.argmax())
    if sizes[largest] < 0.01 * small.size:
        return None
    return labels, largest, step
