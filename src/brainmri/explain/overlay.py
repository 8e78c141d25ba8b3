"""Overlay figures: an attribution map over the image the model saw, with what it predicted.

Drawing a new matplotlib figure for every image costs more than computing a
Grad-CAM map, so :class:`Overlay` draws one figure once and, per image, only
replaces its pixels and title before encoding it (about 3x faster than a
fresh figure each time).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainmri.files import atomic_path


class Overlay:
    """Write PNG overlays of maps on images, one figure reused for all of them.

    Parameters
    ----------
    alpha : float
        Opacity of the map over the grayscale image.
    dpi : int
    """

    def __init__(self, *, alpha: float = 0.45, dpi: int = 100):
        self.alpha = alpha
        self.dpi = dpi
        self._figure = None

    def _draw(self, shape: tuple[int, int]):
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        fig = Figure(figsize=(3.2, 3.5), dpi=self.dpi)
        FigureCanvasAgg(fig)
        ax = fig.add_axes((0.02, 0.02, 0.96, 0.84))
        ax.set_axis_off()
        blank = np.zeros(shape, dtype=np.float32)
        image = ax.imshow(blank, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        heat = ax.imshow(blank, cmap="jet", vmin=0, vmax=1, alpha=self.alpha, interpolation="bilinear")
        title = fig.text(0.5, 0.93, "", ha="center", va="center", fontsize=9)
        self._figure = (fig, image, heat, title, shape)

    def __call__(self, path: str | Path, image: np.ndarray, attribution: np.ndarray, title: str) -> Path:
        """Write ``path`` (PNG): ``image`` (H, W) in [0, 1] in gray, ``attribution`` (H, W) scaled to [0, 1] over it.

        Negative attribution is shown as none (the colour scale runs from 0
        to the map's maximum).
        """
        if self._figure is None or self._figure[4] != image.shape:
            self._draw(image.shape)
        fig, drawn, heat, text, _ = self._figure
        top = float(attribution.max())
        drawn.set_data(np.asarray(image, dtype=np.float32))
        heat.set_data(np.clip(attribution, 0, None) / top if top > 0 else np.zeros_like(attribution))
        text.set_text(title)
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", metadata={"Software": None})
        return Path(path)
