import csv

import numpy as np
import pytest
import torch

from brainmri.models.torch_classifier import TorchClassifier
from brainmri.training.loop import epoch_listener
from brainmri.training.settings import HISTORY_FIELDS


def weights(model: TorchClassifier) -> dict:
    return {k: v.clone() for k, v in model.module_.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_gives_identical_weights_and_another_seed_does_not(tiny_images, tiny_net):
    X, y, groups = tiny_images
    first = TorchClassifier(**tiny_net, seed=1).fit(X, y, groups)
    second = TorchClassifier(**tiny_net, seed=1).fit(X, y, groups)
    other = TorchClassifier(**tiny_net, seed=2).fit(X, y, groups)
    assert same(weights(first), weights(second))
    assert np.array_equal(first.predict_proba(X), second.predict_proba(X))
    assert not same(weights(first), weights(other))


class Stop(Exception):
    pass


def test_an_interrupted_run_resumes_to_the_weights_of_an_uninterrupted_one(tiny_images, tiny_net, tmp_path):
    X, y, groups = tiny_images
    whole = TorchClassifier(**tiny_net, work_dir=tmp_path / "whole").fit(X, y, groups)

    def stop_after_two(record):
        if record["epoch"] == 2:
            raise Stop

    with pytest.raises(Stop), epoch_listener(stop_after_two):
        TorchClassifier(**tiny_net, work_dir=tmp_path / "cut").fit(X, y, groups)
    resumed = TorchClassifier(**tiny_net, work_dir=tmp_path / "cut").fit(X, y, groups)
    assert resumed.params_["resumed_after_epoch"] == 2
    assert [r["epoch"] for r in resumed.history_] == [1, 2, 3]
    assert same(weights(whole), weights(resumed))
    assert resumed.temperature_ == whole.temperature_
    # The last epoch's raw and averaged weights too, not only the best epoch's (which may precede the cut).
    end = [torch.load(tmp_path / run / "checkpoint.pt", weights_only=True) for run in ("whole", "cut")]
    assert same(end[0]["model"], end[1]["model"]) and same(end[0]["ema"], end[1]["ema"])


def test_every_epoch_is_logged_to_csv_and_to_listeners(tiny_images, tiny_net, tmp_path):
    X, y, groups = tiny_images
    seen = []
    with epoch_listener(seen.append):
        model = TorchClassifier(**tiny_net, work_dir=tmp_path).fit(X, y, groups)
    with open(tmp_path / "training_log.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3] == [r["epoch"] for r in seen]
    assert tuple(rows[0]) == HISTORY_FIELDS
    assert all(r["epochs"] == 3 for r in seen)
    assert [r["val_accuracy"] for r in model.history_] == [float(r["val_accuracy"]) for r in rows]
    assert (tmp_path / "checkpoint.pt").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_checkpoint_of_other_settings_is_not_resumed(tiny_images, tiny_net, tmp_path):
    X, y, groups = tiny_images
    TorchClassifier(**tiny_net, work_dir=tmp_path).fit(X, y, groups)
    changed = TorchClassifier(**{**tiny_net, "lr": 1e-3}, work_dir=tmp_path).fit(X, y, groups)
    assert "resumed_after_epoch" not in changed.params_
    assert len(changed.history_) == 3


def test_the_kept_weights_are_those_of_the_best_validation_epoch(tiny_images, tiny_net):
    X, y, groups = tiny_images
    model = TorchClassifier(**{**tiny_net, "epochs": 4}).fit(X, y, groups)
    best = max(model.history_, key=lambda r: (r["val_accuracy"], -r["val_loss"]))
    assert model.params_["best_epoch"] == best["epoch"]
    assert model.params_["val_accuracy"] == pytest.approx(best["val_accuracy"], abs=1e-6)
