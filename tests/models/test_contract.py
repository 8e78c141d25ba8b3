"""The method contract (:class:`brainmri.models.base.Method`), checked for every registered method.

The methods come from the catalog, so a method added later is checked too, with its own defaults made small by
:data:`SMALL` (fewer epochs, smaller inputs) where it has such settings.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone

from brainmri.data.preprocess import Preprocess
from brainmri.errors import BrainMRIError
from brainmri.models.base import Method
from brainmri.models.bundle import load_model
from brainmri.models.catalog import available_methods
from brainmri.runs.config import TrainConfig
from brainmri.runs.train import train_bundle

#: Settings that make any method small enough for a unit test, applied to those a method has.
SMALL = {
    "epochs": 1,
    "size": 32,
    "width": 4,
    "batch_size": 8,
    "n_estimators": 10,
    "hidden": [16],
    "threads": 1,
    "n_components": 0.9,
    "depths": 1,
}
#: Exceptions: settings whose small value would be invalid for the method (the rules say so, see below).
SMALLER_FOR = {"transfer-features": {"size": 64}, "cnn3d": {"size": 16, "batch_size": 4}}

METHODS = sorted(available_methods())


def _small_params(name: str) -> dict:
    spec = available_methods()[name]
    params = {k: v for k, v in SMALL.items() if k in spec.settings()}
    params.update(SMALLER_FOR.get(name, {}))
    return {k: v for k, v in params.items() if spec.rule(k) is None or spec.rule(k).accepts(v)}


@pytest.fixture(scope="module")
def items(demo_source, volume_source):
    """``items(kind)``: paths, labels and groups of the demo slices or volumes."""

    def get(kind: str):
        root = volume_source if kind == "volumes" else demo_source
        pattern = "*.nii.gz" if kind == "volumes" else "*.png"
        paths = np.array(
            sorted(str(p) for p in root.rglob(pattern) if not any(x.startswith(".") for x in p.relative_to(root).parts))
        )
        labels = np.array([Path(p).parent.name for p in paths])
        return paths, labels, np.arange(len(paths))

    return get


def _build(name: str):
    spec = available_methods()[name]
    return spec.build(seed=0, n_jobs=1, preprocess=Preprocess(size=48), device="cpu", params=_small_params(name))


@pytest.fixture(scope="module")
def fitted(items):
    """``fitted(name)``: the method fitted on the demo data (once per method), its items and probabilities."""
    done = {}

    def get(name: str):
        if name not in done:
            spec = available_methods()[name]
            paths, labels, groups = items(spec.inputs)
            model = _build(name)
            assert model.fit(paths, labels, groups=groups) is model
            done[name] = (model, paths, labels, groups, model.predict_proba(paths))
        return done[name]

    return get


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS)
def test_fit_and_predict_proba_keep_the_contract(fitted, name, one_torch_thread):
    model, paths, labels, _, proba = fitted(name)
    assert isinstance(model, Method)
    assert list(model.classes_) == sorted(set(labels))
    assert proba.shape == (len(paths), len(model.classes_))
    assert np.isfinite(proba).all() and np.allclose(proba.sum(axis=1), 1.0, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS)
def test_the_same_seed_gives_the_same_probabilities(fitted, name, one_torch_thread):
    _, paths, labels, groups, proba = fitted(name)
    again = _build(name).fit(paths, labels, groups=groups).predict_proba(paths)
    np.testing.assert_array_equal(again, proba)


@pytest.mark.parametrize("name", METHODS)
def test_parameters_round_trip_through_clone(name):
    model = _build(name)
    copy = clone(model)
    assert type(copy) is type(model)
    params, copied = model.get_params(deep=False), copy.get_params(deep=False)
    assert params.keys() == copied.keys()
    assert copy.set_params(**copied) is copy


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS)
def test_a_saved_bundle_loads_and_predicts_as_the_method_did(items, tmp_path, name, one_torch_thread):
    spec = available_methods()[name]
    paths, _, _ = items(spec.inputs)
    root = Path(paths[0]).parents[1]
    config = TrainConfig(
        data=str(root),
        method=name,
        params=_small_params(name),
        preprocess=Preprocess(size=48),
        device="cpu",
        validate=False,
    )
    trained = train_bundle(config, tmp_path / "bundle", n_jobs=1)
    loaded = load_model(tmp_path / "bundle", device="cpu")
    np.testing.assert_allclose(loaded.predict_proba(paths), trained.predict_proba(paths), atol=1e-6)
    assert list(loaded.classes_) == list(trained.classes_)


@pytest.mark.slow
@pytest.mark.parametrize("name", METHODS)
def test_an_item_of_the_wrong_kind_is_a_one_line_error(fitted, name, one_torch_thread):
    model = fitted(name)[0]
    volumes = available_methods()[name].inputs == "volumes"
    rng = np.random.default_rng(0)
    wrong = np.empty(1, dtype=object)
    wrong[0] = (rng.random((48, 48)) if volumes else rng.random((16, 16, 16))).astype(np.float32)
    with pytest.raises(BrainMRIError) as refused:
        model.predict_proba(wrong)
    assert "\n" not in str(refused.value)
