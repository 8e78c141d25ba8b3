"""A deduplicated test that lacks a class says so: absent classes named, their figures null, averages over the rest."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest
from sklearn.metrics import f1_score

from brainmri.data.preprocess import Preprocess
from brainmri.evaluation.metrics import METRICS
from brainmri.report.terminal import format_results
from brainmri.runs.benchmark import run_benchmark
from brainmri.runs.config import BenchmarkConfig

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]
UNDEFINED = {"sensitivity": None, "specificity": None, "precision": None, "f1": None, "support": 0}


def _split(demo_source, root, fresh: tuple[str, ...]):
    """Training: images 0-3 of each demo class. Testing: images 4-5 of the ``fresh`` classes, and of every other
    class two exact copies of its training images 0 and 1, so that its deduplicated test has none."""
    for cls_dir in sorted(p for p in demo_source.iterdir() if p.is_dir()):
        images = sorted(cls_dir.glob("*.png"))
        for src in images[:4]:
            (root / "Training" / cls_dir.name).mkdir(parents=True, exist_ok=True)
            shutil.copy(src, root / "Training" / cls_dir.name / src.name)
        (root / "Testing" / cls_dir.name).mkdir(parents=True, exist_ok=True)
        for src in images[4:6] if cls_dir.name in fresh else images[:2]:
            shutil.copy(src, root / "Testing" / cls_dir.name / f"test_{src.name}")
    return root


def _run(demo_source, tmp_path, fresh):
    data = _split(demo_source, tmp_path / "split", fresh)
    config = BenchmarkConfig(
        data=str(data), methods=("rf",), split="official", n_boot=50, preprocess=Preprocess(size=48)
    )
    out = tmp_path / "out"
    results = run_benchmark(config, out, n_jobs=1, cache_dir=tmp_path / "cache")
    return results, out


def _deduplicated_predictions(out) -> tuple[list[str], list[str]]:
    """True and predicted labels of the test items that copy no training item, from predictions.csv."""
    with open(out / "predictions.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if not r["path"].startswith("Testing/notumor/")]
    return [r["label"] for r in rows], [r["predicted"] for r in rows]


@pytest.fixture(scope="module")
def without_notumor(demo_source, tmp_path_factory):
    """Read-only: a benchmark whose deduplicated test has no notumor item (every notumor test image is a copy)."""
    return _run(demo_source, tmp_path_factory.mktemp("no-notumor"), ("glioma", "meningioma", "pituitary"))


def test_results_name_the_absent_class_and_leave_its_figures_undefined(without_notumor):
    results, out = without_notumor
    entry = json.loads((out / "results.json").read_text())["methods"]["rf"]
    assert entry["n_test"] == 8 and entry["n_test_deduplicated"] == 6
    assert entry["classes_absent_deduplicated"] == ["notumor"]
    assert entry["classes_present_deduplicated"] == ["glioma", "meningioma", "pituitary"]
    assert entry["metrics_undefined_deduplicated"] == {}
    assert entry["per_class_deduplicated"]["notumor"] == UNDEFINED
    assert [entry["per_class_deduplicated"][c]["support"] for c in CLASSES] == [2, 2, 0, 2]
    # The whole test has every class: nothing is said of it, and its keys are those of a complete test.
    assert not any(k in entry for k in ("classes_absent", "classes_present", "metrics_undefined"))
    assert entry["metrics"] == results["methods"]["rf"]["metrics"]


def test_balanced_accuracy_and_macro_averages_run_over_the_classes_present(without_notumor):
    results, out = without_notumor
    metrics = results["methods"]["rf"]["metrics_deduplicated"]
    y, predicted = _deduplicated_predictions(out)
    present = ["glioma", "meningioma", "pituitary"]
    recall = [np.mean([p == c for t, p in zip(y, predicted, strict=True) if t == c]) for c in present]
    assert metrics["balanced_accuracy"]["value"] == pytest.approx(np.mean(recall))
    assert metrics["sensitivity"]["value"] == pytest.approx(np.mean(recall))
    assert metrics["macro_f1"]["value"] == pytest.approx(f1_score(y, predicted, labels=present, average="macro"))
    assert all(metrics[m]["value"] is not None for m in METRICS)


def test_terminal_and_report_say_the_deduplicated_test_has_no_notumor(without_notumor):
    results, out = without_notumor
    statement = (
        "deduplicated test has no notumor item: per-class figures for notumor undefined; "
        "balanced accuracy, macro averages and AUC over glioma, meningioma, pituitary"
    )
    text = format_results(results)
    assert f"\n  {statement}\n" in text
    assert "\n  test has no" not in text
    page = (out / "report.html").read_text()
    callout = f'<div class="callout"><strong>Not every class is in the test.</strong> The {statement}.</div>'
    assert page.count(callout) == 2  # beside the deduplicated accuracy of the results, and in the method's metrics


def test_a_deduplicated_test_of_one_class_leaves_auc_and_specificity_undefined(demo_source, tmp_path):
    results, out = _run(demo_source, tmp_path, ("glioma",))
    entry = json.loads((out / "results.json").read_text())["methods"]["rf"]
    assert entry["classes_present_deduplicated"] == ["glioma"]
    assert entry["classes_absent_deduplicated"] == ["meningioma", "notumor", "pituitary"]
    reason = "needs items of at least two classes; the deduplicated test has only glioma"
    assert entry["metrics_undefined_deduplicated"] == {"auc": reason, "specificity": reason}
    for name in ("auc", "specificity"):
        assert entry["metrics_deduplicated"][name] == {"value": None, "ci_low": None, "ci_high": None}
    assert entry["per_class_deduplicated"]["glioma"]["specificity"] is None
    y, predicted = _deduplicated_predictions(out)
    glioma = [p == "glioma" for t, p in zip(y, predicted, strict=True) if t == "glioma"]
    assert entry["metrics_deduplicated"]["balanced_accuracy"]["value"] == pytest.approx(np.mean(glioma))
    assert "balanced accuracy and macro averages over glioma alone; AUC and specificity undefined" in format_results(
        results
    )


def test_an_empty_deduplicated_test_has_every_figure_null(demo_source, tmp_path):
    results, out = _run(demo_source, tmp_path, ())
    entry = json.loads((out / "results.json").read_text())["methods"]["rf"]
    assert entry["n_test_deduplicated"] == 0 and entry["classes_present_deduplicated"] == []
    assert entry["classes_absent_deduplicated"] == CLASSES
    assert entry["metrics_deduplicated"] == {m: {"value": None, "ci_low": None, "ci_high": None} for m in METRICS}
    assert entry["metrics_undefined_deduplicated"] == dict.fromkeys(METRICS, "the deduplicated test has no item")
    assert all(entry["per_class_deduplicated"][c] == UNDEFINED for c in CLASSES)
    text = format_results(results)
    assert "  rf: no such item (full test " in text
    assert "  deduplicated test has no item: every figure undefined" in text
    assert "The deduplicated test has no item: every figure undefined." in (out / "report.html").read_text()


def test_a_complete_deduplicated_test_keeps_its_keys_and_says_nothing(leaky_split_source, tmp_path):
    # Two test items copy a training item, but every class keeps fresh ones: figures over all four classes.
    config = BenchmarkConfig(
        data=str(leaky_split_source), methods=("rf",), split="official", n_boot=50, preprocess=Preprocess(size=48)
    )
    results = run_benchmark(config, tmp_path / "o", n_jobs=1)
    entry = results["methods"]["rf"]
    assert entry["n_test_deduplicated"] == 8
    assert not [k for k in entry if k.startswith(("classes_", "metrics_undefined"))]
    assert all(r["support"] == 2 and r["sensitivity"] is not None for r in entry["per_class_deduplicated"].values())
    assert "has no" not in format_results(results)
    assert "Not every class is in the test" not in (tmp_path / "o" / "report.html").read_text()


def test_an_external_test_without_a_class_says_so_for_the_whole_test(demo_source, tmp_path):
    from brainmri.data.synthetic import write_demo_data

    other = write_demo_data(tmp_path / "other", n=3, seed=7, size=64)
    shutil.rmtree(other / "meningioma")
    config = BenchmarkConfig(
        data=str(demo_source), test_data=str(other), methods=("rf",), n_boot=50, preprocess=Preprocess(size=48)
    )
    results = run_benchmark(config, tmp_path / "out", n_jobs=1, cache_dir=tmp_path / "cache")
    entry = results["methods"]["rf"]
    assert entry["n_test"] == 9 and "metrics_deduplicated" not in entry
    assert entry["classes_absent"] == ["meningioma"] and entry["metrics_undefined"] == {}
    assert entry["classes_present"] == ["glioma", "notumor", "pituitary"]
    assert entry["per_class"]["meningioma"] == UNDEFINED
    statement = (
        "test has no meningioma item: per-class figures for meningioma undefined; "
        "balanced accuracy, macro averages and AUC over glioma, notumor, pituitary"
    )
    assert f"\n  {statement}\n" in format_results(results)
    assert f"The {statement}." in (tmp_path / "out" / "report.html").read_text()
