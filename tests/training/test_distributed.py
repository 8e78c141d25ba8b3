"""Data-parallel training in two CPU processes (gloo), started by PyTorch's launcher: learning, determinism, resume,
the epoch listeners, errors, and ``brainmri train --nproc 2`` to a bundle that loads."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from brainmri.cli import main
from brainmri.errors import ConfigError
from brainmri.models.bundle import load_model
from brainmri.models.torch_classifier import TorchClassifier
from brainmri.training.loop import epoch_listener

pytestmark = pytest.mark.slow  # each run starts two fresh interpreters


def weights(model: TorchClassifier) -> dict:
    return {k: v.clone() for k, v in model.module_.state_dict().items()}


class Stop(Exception):
    pass


@pytest.fixture(scope="module")
def squares():
    """96 noisy 32x32 slices, half of them with a bright square: a network learns them in a few epochs."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.array(["bright", "dark"]), 48)
    X = (rng.random((96, 32, 32)) * 0.3).astype(np.float32)
    X[y == "bright", 8:24, 8:24] += 0.6
    return X, y, np.arange(96) // 2


@pytest.fixture
def two(tiny_net):
    return {**tiny_net, "epochs": 8, "lr": 5e-3, "augment": False, "channels_last": True, "processes": 2, "threads": 1}


def test_two_processes_learn_resume_exactly_and_tell_every_epoch(squares, two, tmp_path):
    X, y, groups = squares
    heard = []
    with epoch_listener(lambda record: heard.append(record["epoch"])):
        whole = TorchClassifier(**two, work_dir=tmp_path / "whole").fit(X, y, groups)
    assert heard == list(range(1, 9))  # process 0's epochs, heard in this process
    assert whole.params_["processes"] == 2 and len(whole.history_) == 8
    assert (whole.predict(X) == y).mean() >= 0.9  # chance is 0.5
    # The network kept here is laid out as one process lays it out (channels-last, as asked): 2x slower otherwise.
    conv = next(w for w in whole.module_.parameters() if w.ndim == 4 and w.shape[1] > 1)
    assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()

    def stop_after_four(record):
        if record["epoch"] == 4:
            raise Stop

    with pytest.raises(Stop), epoch_listener(stop_after_four):
        TorchClassifier(**two, work_dir=tmp_path / "cut").fit(X, y, groups)
    resumed = TorchClassifier(**two, work_dir=tmp_path / "cut").fit(X, y, groups)
    assert resumed.params_["resumed_after_epoch"] == 4
    assert [r["epoch"] for r in resumed.history_] == list(range(1, 9))
    # Same seed, same number of processes: the same weights, interrupted or not.
    a, b = weights(whole), weights(resumed)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # A checkpoint of two processes is not continued by one (another run): it starts again.
    one = TorchClassifier(**{**two, "processes": 1}, work_dir=tmp_path / "cut").fit(X, y, groups)
    assert "resumed_after_epoch" not in one.params_ and "processes" not in one.params_


def test_an_error_in_the_processes_is_the_callers_one_line_error(tiny_images, two):
    X, y, groups = tiny_images
    with pytest.raises(ConfigError, match="frozen_stages=1 needs a network with a backbone"):
        TorchClassifier(**{**two, "frozen_stages": 1}).fit(X, y, groups)


@pytest.mark.parametrize(
    "processes, message",
    [(0, "processes .--nproc. must be an integer >= 1"), (9, "--nproc 9: each process needs items of every batch")],
)
def test_impossible_numbers_of_processes_are_refused_before_training(tiny_images, tiny_net, processes, message):
    X, y, groups = tiny_images
    with pytest.raises(ConfigError, match=message):
        TorchClassifier(**{**tiny_net, "processes": processes}).fit(X, y, groups)


def test_train_nproc_2_writes_a_bundle_that_loads_and_predicts(demo_source, tmp_path, capsys):
    out = tmp_path / "model"
    params = "ayadi-cnn.size=32,ayadi-cnn.width=4,ayadi-cnn.epochs=4,ayadi-cnn.batch_size=8,ayadi-cnn.threads=1"
    argv = ["train", str(demo_source), "--method", "ayadi-cnn", "--params", params, "--out", str(out)]
    assert main([*argv, "--nproc", "2", "--no-cache", "--jobs", "1", "--device", "cpu", "-q"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["processes"] == 2 and manifest["method"]["fitted"]["processes"] == 2
    assert set(manifest["training_data"]["timing_s"]) >= {"reading", "features", "training", "ood", "total"}
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1].startswith("time: reading (waited for) ") and ", training " in printed[-1]
    bundle = load_model(out)
    proba = bundle.predict_proba(sorted(str(p) for p in demo_source.rglob("*.png")))
    assert proba.shape == (24, 4) and np.allclose(proba.sum(1), 1)


def test_nproc_is_refused_for_a_method_without_a_network(demo_source, tmp_path, capsys, error_line):
    argv = ["train", str(demo_source), "--method", "ovo-svm", "--out", str(tmp_path / "m"), "--nproc", "2"]
    assert main(argv) == 2
    assert "--nproc 2: ovo-svm trains no network" in error_line("train")
    assert not (tmp_path / "m").exists()
