"""The figure of the out-of-distribution section: the accuracy kept when a method abstains, against the share kept.

:func:`risk_coverage_figure` draws on its own Agg canvas
(:func:`brainmri.report.charts.new_figure`), and
:func:`brainmri.report.figures.render_figures` encodes it for the report.
"""

from __future__ import annotations

from brainmri.report.charts import colors, new_figure

#: The orderings of a method's ``ood.risk_coverage`` block and how the figure names them.
ORDERINGS = {"ood_score": "abstain on the highest OOD score", "confidence": "abstain on the lowest confidence"}


def risk_coverage_figure(ood: dict, title: str):
    """Draw a method's risk-coverage curves (Geifman and El-Yaniv 2017) and where its OOD flag stands.

    Parameters
    ----------
    ood : dict
        A method's ``ood`` block in ``results.json``: ``risk_coverage``
        (ordering -> ``{"coverage", "accuracy", "mean_accuracy"}``, see
        :func:`brainmri.evaluation.selective.risk_coverage`),
        ``coverage_unflagged`` and ``accuracy_unflagged``.
    title : str

    Returns
    -------
    matplotlib.figure.Figure
        One axes: accuracy of the kept test items against the share kept,
        a line per ordering, and a point at the flag's own coverage.
    """
    fig = new_figure(6.4, 4.2)
    ax = fig.add_subplot()
    curves = ood["risk_coverage"]
    for color, (key, label) in zip(colors(len(ORDERINGS)), ORDERINGS.items(), strict=True):
        curve = curves.get(key)
        if curve and curve["coverage"]:
            ax.plot(
                curve["coverage"],
                curve["accuracy"],
                marker=".",
                color=color,
                label=f"{label} (mean {curve['mean_accuracy']:.3f})",
            )
    if ood.get("accuracy_unflagged") is not None:
        ax.plot(
            [ood["coverage_unflagged"]],
            [ood["accuracy_unflagged"]],
            marker="*",
            markersize=12,
            color="black",
            linestyle="none",
            label="the flag (unlike_training) set aside",
        )
    ax.set_xlabel("share of test items kept (coverage)")
    ax.set_ylabel("accuracy of the items kept")
    ax.set_xlim(0, 1.02)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="lower left")
    return fig
