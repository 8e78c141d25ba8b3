"""``--mlflow``: benchmark, train and tune recorded as MLflow runs, in a local store and on a real ``mlflow server``."""

from __future__ import annotations

import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from brainmri.cli import main
from brainmri.runs.tracking import flat_params

mlflow = pytest.importorskip("mlflow")
pytestmark = pytest.mark.system  # MLflow: skipped without it, a failure in CI

FAST = ["--size", "48", "--no-cache", "--jobs", "1", "-q"]


def _run(argv: list[str]) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(argv) == 0
    return printed.getvalue()


def _recorded(printed: str) -> str:
    [line] = [line for line in printed.splitlines() if line.startswith("recorded in MLflow: run ")]
    return line.split()[4]


def test_benchmark_and_train_are_recorded_with_intervals_outputs_and_a_model_that_predicts(
    demo_source, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)  # a SQLite store keeps its artefacts in ./mlruns, MLflow's default
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    out = tmp_path / "bench"
    argv = ["benchmark", str(demo_source), "--methods", "glcm-svm,rf", "--cv", "2", "--n-boot", "50", "--out", str(out)]
    run_id = _recorded(_run([*argv, *FAST, "--mlflow", uri]))
    client = mlflow.MlflowClient(uri)
    run = client.get_run(run_id)
    results = json.loads((out / "results.json").read_text())
    accuracy = results["methods"]["rf"]["metrics"]["accuracy"]
    assert run.data.metrics["rf.accuracy"] == pytest.approx(accuracy["value"])
    assert run.data.metrics["rf.accuracy.ci_low"] == pytest.approx(accuracy["ci_low"])
    assert run.data.params["split"] == "cv" and run.data.params["preprocess.size"] == "48"
    assert run.data.tags["brainmri.command"] == "benchmark"
    assert {a.path for a in client.list_artifacts(run_id)} == {"results.json", "report.html", "predictions.csv"}
    assert (tmp_path / "mlruns").is_dir()

    model = tmp_path / "model"
    train = ["train", str(demo_source), "--method", "ovo-svm", "--out", str(model), *FAST, "--mlflow", uri]
    trained = _recorded(_run(train))
    assert "validation.accuracy" in client.get_run(trained).data.metrics
    paths = sorted(str(p) for p in demo_source.rglob("*.png"))
    # MLflow prints its advice to type the predict method here, whatever the warning filters say (it forces it).
    served = mlflow.pyfunc.load_model(f"runs:/{trained}/model").predict(paths)
    expected = brainmri_proba(model, paths)
    np.testing.assert_allclose(served[["glioma", "meningioma", "notumor", "pituitary"]].to_numpy(), expected)
    assert list(served["predicted"]) == [
        ["glioma", "meningioma", "notumor", "pituitary"][k] for k in expected.argmax(1)
    ]


def brainmri_proba(model: Path, paths: list[str]) -> np.ndarray:
    import brainmri

    return brainmri.load_model(model).predict_proba(paths)


def test_a_server_that_does_not_answer_costs_the_record_not_the_results(demo_source, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    out = tmp_path / "bench"
    argv = ["benchmark", str(demo_source), "--methods", "rf", "--cv", "2", "--n-boot", "50", "--out", str(out), *FAST]
    assert main([*argv, "--mlflow", f"http://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"--mlflow http://127.0.0.1:{port}: the run was not recorded" in err[0]
    assert (out / "results.json").exists() and (out / "report.html").exists()


@pytest.fixture
def mlflow_server(tmp_path):
    """A real ``mlflow server`` (SQLite store, artefacts served by it) on a free port; its URL."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    argv = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(port)]
    argv += ["--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}"]
    argv += ["--artifacts-destination", str(tmp_path / "artifacts"), "--workers", "1"]
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert server.poll() is None, server.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "mlflow server did not start in 120 s"
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        server.stderr.close()


@pytest.mark.slow
def test_tune_is_recorded_on_a_real_tracking_server(leaky_split_source, mlflow_server, tmp_path):
    pytest.importorskip("optuna")
    out = tmp_path / "tune"
    argv = ["tune", str(leaky_split_source), "--method", "glcm-svm", "--split", "official", "--trials", "3"]
    run_id = _recorded(_run([*argv, "--out", str(out), "--n-boot", "50", *FAST, "--mlflow", mlflow_server]))
    run = mlflow.MlflowClient(mlflow_server).get_run(run_id)
    results = json.loads((out / "results.json").read_text())
    [(name, entry)] = results["test"]["methods"].items()
    key = name.replace(" ", "_")  # "glcm-svm tuned by tpe": MLflow keys take no spaces
    assert run.data.metrics[f"{key}.accuracy"] == pytest.approx(entry["metrics"]["accuracy"]["value"])
    chosen = flat_params({"best_params": results["best_params"]})  # best_params.glcm-svm.C, ...
    assert chosen and all(run.data.params[key] == value for key, value in chosen.items())
    assert "best_params.json" in {a.path for a in mlflow.MlflowClient(mlflow_server).list_artifacts(run_id)}
