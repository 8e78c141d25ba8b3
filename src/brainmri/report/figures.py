"""Figures of a benchmark report.

Every ``*new_figure`` function draws on its own :class:`matplotlib.figure.Figure`
with the Agg canvas, so nothing here selects a backend, opens a window or
leaves a figure in pyplot's global registry; the figure's axes can be
inspected (tests read the plotted values back) and :func:`figure_png` encodes
it. :func:`render_figures` draws every figure of a benchmark once as PNG
bytes (those of the shift benchmark come from :mod:`brainmri.report.shift_figures`);
:func:`write_figures` saves them and the HTML report
(:mod:`brainmri.report.html`) inlines them.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from brainmri.files import atomic_path
from brainmri.report.charts import colors, figure_png, new_figure
from brainmri.report.ood_figures import risk_coverage_figure
from brainmri.report.parts import CHART_METRICS
from brainmri.report.shift_figures import shift_severity_figure, shift_summary_figure

logger = logging.getLogger(__name__)


def confusion_matrix_figure(confusion: dict, title: str):
    """Draw a confusion matrix: colours normalised per true class, counts written in each cell.

    Parameters
    ----------
    confusion : dict
        ``{"labels": [str, ...], "matrix": [[int, ...], ...]}``; row ``i`` holds
        the items whose true class is ``labels[i]``, column ``j`` those predicted
        as ``labels[j]``.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        One axes whose image holds the share of each row (shape (n, n)); each
        cell is written with the count and the share. A row with no items is
        drawn as zeros.
    """
    labels = [str(label) for label in confusion["labels"]]
    matrix = np.asarray(confusion["matrix"], dtype=float)
    n = len(labels)
    if matrix.shape != (n, n):
        raise ValueError(f"confusion matrix has shape {matrix.shape}, expected ({n}, {n}) for labels {labels}")
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)

    side = max(3.8, 1.1 + 0.85 * n)
    fig = new_figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(n), labels, rotation=35 if max(map(len, labels), default=0) > 6 else 0, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    size = 9 if n <= 6 else 7
    for i in range(n):
        for j in range(n):
            color = "white" if share[i, j] > 0.55 else "black"
            ax.text(
                j, i, f"{int(matrix[i, j])}\n{share[i, j]:.0%}", ha="center", va="center", color=color, fontsize=size
            )
    return fig


def roc_curves_figure(y_true: Sequence, proba, classes: Sequence[str], title: str):
    """Draw one-vs-rest ROC curves, one per class, with each AUC in the legend.

    Parameters
    ----------
    y_true : sequence of str, length n
        True labels.
    proba : array-like of shape (n, n_classes)
        Predicted probabilities; column ``k`` belongs to ``classes[k]``.
    classes : sequence of str, length n_classes
        Class names in the column order of ``proba``.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        One axes: the chance diagonal, then one line per class (false positive
        rate, true positive rate) labelled with its AUC. With two classes a
        single curve is drawn (``classes[1]`` against ``classes[0]``; the other
        is its mirror image with the same AUC). A class with no positive or no
        negative item in ``y_true`` has no ROC curve: it is skipped and named
        under the plot.
    """
    from sklearn.metrics import auc, roc_curve

    y_true = np.asarray([str(y) for y in y_true])
    proba = np.asarray(proba, dtype=float)
    classes = [str(c) for c in classes]
    if proba.ndim != 2 or proba.shape != (len(y_true), len(classes)):
        raise ValueError(
            f"proba has shape {proba.shape}, expected ({len(y_true)}, {len(classes)}): "
            "one row per item of y_true and one column per class"
        )

    drawn = classes[1:] if len(classes) == 2 else classes
    fig = new_figure(5.6, 5.0)
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="chance")
    skipped = []
    for k, (cls, color) in enumerate(zip(classes, colors(len(classes)), strict=True)):
        if cls not in drawn:
            continue
        positive = y_true == cls
        if positive.all() or not positive.any():
            skipped.append(cls)
            continue
        fpr, tpr, _ = roc_curve(positive, proba[:, k])
        name = f"{cls} vs {classes[0]}" if len(classes) == 2 else cls
        ax.plot(fpr, tpr, color=color, linewidth=1.6, label=f"{name} (AUC {auc(fpr, tpr):.3f})")
    if skipped:
        logger.debug("no ROC curve for %s: each needs positive and negative items", skipped)
        ax.set_xlabel(f"false positive rate\n(no curve, class absent or alone in y_true: {', '.join(skipped)})")
    else:
        ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_aspect("equal")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title)
    return fig


def _finite(x) -> bool:
    return isinstance(x, (int, float, np.number)) and math.isfinite(x)


def metric_comparison_figure(results: dict):
    """Draw a grouped bar chart of the headline metrics of every method, with confidence intervals.

    Parameters
    ----------
    results : dict
        The benchmark results; reads ``results["methods"][name]["metrics"]`` (and
        ``"metrics_deduplicated"`` where present), each metric a dict
        ``{"value", "ci_low", "ci_high"}``.

    Returns
    -------
    matplotlib.figure.Figure
        One axes: one group of bars per metric of :data:`CHART_METRICS`, one
        bar per method, error bars from ``ci_low`` to ``ci_high``. Where a method
        has deduplicated metrics, the accuracy group gets a second, hatched bar
        for it beside the method's bar, so the gap shows. Missing or NaN values
        leave a gap. Each bar is labelled with its value, since the value axis
        starts above zero when every value is high.
    """
    methods = list(results["methods"])
    colour_of = dict(zip(methods, colors(len(methods)), strict=True))
    dedup = [m for m in methods if results["methods"][m].get("metrics_deduplicated")]
    slots = _bar_slots(methods, dedup)
    width, gap = 0.8, 0.8
    x, centres = _slot_positions(slots, width, gap)

    fig = new_figure(max(6.5, 0.42 * len(slots) + 2.5), 4.4)
    ax = fig.add_subplot()
    lows = []
    for xk, (metric, method, is_dedup) in zip(x, slots, strict=True):
        key = "metrics_deduplicated" if is_dedup else "metrics"
        m = results["methods"][method].get(key, {}).get(metric, {})
        lows += _metric_bar(ax, xk, m, colour=colour_of[method], width=width, hatched=is_dedup)

    bottom = max(0.0, math.floor((min(lows, default=0.0) - 0.05) * 10) / 10)
    ax.set_ylim(bottom, 1.06)
    ax.set_xticks([np.mean(c) for c in centres.values()], list(CHART_METRICS.values()))
    ax.set_ylabel("value (bars: 95% CI)" if bottom == 0 else f"value (axis starts at {bottom:.1f})")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    _method_legend(ax, colour_of, hatched=bool(dedup))
    ax.set_title("Headline metrics with confidence intervals")
    return fig


def _bar_slots(methods: list[str], dedup: list[str]) -> list[tuple[str, str, bool]]:
    """One slot per bar, ``(metric, method, deduplicated?)``: each method per metric of :data:`CHART_METRICS`,
    and beside it in the accuracy group its deduplicated accuracy when ``dedup`` names it."""
    slots: list[tuple[str, str, bool]] = []
    for metric in CHART_METRICS:
        for method in methods:
            slots.append((metric, method, False))
            if metric == "accuracy" and method in dedup:
                slots.append((metric, method, True))
    return slots


def _slot_positions(slots: list[tuple[str, str, bool]], width: float, gap: float) -> tuple[list, dict]:
    """The x position of each slot (bars ``width`` apart, ``gap`` more between metrics) and per metric its bars'."""
    x, pos, centres = [], 0.0, {}
    for k, (metric, _, _) in enumerate(slots):
        if k and metric != slots[k - 1][0]:
            pos += gap
        x.append(pos)
        centres.setdefault(metric, []).append(pos)
        pos += width
    return x, centres


