"""The Python API (``brainmri.audit``, ``benchmark``, ``train``, ``load_model``): what a notebook gets, and the same
numbers as the commands with the same settings."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest

import brainmri
from brainmri.cli import main
from brainmri.errors import ConfigError

pd = pytest.importorskip("pandas")

SETTINGS = {"split": "cv", "cv": 2, "n_boot": 50, "seed": 0}


@pytest.fixture(scope="module")
def run(demo_source, tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "bench"
    return brainmri.benchmark(
        demo_source, ["glcm-svm", "rf"], out=out, preprocess={"size": 48}, cache_dir=False, n_jobs=1, **SETTINGS
    )


def test_benchmark_gives_tables_and_the_report(run, demo_source):
    metrics = run.metrics
    assert list(metrics.index) == ["glcm-svm", "rf"] and metrics.index.name == "method"
    assert {"accuracy", "balanced_accuracy", "macro_f1", "ece"} <= set(metrics.columns)
    assert metrics.loc["rf", "accuracy"] == run.results["methods"]["rf"]["metrics"]["accuracy"]["value"]
    bounds = run.intervals.set_index(["method", "metric"]).loc[("rf", "accuracy")]
    assert bounds.ci_low <= bounds.value <= bounds.ci_high
    predictions = run.predictions
    assert len(predictions) == 2 * 24 and set(predictions["method"]) == {"glcm-svm", "rf"}
    right = (predictions[predictions.method == "rf"].predicted == predictions[predictions.method == "rf"].label).mean()
    assert right == pytest.approx(metrics.loc["rf", "accuracy"])
    assert run.report.is_file() and "<table" in run._repr_html_()
    assert set(run.comparisons.columns) >= {"a", "b"}


def test_the_command_gives_the_same_numbers(run, demo_source, tmp_path):
    argv = ["benchmark", str(demo_source), "--methods", "glcm-svm,rf", "--out", str(tmp_path / "cli"), "--size", "48"]
    argv += ["--cv", "2", "--n-boot", "50", "--seed", "0", "--no-cache", "--jobs", "1", "-q"]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(argv) == 0
    cli = json.loads((tmp_path / "cli" / "results.json").read_text())
    for name in ("glcm-svm", "rf"):
        assert cli["methods"][name]["metrics"] == run.results["methods"][name]["metrics"]


def test_audit_and_train_then_load_model(demo_source, tmp_path):
    found = brainmri.audit(demo_source, n_jobs=1, out=tmp_path / "audit")
    assert found.n_readable == 24 and found.report["n_items"] == 24
    assert found.path == tmp_path / "audit" / "audit.json" and found.path.is_file()
    assert "items: 24  readable: 24" in str(found)
    bundle = brainmri.train(
        demo_source, "ovo-svm", out=tmp_path / "model", preprocess={"size": 64}, cache_dir=False, n_jobs=1
    )
    paths = sorted(str(p) for p in demo_source.rglob("*.png"))
    again = brainmri.load_model(tmp_path / "model")
    np.testing.assert_allclose(bundle.predict_proba(paths), again.predict_proba(paths))
    assert bundle.timing_s["total"] > 0 and again.manifest["config"]["preprocess"]["size"] == 64


def test_bad_settings_are_one_clear_error(demo_source, tmp_path):
    with pytest.raises(ConfigError, match="--methods|method"):
        brainmri.benchmark(demo_source, ["no-such-method"], out=tmp_path / "b")
    with pytest.raises(TypeError, match="unexpected keyword argument 'splitt'"):
        brainmri.benchmark(demo_source, ["rf"], out=tmp_path / "b", splitt="official")
    assert not (tmp_path / "b").exists()
