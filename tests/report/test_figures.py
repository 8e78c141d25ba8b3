"""``report.figures``: what each figure draws (read back from its matplotlib artists) and the PNG files."""

from __future__ import annotations

import io
import math
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.metrics import auc, roc_curve

from brainmri.evaluation.metrics import summarize
from brainmri.report.charts import figure_png
from brainmri.report.figures import (
    confusion_matrix_figure,
    metric_comparison_figure,
    reliability_figure,
    render_figures,
    roc_curves_figure,
    write_figures,
)
from brainmri.report.parts import CHART_METRICS


def _image(png: bytes) -> Image.Image:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.width > 200 and image.height > 200
    return image


def _curves(ax) -> dict[str, np.ndarray]:
    """Label -> (x, y) points of every line but the dashed reference diagonal."""
    return {line.get_label(): line.get_xydata() for line in ax.get_lines() if line.get_linestyle() != "--"}


# ---------------------------------------------------------------- confusion matrix


@pytest.mark.parametrize(
    "confusion",
    [
        {"labels": ["glioma", "meningioma", "notumor"], "matrix": [[50, 3, 1], [4, 40, 6], [0, 2, 60]]},
        {"labels": ["no", "yes"], "matrix": [[10, 2], [3, 9]]},
        {"labels": ["a", "b", "c"], "matrix": [[5, 1, 0], [0, 0, 0], [1, 0, 4]]},  # a class never seen
    ],
    ids=["three-classes", "two-classes", "empty-row"],
)
def test_confusion_matrix_colours_rows_by_share_and_writes_counts(confusion):
    (ax, _colorbar) = confusion_matrix_figure(confusion, "a title").axes
    matrix = np.array(confusion["matrix"], dtype=float)
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros_like(matrix), where=totals > 0)  # an empty row stays 0
    np.testing.assert_allclose(ax.images[0].get_array(), share)
    n = len(confusion["labels"])
    cells = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert cells == {(i, j): f"{int(matrix[i, j])}\n{share[i, j]:.0%}" for i in range(n) for j in range(n)}
    assert [t.get_text() for t in ax.get_yticklabels()] == confusion["labels"]
    assert ax.get_title() == "a title"


def test_confusion_matrix_rejects_a_matrix_that_does_not_match_its_labels():
    with pytest.raises(ValueError, match=r"shape \(2, 2\), expected \(3, 3\)"):
        confusion_matrix_figure({"labels": ["a", "b", "c"], "matrix": [[1, 0], [0, 1]]}, "t")


# ---------------------------------------------------------------- ROC curves


def test_roc_curves_draw_one_curve_per_class_with_its_auc(make_benchmark):
    _, predictions = make_benchmark()
    p = predictions["glcm-svm"]
    (ax,) = roc_curves_figure(p["y_true"], p["proba"], p["classes"], "ROC").axes
    curves = _curves(ax)
    assert len(curves) == len(p["classes"])
    for k, cls in enumerate(p["classes"]):
        fpr, tpr, _ = roc_curve(np.array(p["y_true"]) == cls, p["proba"][:, k])
        (label,) = [name for name in curves if name.startswith(f"{cls} (")]
        assert label == f"{cls} (AUC {auc(fpr, tpr):.3f})"
        np.testing.assert_allclose(curves[label], np.column_stack([fpr, tpr]))
    assert ax.get_xlabel() == "false positive rate"


@pytest.mark.parametrize(
    ("y_true", "drawn", "skipped"),
    [
        (["a", "a", "b", "b", "a", "b"], ["a", "b"], "c"),  # class c absent
        (["a", "a", "a", "a", "a", "a"], [], "a, b, c"),  # only one class: no curve can be drawn
    ],
    ids=["one-absent", "all-one-class"],
)
def test_roc_curves_skip_classes_without_positives_or_negatives_and_name_them(y_true, drawn, skipped):
    proba = np.array(
        [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.5, 0.2], [0.5, 0.4, 0.1], [0.1, 0.8, 0.1]]
    )
    (ax,) = roc_curves_figure(y_true, proba, ["a", "b", "c"], "ROC").axes
    assert [label.split(" (")[0] for label in _curves(ax)] == drawn
    assert ax.get_xlabel().endswith(f"(no curve, class absent or alone in y_true: {skipped})")


