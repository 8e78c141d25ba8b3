"""``brainmri serve``: options checked with one-line errors, the warning for other hosts, the server started."""

from __future__ import annotations

import io
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import brainmri
from brainmri.cli import main


@pytest.fixture
def started(monkeypatch):
    """Replaces uvicorn: records the app and settings that ``brainmri serve`` would serve."""
    import torch

    import brainmri.serve.app

    calls = []
    monkeypatch.setattr(
        brainmri.serve.app,
        "run_server",
        lambda app, settings, quiet: calls.append((app, settings, torch.get_num_threads())),
    )
    return calls


def test_serve_loads_the_bundle_once_and_serves_it_on_localhost(cnn_bundle, started, caplog, capsys):
    from fastapi.testclient import TestClient

    assert main(["serve", str(cnn_bundle), "--port", "0", "--device", "cpu"]) == 0
    [(app, settings, threads)] = started
    assert settings.host == "127.0.0.1" and settings.port == 0 and settings.token is None
    assert settings.workers == 2 and threads == 1  # one torch thread per worker
    assert "serving" in capsys.readouterr().err
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    with TestClient(app) as client:
        assert client.get("/model").json()["classes"] == ["glioma", "meningioma", "notumor", "pituitary"]


@pytest.mark.parametrize(
    "token, warned",
    [
        (None, "there is no authentication: anyone who reaches it can use the model; set --token"),
        ("long-enough-token", "its token travels unencrypted over plain HTTP"),
    ],
)
def test_another_host_is_served_with_a_warning(token, warned, cnn_bundle, started, capsys, monkeypatch):
    monkeypatch.delenv("BRAINMRI_SERVE_TOKEN", raising=False)
    argv = ["serve", str(cnn_bundle), "--host", "0.0.0.0", "--device", "cpu"] + (["--token", token] if token else [])
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "WARNING: --host 0.0.0.0: other machines can reach this server" in err and warned in err


def test_the_token_can_come_from_the_environment(cnn_bundle, started, monkeypatch):
    monkeypatch.setenv("BRAINMRI_SERVE_TOKEN", "from-the-environment")
    assert main(["serve", str(cnn_bundle), "--device", "cpu", "-q"]) == 0
    assert started[0][1].token == "from-the-environment"


def test_threads_and_workers_can_be_chosen(cnn_bundle, started):
    assert main(["serve", str(cnn_bundle), "--device", "cpu", "-q", "--threads", "2", "--workers", "3"]) == 0
    [(_, settings, threads)] = started
    assert settings.workers == 3 and threads == 2


@pytest.mark.parametrize(
    "option, value, match",
    [
        ("--workers", "0", "--workers must be an integer >= 1, got 0"),
        ("--queue-size", "-1", "--queue-size must be an integer >= 0, got -1"),
        ("--max-files", "0", "--max-files must be an integer >= 1, got 0"),
        ("--max-upload-mb", "0", "--max-upload-mb must be a positive number of MiB, got 0.0"),
        ("--max-pixels", "0", "--max-pixels must be a positive integer"),
        ("--port", "70000", "--port must be between 0 and 65535, got 70000"),
        ("--token", "short", "--token must be at least 8 printable characters without spaces"),
    ],
)
def test_bad_options_are_one_line_errors(option, value, match, cnn_bundle, started, error_line):
    assert main(["serve", str(cnn_bundle), option, value]) == 2
    assert match in error_line("serve")
    assert started == []


def test_not_a_bundle_and_keep_uploads_inside_it_are_refused(cnn_bundle, tmp_path, started, error_line):
    assert main(["serve", str(tmp_path)]) == 2
    assert "not a brainmri model bundle" in error_line("serve")
    assert main(["serve", str(cnn_bundle), "--keep-uploads", str(cnn_bundle / "kept")]) == 2
    assert "--keep-uploads" in error_line("serve") and not (cnn_bundle / "kept").exists()
    assert started == []