def _metric_bar(ax, xk: float, m: dict, *, colour, width: float, hatched: bool) -> list[float]:
    """Draw the bar of metric ``m`` (``{"value", "ci_low", "ci_high"}``) at ``xk`` with its interval and value.

    Returns the values that bound the bar from below (its ``ci_low`` when finite, then its value); nothing is
    drawn, and nothing returned, when the value is missing or not finite.
    """
    value = m.get("value")
    if not _finite(value):
        return []
    lows = []
    lo, hi = m.get("ci_low"), m.get("ci_high")
    yerr = None
    if _finite(lo) and _finite(hi):
        yerr = [[max(value - lo, 0.0)], [max(hi - value, 0.0)]]
        lows.append(lo)
    lows.append(value)
    ax.bar(
        xk,
        value,
        width=width * 0.92,
        color=colour,
        edgecolor="black",
        linewidth=0.6,
        hatch="///" if hatched else None,
        alpha=0.55 if hatched else 1.0,
        yerr=yerr,
        capsize=2.5,
        error_kw={"linewidth": 0.9},
    )
    top = hi if yerr is not None else value
    ax.text(xk, top + 0.004, f"{value:.3f}", ha="center", va="bottom", rotation=90, fontsize=7)
    return lows


def _method_legend(ax, colour_of: dict, *, hatched: bool) -> None:
    """A legend under the axes: a patch per method, and the hatched patch of deduplicated accuracy when drawn."""
    from matplotlib.patches import Patch

    handles = [Patch(facecolor=colour, edgecolor="black", label=m) for m, colour in colour_of.items()]
    if hatched:
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="///", label="accuracy, deduplicated test"))
    ax.legend(
        handles=handles,
        fontsize=8,
        loc="upper center",
        bbox_to_anchor=(0.5, -0.08),
        ncols=min(len(handles), 4),
        frameon=False,
    )


