"""``report.figures``: PNG bytes from confusion matrices, predictions and results, written atomically."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from brainmri.report.figures import (
    confusion_matrix_png,
    metric_comparison_png,
    roc_curves_png,
    write_figures,
)


def _image(png: bytes) -> Image.Image:
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    image = Image.open(io.BytesIO(png))
    image.load()
    assert image.width > 200 and image.height > 200
    return image


@pytest.mark.parametrize(
    "confusion",
    [
        {"labels": ["glioma", "meningioma", "notumor"], "matrix": [[50, 3, 1], [4, 40, 6], [0, 2, 60]]},
        {"labels": ["no", "yes"], "matrix": [[10, 2], [3, 9]]},
        {"labels": ["a", "b", "c"], "matrix": [[5, 1, 0], [0, 0, 0], [1, 0, 4]]},  # a class never seen
    ],
    ids=["three-classes", "two-classes", "empty-row"],
)
def test_confusion_matrix_png(confusion):
    _image(confusion_matrix_png(confusion, "a title"))


def test_confusion_matrix_png_rejects_a_matrix_that_does_not_match_its_labels():
    with pytest.raises(ValueError, match=r"shape \(2, 2\), expected \(3, 3\)"):
        confusion_matrix_png({"labels": ["a", "b", "c"], "matrix": [[1, 0], [0, 1]]}, "t")


def test_roc_curves_png_four_classes(make_benchmark):
    _, predictions = make_benchmark()
    p = predictions["glcm-svm"]
    _image(roc_curves_png(p["y_true"], p["proba"], p["classes"], "ROC"))


@pytest.mark.parametrize(
    "y_true",
    [
        ["a", "a", "b", "b", "a", "b"],  # class c absent
        ["a", "a", "a", "a", "a", "a"],  # only one class: no curve can be drawn
    ],
    ids=["one-absent", "all-one-class"],
)
def test_roc_curves_png_skips_classes_without_positives_or_negatives(y_true):
    proba = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.2, 0.7, 0.1], [0.3, 0.5, 0.2], [0.5, 0.4, 0.1], [0.1, 0.8, 0.1]])
    _image(roc_curves_png(y_true, proba, ["a", "b", "c"], "ROC"))


def test_roc_curves_png_two_classes():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 40)
    p1 = np.clip(0.3 + 0.4 * y + rng.normal(0, 0.2, 40), 0, 1)
    proba = np.column_stack([1 - p1, p1])
    _image(roc_curves_png(np.where(y == 1, "tumor", "healthy"), proba, ["healthy", "tumor"], "ROC"))


def test_roc_curves_png_rejects_proba_of_the_wrong_shape():
    with pytest.raises(ValueError, match=r"proba has shape \(3, 2\), expected \(3, 3\)"):
        roc_curves_png(["a", "b", "c"], np.full((3, 2), 0.5), ["a", "b", "c"], "ROC")


@pytest.mark.parametrize("split", ["cv", "official"])
def test_metric_comparison_png(make_benchmark, split):
    results, _ = make_benchmark(split=split)
    _image(metric_comparison_png(results))


def test_metric_comparison_png_leaves_a_gap_for_missing_values(make_benchmark):
    results, _ = make_benchmark(methods={"a": 0.9, "b": 0.5})
    results["methods"]["a"]["metrics"]["auc"] = {"value": float("nan"), "ci_low": float("nan"), "ci_high": float("nan")}
    del results["methods"]["b"]["metrics"]["macro_f1"]
    results["methods"]["b"]["metrics"]["accuracy"] = {"value": 0.5}  # no confidence interval
    _image(metric_comparison_png(results))


def test_figures_are_deterministic(make_benchmark):
    results, _ = make_benchmark(split="official")
    assert metric_comparison_png(results) == metric_comparison_png(results)


def test_write_figures(make_benchmark, tmp_path):
    results, predictions = make_benchmark(methods={"glcm-svm": 0.9, "<script>/evil": 0.7})
    del predictions["glcm-svm"]  # no predictions: no ROC figure, the rest still drawn
    written = write_figures(results, predictions, tmp_path)
    assert list(written) == ["metric_comparison", "confusion/glcm-svm", "confusion/<script>/evil", "roc/<script>/evil"]
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == sorted(
        ["metric_comparison.png", "confusion_glcm-svm.png", "confusion__script_evil.png", "roc__script_evil.png"]
    )
    for path in written.values():
        assert path.parent == tmp_path / "figures"
        _image(path.read_bytes())


def test_write_figures_keeps_names_distinct(make_benchmark, tmp_path):
    results, predictions = make_benchmark(methods={"a b": 0.9, "a_b": 0.8, "A?B": 0.7})
    written = write_figures(results, {}, tmp_path)
    assert len({p.name.lower() for p in written.values()}) == len(written) == 4


def test_drawing_uses_no_pyplot_and_importing_loads_no_matplotlib():
    code = (
        "import sys\n"
        "import brainmri.report\n"
        "assert 'matplotlib' not in sys.modules, 'imported at import time'\n"
        "brainmri.report.confusion_matrix_png({'labels': ['a', 'b'], 'matrix': [[1, 0], [0, 1]]}, 't')\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    subprocess.run([sys.executable, "-W", "error", "-c", code], check=True, capture_output=True, timeout=120)