@pytest.mark.slow
def test_the_command_serves_over_http_and_stops_cleanly_on_sigterm(cnn_bundle):
    import httpx

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(Path(brainmri.__file__).parents[1])}
    png = io.BytesIO()
    Image.fromarray(np.tile(np.arange(40, dtype=np.uint8) * 5, (40, 1))).save(png, format="PNG")
    with subprocess.Popen(
        [sys.executable, "-m", "brainmri", "serve", str(cnn_bundle), "--port", str(port), "-q", "--device", "cpu"],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    ) as server:
        try:
            deadline = time.monotonic() + 120
            while True:
                assert server.poll() is None and time.monotonic() < deadline, "brainmri serve did not start"
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            answer = httpx.post(
                f"http://127.0.0.1:{port}/predict", files={"files": ("a.png", png.getvalue())}, timeout=60
            )
            assert answer.status_code == 200 and answer.json()["model"]["method"] == "ayadi-cnn"
        finally:
            server.send_signal(signal.SIGTERM)
        assert server.wait(60) == 143
        assert server.stderr.read().strip().splitlines()[-1] == "brainmri serve: terminated (SIGTERM)"


def test_serve_onnx_predicts_with_the_export_and_explains_with_the_network(cnn_bundle, started, tmp_path, capsys):
    from fastapi.testclient import TestClient

    from brainmri.models.bundle import load_model

    pytest.importorskip("onnxruntime")
    exported = tmp_path / "cnn.onnx"
    assert main(["export", str(cnn_bundle), "--onnx", "--out", str(exported), "-q"]) == 0
    assert main(["serve", str(cnn_bundle), "--onnx", "--onnx-file", str(exported), "--device", "cpu"]) == 0
    [(app, _, _)] = started
    assert "with ONNX Runtime" in capsys.readouterr().err
    image = (np.random.default_rng(0).random((64, 64)) * 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    with TestClient(app) as client:
        answer = client.post("/predict?heatmap=true", files={"files": ("slice.png", buffer.getvalue(), "image/png")})
    assert answer.status_code == 200, answer.text
    [result] = answer.json()["predictions"]
    bundle = load_model(cnn_bundle, device="cpu")
    expected = bundle.predict_proba([image.astype(np.float32)])[0]  # bf16 in PyTorch, float32 in ONNX Runtime
    np.testing.assert_allclose([result["probabilities"][c] for c in bundle.classes_], expected, atol=0.02)
    assert result["heatmap"]["method"] == "gradcam"


def test_serve_onnx_without_an_export_is_one_line(cnn_bundle, started, tmp_path, capsys):
    assert (
        main(["serve", str(cnn_bundle), "--onnx", "--onnx-file", str(tmp_path / "none.onnx"), "--device", "cpu"]) == 2
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert not started and len(err) == 1 and "none.onnx" in err[0]


def test_serve_picks_its_runtime_by_itself_and_still_explains_with_the_network(cnn_bundle, started, tmp_path, capsys):
    from fastapi.testclient import TestClient

    pytest.importorskip("onnxruntime")
    assert main(["serve", str(cnn_bundle), "--device", "cpu", "--cache-dir", str(tmp_path / "cache")]) == 0
    [(app, _, _)] = started
    said = capsys.readouterr().err  # the fastest runtime here, timed at first use
    runtimes = ("ONNX Runtime, classes", "OpenVINO, classes", "PyTorch (the fastest here: PyTorch ")
    assert any(f"(ayadi-cnn with {runtime}" in said for runtime in runtimes), said
    assert list((tmp_path / "cache" / "onnx").glob("*/model.onnx"))  # exported on first use, outside the bundle
    assert not (cnn_bundle / "model.onnx").exists()
    buffer = io.BytesIO()
    Image.fromarray((np.random.default_rng(1).random((64, 64)) * 255).astype(np.uint8)).save(buffer, format="PNG")
    with TestClient(app) as client:
        answer = client.post("/predict?heatmap=true", files={"files": ("slice.png", buffer.getvalue(), "image/png")})
    assert answer.status_code == 200, answer.text
    [result] = answer.json()["predictions"]
    assert result["heatmap"]["method"] == "gradcam" and abs(sum(result["probabilities"].values()) - 1) < 1e-6
