"""The canvas of every figure brainmri draws: its own Agg canvas (no pyplot, no global state), PNG bytes, colours.

The benchmark's figures (:mod:`brainmri.report.figures`) and those of the
tuning and region reports draw on :func:`new_figure` and encode with
:func:`figure_png`.
"""

from __future__ import annotations

import io

DPI = 110


def new_figure(width: float, height: float):
    """A new figure attached to its own Agg canvas (no pyplot, no global state)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def figure_png(fig) -> bytes:
    """Encode a figure of this module as PNG (no metadata, so the bytes depend only on the drawing)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def colors(n: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(k % cmap.N) for k in range(n)]
