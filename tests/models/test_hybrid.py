"""fcm-dwt-dnn and mlp: network builders, pipelines, the 7-fold default protocol and the segmentation pictures."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from brainmri.cli import main  # noqa: E402
from brainmri.data.preprocess import Preprocess  # noqa: E402
from brainmri.errors import ConfigError  # noqa: E402
from brainmri.features.fcm import FCMWaveletFeatures  # noqa: E402
from brainmri.models.catalog import default_cv, get_method, protocol_notes
from brainmri.nets.dnn import dnn7, mlp  # noqa: E402
from brainmri.runs.benchmark import run_benchmark  # noqa: E402
from brainmri.runs.config import BenchmarkConfig  # noqa: E402

PRE = Preprocess(size=48)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    from brainmri.data.synthetic import write_demo_data

    root = tmp_path_factory.mktemp("hybrid")
    data = write_demo_data(root / "data", n=6, seed=2, size=64)
    paths = np.array(sorted(str(p) for p in data.rglob("*.png")))
    labels = np.array([Path(p).parent.name for p in paths])
    return data, paths, labels


# ---------------------------------------------------------------- networks


@pytest.mark.parametrize("builder, n_linear", [(dnn7, 8), (mlp, 3)])
def test_networks_map_vectors_to_logits(builder, n_linear):
    net = builder(num_classes=4, input_shape=(10,))
    assert net(torch.zeros(5, 10)).shape == (5, 4)
    assert sum(isinstance(m, torch.nn.Linear) for m in net.modules()) == n_linear  # hidden layers + output


def test_dnn7_widths_and_depth_are_checked():
    net = dnn7(num_classes=3, input_shape=(6,), hidden=(8,) * 7)
    assert [m.out_features for m in net.modules() if isinstance(m, torch.nn.Linear)] == [8] * 7 + [3]
    with pytest.raises(ConfigError, match=r"dnn7: hidden must list 7 layer widths, got 2: \(8, 8\); use mlp"):
        dnn7(num_classes=3, input_shape=(6,), hidden=(8, 8))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_classes": 1, "input_shape": (4,)}, r"mlp: num_classes must be an integer >= 2, got 1"),
        ({"num_classes": 2, "input_shape": (0,)}, r"mlp: input_shape must be a tuple of positive integers, got \(0,\)"),
        ({"num_classes": 2, "input_shape": (4,), "dropout": 1.0}, r"mlp: dropout must be in \[0, 1\), got 1\.0"),
    ],
)
def test_bad_network_settings_are_refused(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        mlp(**kwargs)


# ---------------------------------------------------------------- methods


@pytest.mark.slow
@pytest.mark.parametrize("name", ["fcm-dwt-dnn", "mlp"])
def test_methods_train_and_predict_calibrated_probabilities(small, name):
    _, paths, labels = small
    model = get_method(name).builder(seed=0, preprocess=PRE, epochs=2, device="cpu")
    train = np.arange(len(paths)) % 4 != 0
    model.fit(paths[train], labels[train], groups=np.arange(train.sum()))
    proba = model.predict_proba(paths[~train])
    assert proba.shape == (int((~train).sum()), 4) and list(model.classes_) == sorted(set(labels))
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert model.params_["epochs_run"] == 2 and "StratifiedGroupKFold" in model.params_["inner_cv"]
    middle = model.steps[1][1]  # PCA or scaler: fitted on the training items only
    seen = getattr(middle, "n_samples_", None) or middle.n_samples_seen_
    assert seen == train.sum()


def test_fcm_features_are_cached_and_the_pca_learns_from_training_items_only(small, tmp_path, monkeypatch):
    _, paths, labels = small
    computed = []
    real = FCMWaveletFeatures._extract
    monkeypatch.setattr(FCMWaveletFeatures, "_extract", lambda self, image: computed.append(1) or real(self, image))
    build = get_method("fcm-dwt-dnn").builder
    features = build(preprocess=PRE, cache_dir=tmp_path).steps[0][1].fit(paths)
    first = features.transform(paths)
    assert len(computed) == len(paths) and first.shape == (len(paths), 1024)
    again = build(preprocess=PRE, cache_dir=tmp_path).steps[0][1].fit(paths).transform(paths)
    assert len(computed) == len(paths) and np.array_equal(first, again)  # the second method read the cache

    pca = build(preprocess=PRE, cache_dir=tmp_path, n_components=5).steps[1][1].fit(first[:10])
    assert pca.n_samples_ == 10 and pca.transform(first).shape == (len(paths), 5)


def test_the_fitted_method_draws_segmentations(small):
    _, paths, _ = small
    model = get_method("fcm-dwt-dnn").builder(preprocess=PRE)
    pictures = model.illustrate(paths[:2])
    assert [p.shape for _, p in pictures] == [(256, 512, 3)] * 2
    assert all(c.startswith("fcm_dwt: fuzzy C-means segmentation into 5") for c, _ in pictures)
    assert not hasattr(get_method("mlp").builder(), "illustrate")


# ---------------------------------------------------------------- protocol


def test_seven_folds_only_when_every_method_follows_the_study():
    assert get_method("fcm-dwt-dnn").default_cv == 7
    assert default_cv(["fcm-dwt-dnn"]) == 7
    assert default_cv(["fcm-dwt-dnn", "glcm-svm"]) == default_cv(["glcm-svm"]) == 5
    (note,) = protocol_notes(["glcm-svm", "fcm-dwt-dnn"], 5)
    assert note.startswith("fcm-dwt-dnn was evaluated with 7-fold cross-validation in its study; this run uses 5")
    assert protocol_notes(["fcm-dwt-dnn"], 7) == []


@pytest.mark.parametrize("extra, folds", [([], 7), (["--cv", "3"], 3)])
def test_benchmark_without_cv_uses_the_methods_protocol(small, tmp_path, monkeypatch, extra, folds):
    from brainmri import api

    seen = []

    def record(config, out, **kwargs):
        seen.append(config)
        raise ConfigError("stop here")

    monkeypatch.setattr(api, "run_benchmark", record)  # what the command calls, through brainmri.api
    data, _, _ = small
    for methods, expected in (("fcm-dwt-dnn", folds), ("fcm-dwt-dnn,glcm-svm", 5 if not extra else folds)):
        assert main(["benchmark", str(data), "--methods", methods, "--out", str(tmp_path / "out"), *extra]) == 2
        assert seen.pop().cv == expected


@pytest.mark.slow
def test_report_shows_a_few_segmentation_maps(small, tmp_path):
    data, _, _ = small
    config = BenchmarkConfig(
        data=str(data), methods=("fcm-dwt-dnn",), cv=2, n_boot=20, preprocess=PRE, params={"fcm-dwt-dnn": {"epochs": 2}}
    )
    results = run_benchmark(config, tmp_path / "out", n_jobs=1, cache_dir=tmp_path / "cache")
    out = tmp_path / "out"
    captions = results["methods"]["fcm-dwt-dnn"]["illustrations"]
    assert len(captions) == 4  # the first test image of each class in the first fold
    assert all("fuzzy C-means segmentation" in c for c in captions)
    assert {c.split(" (")[1].split(")")[0] for c in captions} == {"glioma", "meningioma", "notumor", "pituitary"}
    assert sorted(p.name for p in (out / "figures").glob("illustration_*")) == [
        f"illustration_fcm-dwt-dnn_{k}.png" for k in range(4)
    ]
    html = (out / "report.html").read_text()
    assert html.count("<h4>Illustrations</h4>") == 1 and all(c in html for c in captions)
    assert results["methods"]["fcm-dwt-dnn"]["params"]["fold0"]["epochs_run"] == 2
    notes = json.loads((out / "results.json").read_text())["protocol"]["notes"]
    assert any(n.startswith("fcm-dwt-dnn was evaluated with 7-fold cross-validation") for n in notes)
