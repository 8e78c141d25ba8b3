"""Overlay images: an attribution map over the image the model saw, with what it predicted.

The overlay is composed with numpy (matplotlib's ``jet`` colour map over the
grayscale image) and written with Pillow, title included, rather than drawn
as a matplotlib figure: on the 2-core CPU a figure per image cost about
100 ms (``Figure.savefig``, reused figure or not), ten times the Grad-CAM map
itself, which would have held ``brainmri explain`` far below 20 images/s;
composing and writing one costs about 10 ms.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from brainmri.files import atomic_path


class Overlay:
    """Write PNG overlays of maps on images, with a title line above.

    Parameters
    ----------
    alpha : float
        Opacity of the map over the grayscale image.
    side : int
        Images are enlarged (nearest neighbour, by a whole factor) to at
        least this many pixels a side, so that the title fits.
    floor : float
        Map values below this share of the map's maximum stay uncoloured.
    """

    def __init__(self, *, alpha: float = 0.45, side: int = 256, floor: float = 0.05):
        self.alpha = alpha
        self.side = side
        self.floor = floor

    def blend(self, image: np.ndarray, attribution: np.ndarray) -> np.ndarray:
        """``image`` (H, W) in [0, 1] in gray, ``attribution`` (H, W) in colour over it: uint8 RGB ``(H, W, 3)``.

        The colour scale runs from 0 (blue) to the map's maximum (red);
        negative attribution and values below ``floor`` are left uncoloured.

        >>> Overlay(alpha=1.0).blend(np.zeros((1, 2)), np.array([[0.0, 1.0]])).tolist()
        [[[0, 0, 0], [128, 0, 0]]]
        """
        from matplotlib import colormaps

        top = float(attribution.max())
        heat = np.clip(attribution, 0, None) / top if top > 0 else np.zeros(attribution.shape)
        weight = (self.alpha * (heat >= self.floor))[..., None]
        gray = np.repeat(np.clip(np.asarray(image, dtype=np.float64), 0, 1)[..., None], 3, axis=-1)
        rgb = gray * (1 - weight) + colormaps["jet"](heat)[..., :3] * weight
        return (rgb * 255).round().astype(np.uint8)

    def picture(self, image: np.ndarray, attribution: np.ndarray, title: str):
        """:meth:`blend` of ``image`` and ``attribution``, enlarged, below ``title`` (a PIL image).

        A volume (D, H, W) and its map are shown as their three planes
        through the map's maximum (:func:`planes`), side by side.
        """
        from PIL import Image, ImageDraw, ImageFont

        if np.ndim(image) == 3:
            at = np.unravel_index(int(np.argmax(attribution)), np.shape(attribution))
            image, attribution = planes(image, at), planes(attribution, at)

        factor = max(1, -(-self.side // max(image.shape)))
        picture = Image.fromarray(self.blend(image, attribution)).resize(
            (image.shape[1] * factor, image.shape[0] * factor), Image.NEAREST
        )
        band = 24
        canvas = Image.new("RGB", (picture.width, picture.height + band), "white")
        canvas.paste(picture, (0, band))
        ImageDraw.Draw(canvas).text((4, 4), title, fill="black", font=ImageFont.load_default(size=14))
        return canvas

    def __call__(self, path: str | Path, image: np.ndarray, attribution: np.ndarray, title: str) -> Path:
        """Write ``path`` (PNG): the :meth:`picture` of ``image``, ``attribution`` and ``title``."""
        with atomic_path(path) as tmp:
            tmp.write_bytes(self.png(image, attribution, title))
        return Path(path)

    def png(self, image: np.ndarray, attribution: np.ndarray, title: str) -> bytes:
        """The :meth:`picture` as PNG bytes."""
        buffer = io.BytesIO()
        # zlib level 1: 9 ms, not 29 (default 6), for 3 % more bytes
        self.picture(image, attribution, title).save(buffer, format="PNG", compress_level=1)
        return buffer.getvalue()


def planes(volume: np.ndarray, at: tuple[int, ...]) -> np.ndarray:
    """The three planes of ``volume`` (RAS+ voxel order) through voxel ``at``, side by side, superior / anterior up.

    Axial (the third index fixed), coronal (the second) and sagittal (the
    first), each rotated so that it reads like a radiology viewer's plane,
    padded with zeros to the tallest.

    >>> planes(np.zeros((4, 5, 6)), (0, 0, 0)).shape
    (6, 13)
    """
    views = [np.rot90(volume[:, :, at[2]]), np.rot90(volume[:, at[1], :]), np.rot90(volume[at[0], :, :])]
    height = max(v.shape[0] for v in views)
    return np.hstack([np.pad(v, ((0, height - v.shape[0]), (0, 0))) for v in views])
