"""Fixtures of the serve tests: a tiny trained CNN bundle, a stand-in model, request helpers."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from brainmri.cli import main

pytest.importorskip("fastapi")

#: A tiny ayadi-cnn (32 px, 4 channels wide) that trains in seconds; accuracy does not matter here.
CNN = [
    "--method",
    "ayadi-cnn",
    "--params",
    "ayadi-cnn.size=32,ayadi-cnn.width=4,ayadi-cnn.epochs=2,ayadi-cnn.batch_size=8,ayadi-cnn.threads=1",
    "--size",
    "32",
    "--device",
    "cpu",
]


@pytest.fixture(scope="session")
def cnn_bundle(demo_source, tmp_path_factory) -> Path:
    """A tiny ayadi-cnn bundle trained on the demo dataset."""
    pytest.importorskip("torch")
    out = tmp_path_factory.mktemp("serve") / "cnn"
    assert (
        main(["train", str(demo_source), "--out", str(out), *CNN, "--no-cache", "--no-validation", "--jobs", "1", "-q"])
        == 0
    )
    return out


@pytest.fixture(scope="session")
def cnn_model(cnn_bundle):
    from brainmri.models.bundle import load_model

    return load_model(cnn_bundle, device="cpu")


class StandIn:
    """A model with a bundle's interface; ``gate`` (an Event) holds every call, ``seen`` keeps the images.

    Its probability of ``glioma`` is the image's mean over its maximum, so that it tells images apart.
    """

    classes_ = np.array(["glioma", "notumor"])
    manifest = {
        "method": {"name": "stand-in", "family": "test"},
        "classes": ["glioma", "notumor"],
        "files": {"model.x": "0" * 64},
        "preprocess": {"crop": True, "size": 32},
    }
    path = Path("stand-in")

    def __init__(self):
        self.gate = threading.Event()
        self.gate.set()
        self.started = threading.Event()
        self.seen: list[np.ndarray] = []

    def predict_proba(self, images):
        self.started.set()
        assert self.gate.wait(10)
        self.seen += list(images)
        return np.array([[p, 1 - p] for p in map(self.glioma, images)])

    @staticmethod
    def glioma(image: np.ndarray) -> float:
        return float(np.mean(image) / (np.max(image) or 1))


@pytest.fixture
def stand_in() -> StandIn:
    return StandIn()


@pytest.fixture
def client_of():
    """``client_of(model, **settings)``: a TestClient of the app (closed at the end of the test)."""
    from fastapi.testclient import TestClient

    from brainmri.serve.app import create_app
    from brainmri.serve.settings import ServeSettings

    clients = []

    def make(model, **settings):
        client = TestClient(create_app(model, ServeSettings(**settings)))
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def pytest_configure(config):
    # Starlette 1.x deprecates its TestClient's httpx backend in favour of httpx2, which is not installed here.
    config.addinivalue_line("filterwarnings", "ignore:Using `httpx` with `starlette.testclient` is deprecated")