def reliability_figure(calibration: dict, ece: float, title: str):
    """Draw a reliability diagram: accuracy against confidence per bin, and how many items each bin holds.

    Parameters
    ----------
    calibration : dict
        The ``"calibration"`` block of :func:`brainmri.evaluation.metrics.summarize`:
        ``{"n_bins": int, "bins": {"count", "accuracy", "confidence": list}}``,
        bin ``b`` covering the top-class probabilities in
        ``(b / n_bins, (b + 1) / n_bins]``, None for an empty bin.
    ece : float
        The expected calibration error, written in the legend.
    title : str
        Figure title.

    Returns
    -------
    matplotlib.figure.Figure
        Two axes sharing the confidence axis. The upper one holds the diagonal
        of perfect calibration and a line through ``(confidence, accuracy)``
        of every non-empty bin, labelled with the ECE: below the diagonal the
        method is overconfident, above it underconfident. The lower one has a
        bar per bin whose height (written above it) is the number of items.

    References
    ----------
    C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On Calibration of Modern
    Neural Networks", ICML 2017, PMLR 70:1321-1330 (reliability diagrams).
    """
    n_bins = calibration["n_bins"]
    bins = calibration["bins"]
    count = np.asarray(bins["count"], dtype=int)
    filled = count > 0
    accuracy = np.array([a for a, f in zip(bins["accuracy"], filled, strict=True) if f], dtype=float)
    confidence = np.array([c for c, f in zip(bins["confidence"], filled, strict=True) if f], dtype=float)

    fig = new_figure(5.2, 5.6)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    top.plot([0, 1], [0, 1], color="0.6", linestyle="--", linewidth=1, label="perfect calibration")
    ece_text = f"{ece:.3f}" if _finite(ece) else "n/a"
    top.plot(
        confidence,
        accuracy,
        color=colors(1)[0],
        marker="o",
        linewidth=1.6,
        label=f"accuracy per confidence bin (ECE {ece_text})",
    )
    top.set_ylabel("accuracy")
    top.set_xlim(0, 1)
    top.set_ylim(-0.01, 1.01)
    top.grid(alpha=0.3)
    top.legend(loc="upper left", fontsize=8)
    top.set_title(title)
    bars = bottom.bar(
        np.arange(n_bins) / n_bins, count, width=1 / n_bins, align="edge", color="0.7", edgecolor="black", linewidth=0.5
    )
    bottom.bar_label(bars, labels=[str(c) if c else "" for c in count], fontsize=7)
    bottom.set_ylim(0, max(count.max(initial=0), 1) * 1.3)
    bottom.set_ylabel("items")
    bottom.set_xlabel(f"confidence (top-class probability, {n_bins} bins)")
    return fig


def learning_curves_figure(history: dict[str, list[dict]], title: str):
    """Draw training and validation loss, and validation accuracy, per epoch of every fold.

    Parameters
    ----------
    history : dict of str to list of dict
        Fold name -> per-epoch records with ``epoch``, ``train_loss``,
        ``val_loss`` and ``val_accuracy`` (a method's ``history`` block in
        ``results.json``).
    title : str

    Returns
    -------
    matplotlib.figure.Figure
        Two axes sharing the epoch axis: losses (solid: training, dashed:
        validation) and validation accuracy, one colour per fold.
    """
    fig = new_figure(6.4, 4.2)
    loss, accuracy = fig.subplots(1, 2, sharex=True)
    for color, (fold, records) in zip(colors(len(history)), history.items(), strict=True):
        epochs = [r["epoch"] for r in records]
        loss.plot(epochs, [r["train_loss"] for r in records], color=color, label=f"{fold} training")
        loss.plot(epochs, [r["val_loss"] for r in records], color=color, linestyle="--", label=f"{fold} validation")
        accuracy.plot(epochs, [r["val_accuracy"] for r in records], color=color, marker=".", label=fold)
    loss.set_xlabel("epoch")
    loss.set_ylabel("loss")
    loss.legend(fontsize=7)
    accuracy.set_xlabel("epoch")
    accuracy.set_ylabel("validation accuracy")
    accuracy.set_ylim(-0.01, 1.01)
    for ax in (loss, accuracy):
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    return fig


