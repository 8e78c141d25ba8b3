"""Figures of the shift benchmark (``--shift``): how accuracy falls with the severity of each acquisition shift.

:func:`shift_severity_figure` draws one method against every shift,
:func:`shift_summary_figure` every method averaged over the shifts; both draw
on their own Agg canvas (:func:`brainmri.report.charts.new_figure`), and
:func:`brainmri.report.figures.render_figures` encodes them for the report.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from brainmri.evaluation.shift import severity_label
from brainmri.report.charts import colors, new_figure


def shift_severity_figure(shift: dict, severities: Sequence[int], title: str):
    """Draw a method's accuracy against the severity of each shift, and its mean over the shifts.

    Parameters
    ----------
    shift : dict
        A method's ``shift`` block in ``results.json``: ``clean`` and
        ``shifts`` (shift -> str(severity) -> metric -> ``{"value", ...}``)
        and ``mean_over_shifts``.
    severities : sequence of int
        The severities tested, drawn after severity 0 (the clean images).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
        One axes: a line per shift from the clean accuracy (severity 0) through
        the tested severities, and the mean over shifts as a thick black line.
    """
    fig = new_figure(6.4, 4.2)
    ax = fig.add_subplot()
    x = [0, *severities]
    clean = shift["clean"]["accuracy"]["value"]
    for k, (color, (name, by)) in enumerate(zip(colors(len(shift["shifts"])), shift["shifts"].items(), strict=True)):
        # tab10 has ten colours: the eleventh shift on is dashed.
        ax.plot(
            x,
            [clean, *(by[str(s)]["accuracy"]["value"] for s in severities)],
            color=color,
            marker=".",
            linewidth=1,
            linestyle="-" if k < 10 else "--",
            label=name,
        )
    mean = shift["mean_over_shifts"]
    ax.plot(
        x,
        [mean["clean"]["accuracy"], *(mean[str(s)]["accuracy"] for s in severities)],
        color="black",
        linewidth=2.5,
        marker="o",
        label="mean over shifts",
    )
    ax.set_xticks(x, ["clean", *(str(s) for s in severities)])
    ax.set_xlabel("severity")
    ax.set_ylabel("accuracy")
    ax.set_ylim(-0.01, 1.01)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_title(title)
    return fig


def shift_summary_figure(results: dict):
    """Draw, per method, its clean accuracy and its accuracy averaged over the shifts at each severity.

    Parameters
    ----------
    results : dict
        Benchmark results with a top-level ``shift`` block (its
        ``severities``) and a ``shift`` block per method.

    Returns
    -------
    matplotlib.figure.Figure
        One axes: a group of bars per method (clean, then each severity,
        lighter as it gets worse), each labelled with its value.
    """
    from matplotlib import colormaps

    severities = results["shift"]["severities"]
    methods = [name for name, m in results["methods"].items() if "shift" in m]
    labels = ["clean", *(severity_label(s) for s in severities)]
    shades = colormaps["Blues_r"](np.linspace(0.1, 0.75, len(labels)))
    width = 0.8 / len(labels)
    fig = new_figure(max(6.4, 0.35 * len(methods) * len(labels) + 2.5), 4.6)
    ax = fig.add_subplot()
    for k, (label, shade) in enumerate(zip(labels, shades, strict=True)):
        key = "clean" if k == 0 else str(severities[k - 1])
        values = [results["methods"][m]["shift"]["mean_over_shifts"][key]["accuracy"] for m in methods]
        xs = np.arange(len(methods)) + (k - (len(labels) - 1) / 2) * width
        ax.bar(xs, values, width=width * 0.92, color=shade, edgecolor="black", linewidth=0.6, label=label)
        for xk, v in zip(xs, values, strict=True):
            ax.text(xk, v + 0.01, f"{v:.3f}", ha="center", va="bottom", rotation=90, fontsize=7)
    ax.set_xticks(np.arange(len(methods)), methods)
    ax.set_ylim(0, 1.12)
    ax.set_ylabel("accuracy (mean over shifts)")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.08), ncols=3, frameon=False)
    ax.set_title("Accuracy under acquisition shifts")
    return fig