def test_roc_curves_with_two_classes_draw_a_single_curve():
    y = np.array(["healthy", "tumor", "tumor", "healthy", "tumor"])
    p1 = np.array([0.2, 0.9, 0.4, 0.6, 0.8])
    (ax,) = roc_curves_figure(y, np.column_stack([1 - p1, p1]), ["healthy", "tumor"], "ROC").axes
    # positives .9 .4 .8 against negatives .2 .6: 5 of 6 pairs ordered -> AUC 5/6
    ((label, points),) = _curves(ax).items()
    assert label == "tumor vs healthy (AUC 0.833)"
    np.testing.assert_allclose(points[-1], [1.0, 1.0])


def test_roc_curves_reject_proba_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"proba has shape \(3, 2\), expected \(3, 3\)"):
        roc_curves_figure(["a", "b", "c"], np.full((3, 2), 0.5), ["a", "b", "c"], "ROC")


# ---------------------------------------------------------------- metric comparison


def _bars(ax) -> list[dict]:
    """Every bar in drawing order: centre, height, hatch and the ends of its error bar (None without)."""
    from matplotlib.container import BarContainer

    bars = []
    for container in [c for c in ax.containers if isinstance(c, BarContainer)]:
        (patch,) = container.patches
        whisker = None
        if container.errorbar is not None:
            (segment,) = container.errorbar.lines[2][0].get_segments()
            whisker = (segment[0][1], segment[1][1])
        bars.append(
            {
                "x": patch.get_x() + patch.get_width() / 2,
                "height": patch.get_height(),
                "hatch": patch.get_hatch(),
                "whisker": whisker,
            }
        )
    return bars


@pytest.mark.parametrize("split", ["cv", "official"])
def test_metric_comparison_draws_every_value_with_its_interval(make_benchmark, split):
    results, _ = make_benchmark(split=split)
    (ax,) = metric_comparison_figure(results).axes
    expected = []
    for metric in CHART_METRICS:
        for m in results["methods"].values():
            expected.append((m["metrics"][metric], None))
            if split == "official" and metric == "accuracy":
                expected.append((m["metrics_deduplicated"][metric], "///"))
    bars = _bars(ax)
    assert [(b["height"], b["hatch"]) for b in bars] == [(v["value"], hatch) for v, hatch in expected]
    np.testing.assert_allclose([b["whisker"] for b in bars], [(v["ci_low"], v["ci_high"]) for v, _ in expected])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == list(results["methods"]) + (["accuracy, deduplicated test"] if split == "official" else [])


