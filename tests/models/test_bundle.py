"""Model bundles: every method round-trips, loading refuses what it cannot trust, training writes all or nothing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

import brainmri
from brainmri.data.io import read_image
from brainmri.data.preprocess import Preprocess
from brainmri.errors import BrainMRIError, ConfigError, DataError
from brainmri.files import sha256
from brainmri.models.bundle import load_model
from brainmri.models.manifest import MANIFEST
from brainmri.runs.config import TrainConfig
from brainmri.runs.train import train_bundle

#: The classical methods; the forests (300 trees, fitted 6 times each) take ~5 s.
CLASSICAL = [
    "glcm-svm",
    "ovo-svm",
    pytest.param("multifeature-rf", marks=pytest.mark.slow),
    pytest.param("rf", marks=pytest.mark.slow),
]


def _train(data, out, method="glcm-svm", **kwargs):
    config = TrainConfig(data=str(data), method=method, preprocess=Preprocess(size=64), **kwargs)
    return train_bundle(config, out, n_jobs=1)


@pytest.fixture(scope="module")
def trained(demo_source, tmp_path_factory):
    """``trained(method)``: the in-memory Bundle that train_bundle returned, trained once per method."""
    done = {}

    def get(method):
        if method not in done:
            # Only ovo-svm (fast) measures its internal validation; the others skip its inner refits.
            done[method] = _train(
                demo_source, tmp_path_factory.mktemp("bundles") / method, method, validate=method == "ovo-svm"
            )
        return done[method]

    return get


@pytest.fixture
def bundle_copy(trained, tmp_path):
    """A copy of the glcm-svm bundle that a test may damage."""
    return Path(shutil.copytree(trained("glcm-svm").path, tmp_path / "model"))


def _images(data):
    return sorted(str(p) for p in Path(data).rglob("*.png"))


@pytest.mark.parametrize("method", CLASSICAL)
def test_every_classical_method_round_trips(trained, demo_source, method):
    fitted = trained(method)
    loaded = brainmri.load_model(fitted.path)
    paths = _images(demo_source)
    np.testing.assert_array_equal(loaded.predict_proba(paths), fitted.predict_proba(paths))
    assert list(loaded.classes_) == ["glioma", "meningioma", "notumor", "pituitary"]
    assert loaded.manifest["method"]["name"] == method


def test_predict_proba_takes_arrays_as_well_as_paths(trained, demo_source):
    loaded = load_model(trained("glcm-svm").path)
    paths = _images(demo_source)[:6]
    arrays = [read_image(p)[0] for p in paths]
    np.testing.assert_array_equal(loaded.predict_proba(arrays), loaded.predict_proba(paths))
    assert list(loaded.predict(np.stack(arrays))) == list(loaded.predict(paths))


def test_manifest_describes_the_training_and_hashes_every_file(trained, demo_source):
    bundle = trained("ovo-svm")
    manifest = json.loads((bundle.path / MANIFEST).read_text())
    assert manifest["classes"] == ["glioma", "meningioma", "notumor", "pituitary"]
    assert manifest["preprocess"]["size"] == 64 and manifest["preprocess"]["version"] == Preprocess.version
    assert manifest["input_size"] == [64, 64]
    assert manifest["training_data"]["n_items"] == 24
    assert manifest["training_data"]["image_sizes"] == {"64x64": 24}
    assert "exact_duplicate_clusters" in manifest["audit"]
    assert "GLCMFeatures" in manifest["versions"]["extractors"]
    assert "scikit-learn" in manifest["libraries"]
    assert 0 <= manifest["validation"]["metrics"]["accuracy"] <= 1
    assert "StratifiedGroupKFold" in manifest["validation"]["how"]
    files = sorted(p.name for p in bundle.path.iterdir() if p.name != MANIFEST)
    assert files == sorted(manifest["files"]) == ["model.classifier.skops", "ood.npz"]
    assert all(sha256(bundle.path / name) == digest for name, digest in manifest["files"].items())


def _edit_manifest(folder, **changes):
    path = folder / MANIFEST
    manifest = json.loads(path.read_text())
    for key, value in changes.items():
        manifest[key] = value
    path.write_text(json.dumps(manifest))


def _append_byte(folder):
    with open(folder / "model.classifier.skops", "ab") as fh:
        fh.write(b"\0")


def _truncate(folder, *, rehash=False):
    weights = folder / "model.classifier.skops"
    weights.write_bytes(weights.read_bytes()[:1000])
    if rehash:  # a manifest made to match: the skops reader itself must refuse the file
        _edit_manifest(folder, files={weights.name: sha256(weights)})


class _Foreign:
    """A type no bundle of brainmri holds."""


def _untrusted(folder):
    import skops.io

    weights = folder / "model.classifier.skops"
    skops.io.dump(_Foreign(), weights)
    _edit_manifest(folder, files={weights.name: sha256(weights)})


def _versions(folder):
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["versions"]["extractors"]["GLCMFeatures"] += 1
    _edit_manifest(folder, versions=manifest["versions"])


@pytest.mark.parametrize(
    "damage, match",
    [
        (_append_byte, r"model.classifier.skops: sha256 differs from the manifest"),
        (_truncate, r"model.classifier.skops: sha256 differs"),
        (lambda f: _truncate(f, rehash=True), r"model.classifier.skops: cannot be read as a skops file"),
        (_untrusted, r"model.classifier.skops: holds types that brainmri does not load"),
        (lambda f: (f / "model.classifier.skops").unlink(), r"model.classifier.skops: missing from the bundle"),
        (lambda f: _edit_manifest(f, format_version=99), r"manifest.json: bundle format version 99"),
        (
            lambda f: _edit_manifest(f, brainmri_version="9.0.0"),
            r"manifest.json: bundle written by brainmri 9.0.0, incompatible",
        ),
        (_versions, r"manifest.json: made with other preprocessing or feature code \(GLCMFeatures \d+ -> \d+\)"),
        (lambda f: (f / MANIFEST).write_text("{not json"), r"manifest.json: not a readable bundle manifest"),
        (lambda f: (f / MANIFEST).unlink(), r"not a brainmri model bundle \(no manifest.json\)"),
        (lambda f: _edit_manifest(f, files={"../x.skops": "0"}), r"leads out of the bundle folder"),
    ],
)
def test_damaged_or_incompatible_bundles_are_refused(bundle_copy, damage, match):
    damage(bundle_copy)
    with pytest.raises(DataError, match=match) as info:
        load_model(bundle_copy)
    assert "\n" not in str(info.value)


def test_an_extractor_added_since_the_bundle_was_written_does_not_refuse_it(bundle_copy):
    manifest = json.loads((bundle_copy / MANIFEST).read_text())
    del manifest["versions"]["extractors"]["BackboneEmbeddings"]  # as if the bundle's brainmri had no such extractor
    _edit_manifest(bundle_copy, versions=manifest["versions"])
    assert load_model(bundle_copy).classes_.tolist() == manifest["classes"]


def test_unknown_method_is_refused(bundle_copy):
    manifest = json.loads((bundle_copy / MANIFEST).read_text())
    _edit_manifest(bundle_copy, method={**manifest["method"], "name": "no-such-method"})
    with pytest.raises(ConfigError, match=r"method 'no-such-method' is not registered"):
        load_model(bundle_copy)


def test_a_named_configuration_round_trips_under_its_name(demo_source, tmp_path):
    fitted = _train(demo_source, tmp_path / "model", "glcm-svm@small", validate=False)
    loaded = load_model(fitted.path)
    assert loaded.manifest["method"]["name"] == "glcm-svm@small"
    np.testing.assert_array_equal(
        loaded.predict_proba(_images(demo_source)), fitted.predict_proba(_images(demo_source))
    )
    _edit_manifest(fitted.path, method={**loaded.manifest["method"], "name": "no-such-method@small"})
    with pytest.raises(ConfigError, match=r"method 'no-such-method@small' is not registered"):
        load_model(fitted.path)


def test_training_refuses_out_inside_data_and_writes_nothing(demo_data, listing):
    before = listing(demo_data)
    with pytest.raises(ConfigError, match=r"--out .*lies inside the input folder"):
        _train(demo_data, demo_data / "model")
    assert listing(demo_data) == before


def test_training_refuses_a_folder_that_is_not_a_bundle(demo_source, tmp_path):
    out = tmp_path / "results"
    (out / "keep.txt").parent.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match=r"--out .*results: an existing folder that is not a brainmri bundle"):
        _train(demo_source, out)
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_training_again_replaces_an_earlier_bundle_and_leaves_no_temporary_folder(trained, demo_source, tmp_path):
    out = Path(shutil.copytree(trained("glcm-svm").path, tmp_path / "model"))
    _train(demo_source, out, seed=1, validate=False)
    assert json.loads((out / MANIFEST).read_text())["config"]["seed"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def _web_manifest(folder):
    (folder / MANIFEST).write_text('{"name": "my web app", "icons": []}')
    (folder / "thesis.tex").write_text("chapter 1")
    (folder / "sub").mkdir()
    (folder / "sub" / "data.csv").write_text("a,b")


def _notes_beside_a_bundle(folder):
    (folder / "NOTES.md").write_text("my notes")


def _changed_weights(folder):
    with open(folder / "model.classifier.skops", "ab") as fh:
        fh.write(b"\0")


@pytest.mark.parametrize(
    "spoil, message",
    [
        (_web_manifest, r"its manifest\.json is not a brainmri bundle manifest"),
        (_notes_beside_a_bundle, r"holds NOTES\.md, which the bundle did not write"),
        (_changed_weights, r"its file model\.classifier\.skops is missing or differs from the bundle's manifest"),
    ],
    ids=["web-app-manifest", "user-notes", "changed-weights"],
)
def test_a_folder_that_is_not_an_untouched_bundle_is_never_replaced(
    trained, demo_source, tmp_path, listing, spoil, message
):
    # Issue 20: a folder with a web app's manifest.json lost thesis.tex, and NOTES.md beside a bundle was lost.
    out = Path(shutil.copytree(trained("glcm-svm").path, tmp_path / "model"))
    spoil(out)
    before = listing(tmp_path)
    with pytest.raises(
        ConfigError,
        match=rf"^--out .*model: {message}.*, so brainmri does not replace it; choose a new "
        "folder, or an earlier bundle to replace$",
    ):
        _train(demo_source, out, validate=False)
    assert listing(tmp_path) == before


def test_a_bundle_folder_that_holds_the_data_is_never_replaced(trained, demo_source, tmp_path, listing):
    # Issue 20: `train X1/data --out X1` deleted the dataset when X1 held a manifest.json.
    out = Path(shutil.copytree(trained("glcm-svm").path, tmp_path / "X1"))
    data = shutil.copytree(demo_source, out / "data")
    before = listing(tmp_path)
    with pytest.raises(
        ConfigError,
        match=r"^--out .*X1: holds the input .*X1/data, which replacing the folder would "
        "delete; choose a new folder$",
    ):
        _train(data, out, validate=False)
    assert listing(tmp_path) == before


def test_a_bundle_changed_during_training_is_kept_beside_the_new_one(trained, demo_source, tmp_path, monkeypatch):
    from brainmri.models import bundle

    out = Path(shutil.copytree(trained("glcm-svm").path, tmp_path / "model"))
    real = bundle.save_steps

    def save_while_the_user_writes(*args, **kwargs):
        (out / "NOTES.md").write_text("written during training")
        return real(*args, **kwargs)

    monkeypatch.setattr(bundle, "save_steps", save_while_the_user_writes)
    with pytest.raises(
        ConfigError,
        match=r"holds NOTES\.md, which the bundle did not write \(it changed during "
        r"training\), so it was not replaced; the new bundle is in .*model-new-",
    ):
        _train(demo_source, out, validate=False)
    assert (out / "NOTES.md").read_text() == "written during training"
    [new] = tmp_path.glob("model-new-*")
    assert load_model(new).manifest["config"]["seed"] == 0 and load_model(out).manifest["config"]["seed"] == 0


def test_a_failed_save_keeps_the_earlier_bundle_and_leaves_nothing_else(
    trained, demo_source, tmp_path, monkeypatch, listing
):
    from brainmri.models import bundle

    def fail(*args, **kwargs):
        raise OSError("disk full")

    out = Path(shutil.copytree(trained("glcm-svm").path, tmp_path / "model"))
    before = listing(tmp_path)
    monkeypatch.setattr(bundle, "save_steps", fail)
    with pytest.raises(OSError, match="disk full"):
        _train(demo_source, out, validate=False)
    assert listing(tmp_path) == before
    assert load_model(out).manifest["config"]["seed"] == 0


def test_empty_input_is_refused(trained):
    with pytest.raises(BrainMRIError, match="at least one image"):
        load_model(trained("glcm-svm").path).predict_proba([])


@pytest.mark.slow
def test_a_deep_method_round_trips_through_safetensors(demo_source, tmp_path):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    fitted = _train(demo_source, tmp_path / "cnn", "ayadi-cnn", params={"size": 32, "epochs": 1, "batch_size": 8})
    manifest = fitted.manifest
    assert sorted(manifest["files"]) == [
        "model.classifier.state.json",
        "model.classifier.weights.safetensors",
        "ood.npz",
    ]
    assert manifest["input_size"] == [32, 32]
    assert manifest["method"]["params"] == {"size": 32, "epochs": 1, "batch_size": 8}
    assert "validation part of the training data (grouped), epoch 1 of 1" in manifest["validation"]["how"]
    assert 0 <= manifest["validation"]["metrics"]["val_accuracy"] <= 1
    loaded = load_model(fitted.path)
    paths = _images(demo_source)
    np.testing.assert_array_equal(loaded.predict_proba(paths), fitted.predict_proba(paths))
    np.testing.assert_array_equal(loaded.predict_with_ood(paths)[1], fitted.predict_with_ood(paths)[1])
    (fitted.path / "model.classifier.weights.safetensors").write_bytes(b"\0" * 10)
    with pytest.raises(DataError, match=r"model.classifier.weights.safetensors: sha256 differs"):
        load_model(fitted.path)


def test_a_bundle_restores_the_nyul_landmarks_learned_in_training(demo_source, tmp_path):
    config = TrainConfig(
        data=str(demo_source),
        method="glcm-svm",
        validate=False,
        preprocess=Preprocess(size=32, harmonise="nyul", keep_aspect=True),
    )
    fitted = train_bundle(config, tmp_path / "model", n_jobs=1)
    learned = fitted.model.steps[0][1].preprocess_.landmarks
    recorded = fitted.manifest["preprocess"]
    assert recorded["harmonise"] == "nyul" and recorded["keep_aspect"] is True
    assert tuple(recorded["landmarks"]) == learned
    assert fitted.manifest["method"]["fitted"]["nyul_landmarks"] == list(learned)
    loaded = load_model(fitted.path)
    assert loaded.model.steps[0][1].preprocess_.landmarks == learned
    paths = _images(demo_source)
    np.testing.assert_array_equal(loaded.predict_proba(paths), fitted.predict_proba(paths))
