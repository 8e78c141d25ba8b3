"""What duplicate detection keeps of one image: pixel hash, perceptual hashes and thumbnails, in two views and 8 orientations.

A copy in a published collection is not always the same picture: it may be
mirrored left-right, flipped upside-down or rotated, re-encoded, resized,
re-contrasted, or cut out with another margin. :func:`fingerprint` keeps,
for each image:

- a hash of its decoded pixels (pixel-identical copies);
- two *views*: the whole frame, and the head's box (from the moments of
  its silhouette), which undoes another margin, padding, a mild zoom or a
  shift of the head in the frame;
- per view, a 64x64 *structure thumbnail* (the image minus its Gaussian blur,
  sigma 2 px, z-scored: gyri, edges and lesions, without global brightness
  and contrast) and a 16x16 *tone thumbnail* (the intensities as they are,
  which tell a re-encoded copy from a re-contrasted one);
- per view, the 64-bit DCT perceptual hash (pHash) of the image in each of
  the 8 symmetries of the square (:data:`ORIENTATIONS`), so that a mirrored
  or rotated copy is a candidate by the same Hamming-radius join as an
  upright one. The 8 hashes cost one DCT: mirroring an image negates its
  odd horizontal DCT coefficients, flipping it its odd vertical ones, and
  transposing it transposes the coefficients.

:mod:`brainmri.data.duplicates` turns fingerprints into confirmed pairs.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from brainmri.data.preprocess import resize

#: Side of the structure thumbnail, in pixels.
THUMB = 64
#: Side of the tone thumbnail, in pixels.
TONE = 16
#: The views of an image that are fingerprinted: the whole frame and the head's bounding box.
VIEWS = ("frame", "head box")

#: The 8 symmetries of the square, each as its name and ``(transpose, flip rows, flip columns)`` applied in that
#: order. Index 0 is the image as it is; "mirrored" is left-right, "flipped" upside-down; "rotated 90" is
#: ``np.rot90`` (counter-clockwise).
ORIENTATIONS = (
    ("as is", (False, False, False)),
    ("mirrored", (False, False, True)),
    ("flipped", (False, True, False)),
    ("rotated 180", (False, True, True)),
    ("transposed", (True, False, False)),
    ("rotated 90", (True, True, False)),
    ("rotated 270", (True, False, True)),
    ("anti-transposed", (True, True, True)),
)
#: ``INVERSE[g]`` undoes orientation ``g``: every symmetry is its own inverse but the two quarter turns.
INVERSE = np.array([0, 1, 2, 3, 4, 6, 5, 7])


def orient(planes: np.ndarray, g: int) -> np.ndarray:
    """``planes`` (last two axes square) in orientation ``g`` of :data:`ORIENTATIONS` (a view, not a copy).

    >>> m = np.arange(4).reshape(2, 2)
    >>> all((orient(m, g) == want).all() for g, want in [(1, np.fliplr(m)), (5, np.rot90(m)), (6, np.rot90(m, 3))])
    True
    """
    transpose, rows, cols = ORIENTATIONS[g][1]
    out = np.swapaxes(planes, -1, -2) if transpose else planes
    if rows:
        out = out[..., ::-1, :]
    if cols:
        out = out[..., :, ::-1]
    return out


@dataclass(frozen=True)
class Fingerprint:
    """What duplicate detection needs of one image.

    Attributes
    ----------
    pixel_hash : str
        Hash of the decoded pixels and their shape.
    phashes : ndarray of uint64, shape (len(VIEWS), len(ORIENTATIONS))
        pHash of each view of the image in each orientation.
    thumbs : ndarray of float16, shape (len(VIEWS), THUMB * THUMB)
        Structure thumbnail of each view, upright.
    tones : ndarray of float32, shape (len(VIEWS), TONE * TONE)
        Tone thumbnail of each view, upright, in the image's own intensities.
    """

    pixel_hash: str
    phashes: np.ndarray
    thumbs: np.ndarray
    tones: np.ndarray

    @property
    def phash(self) -> np.uint64:
        """The pHash of the whole frame as it is."""
        return self.phashes[0, 0]

    @property
    def thumb(self) -> np.ndarray:
        """The structure thumbnail of the whole frame as it is."""
        return self.thumbs[0]


def fingerprint(image: np.ndarray) -> Fingerprint:
    """Fingerprint a 2D image (a 3D volume is represented by its middle slice).

    Parameters
    ----------
    image : ndarray, shape (H, W) or (A, B, C)

    Returns
    -------
    Fingerprint
    """
    digest = hashlib.blake2b(str(image.shape).encode(), digest_size=16)
    digest.update(np.ascontiguousarray(image).data)
    plane = image if image.ndim == 2 else np.take(image, image.shape[-1] // 2, axis=-1)
    plane = np.asarray(plane, dtype=np.float32)
    views = [resize(plane, THUMB), _head_view(plane)]
    return Fingerprint(
        digest.hexdigest(),
        np.stack([oriented_phashes(resize(small, 32)) for small in views]),
        np.stack([_structure_thumb(small) for small in views]),
        np.stack([resize(small, TONE).ravel() for small in views]),
    )


def _head_view(plane: np.ndarray) -> np.ndarray:
    """The head's box of ``plane`` resized to ``THUMB`` x ``THUMB`` (the whole frame when no head is found).

    The box is the head's centre plus and minus twice the standard
    deviation of its pixels' coordinates along each axis (the exact extent
    of a disc), on a 128-px copy (:func:`_silhouette`). Moments rather than
    the first and last head pixel: they move by a fraction of a pixel as the
    head does, so a copy zoomed or shifted by a few percent gets the same
    box to a small fraction of a thumbnail pixel, where the structure
    correlation needs it. Applied to ``plane`` in fractional coordinates
    (Pillow's ``resize(box=...)``), the box of a mirrored copy is the
    mirrored box.
    """
    from PIL import Image

    mask = _silhouette(resize(plane, 128))
    if mask is None:
        return resize(plane, THUMB)
    rows, cols = plane.shape
    box = []
    for axis, side in ((1, cols), (0, rows)):  # Pillow's box is (left, top, right, bottom)
        coords = np.nonzero(mask)[axis] + 0.5
        centre, spread = coords.mean(), 2 * coords.std()
        box.append((max(centre - spread, 0.0) * side / 128, min(centre + spread, 128.0) * side / 128))
    (left, right), (top, bottom) = box
    if right - left < 1 or bottom - top < 1:
        return resize(plane, THUMB)
    return np.asarray(
        Image.fromarray(plane, mode="F").resize((THUMB, THUMB), Image.BILINEAR, box=(left, top, right, bottom))
    )


def _silhouette(small: np.ndarray) -> np.ndarray | None:
    """The head's outline, filled: the largest component above a low threshold between background and head.

    The threshold lies 15% of the way from the dark end (1st percentile) to
    the bright end (99th percentile), so it finds the sharp outer edge of
    the head rather than an inner boundary between tissues (Otsu's threshold
    may take either, and move from one to the other between copies). A
    change of gamma may still move it; such copies line up in the whole
    frame. None when there is no component of at least 5% of the image.
    """
    from scipy import ndimage

    low, high = (float(v) for v in np.percentile(small, [1, 99]))
    if high <= low:
        return None
    labels, n = ndimage.label(small > low + 0.15 * (high - low))
    if n == 0:
        return None
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    if sizes.max() < 0.05 * small.size:
        return None
    head = labels == sizes.argmax()
    # Holes filled as binary_fill_holes does (the background parts, 4-connected, that do not reach the border),
    # by one labelling instead of its iterated dilation: a quarter of the cost, the same mask.
    holes, _ = ndimage.label(~head)
    border = np.unique(np.r_[holes[0], holes[-1], holes[:, 0], holes[:, -1]])
    return head | ~np.isin(holes, border) & (holes > 0)


def oriented_phashes(small: np.ndarray) -> np.ndarray:
    """The DCT perceptual hash of a 32x32 thumbnail in each of the 8 :data:`ORIENTATIONS`.

    A pHash is the low 8x8 DCT coefficients of the thumbnail above their
    median. Written here rather than taken from ``imagehash`` because that
    package re-decodes through Pillow's 8-bit path and hashes one
    orientation; this works on any float array, and derives the other
    orientations from the same coefficients (the DCT-II of a reversed axis
    is the DCT with its odd coefficients negated).

    Returns
    -------
    ndarray of uint64, shape (8,)
    """
    from scipy.fft import dctn

    coeffs = dctn(small.astype(np.float64), norm="ortho")[:8, :8]
    sign = np.where(np.arange(8) % 2, -1.0, 1.0)
    oriented = []
    for _, (transpose, rows, cols) in ORIENTATIONS:
        c = coeffs.T if transpose else coeffs
        c = c * sign[:, None] if rows else c
        oriented.append((c * sign[None, :] if cols else c).ravel())
    oriented = np.stack(oriented)
    bits = oriented > np.median(oriented, axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8")[:, 0].astype(np.uint64)


def _zscored(a: np.ndarray) -> np.ndarray:
    std = a.std()
    return (a - a.mean()) / std if std > 0 else np.zeros_like(a)


def _structure_thumb(small: np.ndarray) -> np.ndarray:
    from scipy.ndimage import gaussian_filter

    return _zscored(small - gaussian_filter(small, 2.0)).ravel().astype(np.float16)