def test_metric_comparison_leaves_a_gap_for_missing_values(make_benchmark):
    results, _ = make_benchmark(methods={"a": 0.9, "b": 0.5})
    full = _bars(metric_comparison_figure(results).axes[0])
    results["methods"]["a"]["metrics"]["auc"] = {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    del results["methods"]["b"]["metrics"]["macro_f1"]
    results["methods"]["b"]["metrics"]["accuracy"] = {"value": 0.5}  # no confidence interval
    bars = _bars(metric_comparison_figure(results).axes[0])
    # slots: accuracy a b, balanced a b, macro F1 a [b], AUC [a] b: the other bars keep their places
    assert [b["x"] for b in bars] == [b["x"] for k, b in enumerate(full) if k not in (5, 6)]
    assert bars[1]["height"] == 0.5 and bars[1]["whisker"] is None
    assert bars[5]["height"] == results["methods"]["b"]["metrics"]["auc"]["value"]


def test_figures_are_deterministic(make_benchmark):
    results, _ = make_benchmark(split="official")
    assert figure_png(metric_comparison_figure(results)) == figure_png(metric_comparison_figure(results))


# ---------------------------------------------------------------- reliability diagram


def test_reliability_diagram_draws_the_hand_computed_bins():
    # Confidences .9 (right) and .92 (wrong) share the bin (13/15, 14/15]; .7 and .6 (right) sit alone.
    y = ["a", "b", "b", "b"]
    proba = [[0.9, 0.1], [0.92, 0.08], [0.3, 0.7], [0.4, 0.6]]
    out = summarize(y, proba, ["a", "b"], n_boot=1)
    top, bottom = reliability_figure(out["calibration"], out["metrics"]["ece"]["value"], "m: reliability").axes
    ((label, points),) = _curves(top).items()
    assert label == "accuracy per confidence bin (ECE 0.380)"
    np.testing.assert_allclose(points, [[0.6, 1.0], [0.7, 1.0], [0.91, 0.5]])
    (diagonal,) = [line for line in top.get_lines() if line.get_linestyle() == "--"]
    np.testing.assert_allclose(diagonal.get_xydata(), [[0, 0], [1, 1]])
    assert [t.get_text() for t in top.get_legend().get_texts()] == ["perfect calibration", label]
    # one bar per bin, as high as its count, starting at the bin's lower edge, the count written over it
    counts = [0] * 8 + [1, 0, 1, 0, 0, 2, 0]
    assert [p.get_height() for p in bottom.patches] == counts
    np.testing.assert_allclose([p.get_x() for p in bottom.patches], np.arange(15) / 15)
    assert [t.get_text() for t in bottom.texts] == [str(c) if c else "" for c in counts]


def test_reliability_diagram_of_a_method_without_an_ece_says_so():
    calibration = {
        "n_bins": 15,
        "bins": {"count": [0] * 14 + [3], "accuracy": [None] * 14 + [1.0], "confidence": [None] * 14 + [0.99]},
    }
    top, _ = reliability_figure(calibration, float("nan"), "t").axes
    assert list(_curves(top)) == ["accuracy per confidence bin (ECE n/a)"]


def test_render_figures_draws_a_reliability_diagram_per_method_with_calibration(make_benchmark):
    results, predictions = make_benchmark(methods={"a": 0.9, "b": 0.6})
    del results["methods"]["b"]["calibration"]  # results written before calibration was measured
    assert list(render_figures(results, predictions)) == [
        "metric_comparison",
        "confusion/a",
        "roc/a",
        "reliability/a",
        "confusion/b",
        "roc/b",
    ]


# ---------------------------------------------------------------- files


def test_write_figures(make_benchmark, tmp_path):
    results, predictions = make_benchmark(methods={"glcm-svm": 0.9, "<script>/evil": 0.7})
    del predictions["glcm-svm"]  # no predictions: no ROC figure, the rest still drawn
    written = write_figures(results, predictions, tmp_path)
    assert list(written) == [
        "metric_comparison",
        "confusion/glcm-svm",
        "reliability/glcm-svm",
        "confusion/<script>/evil",
        "roc/<script>/evil",
        "reliability/<script>/evil",
    ]
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(
        [
            "metric_comparison.png",
            "confusion_glcm-svm.png",
            "reliability_glcm-svm.png",
            "confusion__script_evil.png",
            "roc__script_evil.png",
            "reliability__script_evil.png",
        ]
    )
    for path in written.values():
        assert path.parent == tmp_path / "figures"
        _image(path.read_bytes())


def test_write_figures_keeps_names_distinct(make_benchmark, tmp_path):
    results, predictions = make_benchmark(methods={"a b": 0.9, "a_b": 0.8, "A?B": 0.7})
    written = write_figures(results, {}, tmp_path)
    assert len({p.name.lower() for p in written.values()}) == len(written) == 7


def test_drawing_uses_no_pyplot_and_importing_loads_no_matplotlib():
    code = (
        "import sys\n"
        "import brainmri.report\n"
        "assert 'matplotlib' not in sys.modules, 'imported at import time'\n"
        "cm = {'labels': ['a', 'b'], 'matrix': [[1, 0], [0, 1]]}\n"
        "brainmri.report.figure_png(brainmri.report.confusion_matrix_figure(cm, 't'))\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, capture_output=True, timeout=120)


def test_nan_is_never_drawn_as_a_bar(make_benchmark):
    results, _ = make_benchmark(methods={"a": 0.9})
    results["methods"]["a"]["metrics"]["auc"]["value"] = float("nan")
    heights = [b["height"] for b in _bars(metric_comparison_figure(results).axes[0])]
    assert len(heights) == len(CHART_METRICS) - 1 and not any(math.isnan(h) for h in heights)
