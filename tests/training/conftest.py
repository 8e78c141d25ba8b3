"""Tiny synthetic images and a tiny CNN: every training test runs in about a second on one CPU thread."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from brainmri.data.synthetic import CLASSES, synthetic_slice  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every training test runs on one torch thread."""


@pytest.fixture(scope="session")
def tiny_images():
    """32 synthetic 32x32 slices (8 per class), their labels and one group per pair of images."""
    rng = np.random.default_rng(0)
    X = np.stack([synthetic_slice(c, rng, 32) for c in CLASSES for _ in range(8)]).astype(np.float32)
    y = np.repeat(np.array(CLASSES), 8)
    groups = np.arange(32) // 2
    return X, y, groups


@pytest.fixture
def tiny_net():
    """Keyword arguments of a TorchClassifier with a 4-channel ayadi-cnn, 3 epochs, batches of 8."""
    from brainmri.nets.cnn import ayadi_cnn

    return dict(
        module_builder=ayadi_cnn,
        module_params={"width": 4},
        epochs=3,
        batch_size=8,
        augment=True,
        device="cpu",
        precision="fp32",
    )