def render_figures(results: dict, predictions: dict[str, dict]) -> dict[str, bytes]:
    """Draw every figure of a benchmark report.

    Parameters
    ----------
    results : dict
        The benchmark results (``results.json``).
    predictions : dict of str to dict
        Method name -> ``{"y_true": list of str, "proba": array (n, n_classes),
        "classes": list of str}``, pooled over folds. A method missing here gets
        no ROC figure.

    Returns
    -------
    dict of str to bytes
        PNG images keyed ``"metric_comparison"``, then per method
        ``"confusion/<method>"``, ``"roc/<method>"`` and
        ``"reliability/<method>"`` (when its results have a ``calibration``
        block), ``"learning/<method>"`` (when they have a ``history``
        block: methods that train in epochs),
        ``"illustration/<method>/<k>"`` (the PNG pictures of the method's
        ``illustrate`` hook, ``predictions[method]["illustrations"]``, as
        they are), ``"explanation/<method>/<k>"`` (the attribution overlays
        of ``predictions[method]["explanations"]``, as they are), ``"risk_coverage/<method>"`` (when its
        ``ood`` block has curves) and ``"shift/<method>"`` (with ``--shift``), methods in the
        order of ``results``; with ``--shift`` also ``"shift_summary"``.
    """
    figures = {"metric_comparison": figure_png(metric_comparison_figure(results))}
    if results.get("shift"):
        figures["shift_summary"] = figure_png(shift_summary_figure(results))
    for name, method in results["methods"].items():
        if method.get("confusion"):
            figures[f"confusion/{name}"] = figure_png(
                confusion_matrix_figure(method["confusion"], f"{name}: confusion matrix")
            )
        if name in predictions:
            p = predictions[name]
            figures[f"roc/{name}"] = figure_png(
                roc_curves_figure(p["y_true"], p["proba"], p["classes"], f"{name}: ROC, one vs rest")
            )
        if method.get("calibration"):
            ece = method.get("metrics", {}).get("ece", {}).get("value")
            figures[f"reliability/{name}"] = figure_png(
                reliability_figure(method["calibration"], ece, f"{name}: reliability")
            )
        if method.get("history"):
            figures[f"learning/{name}"] = figure_png(
                learning_curves_figure(method["history"], f"{name}: learning curves")
            )
        for kind in ("illustration", "explanation"):
            for k, png in enumerate(predictions.get(name, {}).get(f"{kind}s", [])):
                figures[f"{kind}/{name}/{k}"] = png
        if method.get("ood", {}).get("risk_coverage"):
            figures[f"risk_coverage/{name}"] = figure_png(
                risk_coverage_figure(method["ood"], f"{name}: accuracy when abstaining")
            )
        if method.get("shift"):
            figures[f"shift/{name}"] = figure_png(
                shift_severity_figure(
                    method["shift"], results["shift"]["severities"], f"{name}: accuracy under acquisition shifts"
                )
            )
    return figures


def _file_names(keys) -> dict[str, str]:
    """A distinct, filesystem-safe PNG name for each figure key (``roc/glcm-svm`` -> ``roc_glcm-svm.png``)."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for key in keys:
        stem = re.sub(r"[^A-Za-z0-9._-]+", "_", key.replace("/", "_", 1)).strip("._") or "figure"
        name, k = f"{stem}.png", 2
        while name.lower() in taken:
            name, k = f"{stem}-{k}.png", k + 1
        taken.add(name.lower())
        names[key] = name
    return names


def write_figures(
    results: dict, predictions: dict[str, dict], out_dir: str | Path, figures: dict[str, bytes] | None = None
) -> dict[str, Path]:
    """Write every figure of :func:`render_figures` as a PNG file in ``out_dir/figures/``, atomically.

    ``figures`` are those already drawn by :func:`render_figures` (drawn here when None).

    Returns
    -------
    dict of str to Path
        Figure key (as in :func:`render_figures`) -> the file written. Method
        names are made safe for file names (``<`` or ``/`` become ``_``).
    """
    folder = Path(out_dir) / "figures"
    if figures is None:
        figures = render_figures(results, predictions)
    written = {}
    for key, name in _file_names(figures).items():
        with atomic_path(folder / name) as tmp:
            tmp.write_bytes(figures[key])
        written[key] = folder / name
    logger.info("wrote %d figures to %s", len(written), folder)
    return written
