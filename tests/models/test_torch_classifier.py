import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from brainmri.data.synthetic import CLASSES, synthetic_slice  # noqa: E402
from brainmri.errors import ConfigError, DataError  # noqa: E402
from brainmri.models.torch_classifier import TorchClassifier  # noqa: E402
from brainmri.models.validation import holdout_split  # noqa: E402
from brainmri.nets.cnn import ayadi_cnn  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(1)
    X = np.stack([synthetic_slice(c, rng, 32) for c in CLASSES for _ in range(6)]).astype(np.float32)
    return X, np.repeat(np.array(CLASSES), 6), np.arange(24) // 2


def small(**kw):
    return TorchClassifier(
        ayadi_cnn, **{"module_params": {"width": 4}, "epochs": 2, "batch_size": 8, "device": "cpu", **kw}
    )


def test_no_group_straddles_training_and_validation():
    y = np.repeat(["a", "b"], 20)
    groups = np.arange(40) // 4
    train, val, how = holdout_split(y, groups, fraction=0.2)
    assert not set(groups[train]) & set(groups[val])
    assert set(y[val]) == {"a", "b"} and len(val) == 8
    assert how == "StratifiedGroupKFold holdout (1 of 5 folds) over 10 groups"


def test_a_class_with_one_group_is_refused_with_the_fix(data):
    X, y, _ = data
    groups = np.where(y == "glioma", 0, np.arange(24))
    with pytest.raises(
        DataError,
        match=r"class\(es\) 'glioma' \(1\) have fewer than 2 independent groups .* too few "
        r"for the validation part .*merge classes with --label-map",
    ):
        small().fit(X, y, groups)


def test_probabilities_are_calibrated_softmax_in_classes_order(data):
    X, y, groups = data
    model = small().fit(X, y, groups)
    p = model.predict_proba(X)
    assert p.shape == (24, 4) and p.dtype == np.float64
    np.testing.assert_allclose(p.sum(1), 1.0)
    assert list(model.classes_) == sorted(CLASSES)
    logits = model.predict_logits(X).astype(np.float64) / model.temperature_
    np.testing.assert_allclose(p, np.exp(logits) / np.exp(logits).sum(1, keepdims=True), rtol=1e-6)
    assert model.params_["inner_cv"].startswith("StratifiedGroupKFold holdout")
    assert model.params_["device"] == "cpu" and model.params_["n_val"] > 0
    assert [r["epoch"] for r in model.history_] == [1, 2]


def test_predictions_fold_batch_norm_without_changing_the_outputs(data):
    X, y, groups = data
    model = small(precision="fp32").fit(X, y, groups)
    logits = model.predict_logits(X)
    folded = model._inference_module()
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.module_.modules())  # the trained module is kept
    with torch.inference_mode():
        expected = model.module_(torch.from_numpy(X).unsqueeze(1)).numpy()
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)


def test_vectors_train_too():
    rng = np.random.default_rng(0)
    X = np.vstack([rng.normal(0, 1, (20, 5)), rng.normal(3, 1, (20, 5))]).astype(np.float32)
    y = np.repeat(["low", "high"], 20)

    def mlp(*, num_classes, input_shape):
        return torch.nn.Sequential(torch.nn.Linear(input_shape[0], 8), torch.nn.ReLU(), torch.nn.Linear(8, num_classes))

    model = TorchClassifier(mlp, epochs=30, batch_size=8, lr=0.05, device="cpu").fit(X, y)
    assert (model.predict(X) == y).mean() > 0.9
    assert model.params_["inner_cv"] == "StratifiedKFold holdout (1 of 5 folds), no groups given"


def test_items_of_another_shape_are_refused(data):
    X, y, groups = data
    model = small().fit(X, y, groups)
    with pytest.raises(DataError, match=r"items of shape \(16, 16\), but the model was trained on \(32, 32\)"):
        model.predict_proba(np.zeros((1, 16, 16), dtype=np.float32))


@pytest.mark.parametrize(
    "setting, value, message",
    [
        ("epochs", 0, "epochs must be an integer >= 1, got 0"),
        ("precision", "fp16", "precision must be one of auto, bf16, fp32, got 'fp16'"),
        ("val_fraction", 0.9, r"val_fraction must be a number in \(0, 0.5\], got 0.9"),
        ("batch_size", 1, "batch_size must be an integer >= 2"),
    ],
)
def test_bad_settings_are_refused_before_training(data, setting, value, message):
    X, y, groups = data
    with pytest.raises(ConfigError, match=f"training parameter {message}"):
        small(**{setting: value}).fit(X, y, groups)


def test_saved_state_restores_identical_predictions(data, tmp_path):
    X, y, groups = data
    model = small(channels_last=True).fit(X, y, groups)
    names = model.save_state(tmp_path, "classifier.")
    assert sorted(names) == ["classifier.state.json", "classifier.weights.safetensors"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    loaded = small(channels_last=True).load_state(tmp_path, "classifier.")
    np.testing.assert_array_equal(loaded.predict_proba(X), model.predict_proba(X))
    assert list(loaded.classes_) == list(model.classes_) and loaded.history_ == model.history_


def test_damaged_state_files_are_named_in_the_error(data, tmp_path):
    X, y, groups = data
    small().fit(X, y, groups).save_state(tmp_path, "c.")
    weights = tmp_path / "c.weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(DataError, match=r"c\.weights\.safetensors: not the weights this method expects"):
        small().load_state(tmp_path, "c.")
    meta = tmp_path / "c.state.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "format": 99}))
    with pytest.raises(DataError, match=r"c\.state\.json: state format 99, this brainmri reads format 1"):
        small().load_state(tmp_path, "c.")
    meta.write_text("{")
    with pytest.raises(DataError, match=r"c\.state\.json: cannot be read"):
        small().load_state(tmp_path, "c.")


@pytest.mark.parametrize("kw", [{"tta": True}, {"tta": False}, {"tta": True, "adapt": "adabn"}])
def test_probabilities_and_embedding_in_one_pass_equal_those_of_two(data, kw):
    X, y, groups = data
    model = small(tta=kw["tta"]).fit(X, y, groups)
    model.set_params(adapt=kw.get("adapt", "none"))
    proba, Z = model.predict_proba_with_embedding(X)
    np.testing.assert_allclose(proba, model.predict_proba(X), atol=1e-6)
    np.testing.assert_allclose(Z, model.embed(X), rtol=1e-4, atol=1e-4)
    assert Z.shape == (len(X), model.embed(X[:1]).shape[1])
