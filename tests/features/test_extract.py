import shutil

import numpy as np
import pytest

from brainmri.data.preprocess import Preprocess
from brainmri.features import GLCMFeatures, IntensityFeatures
from brainmri.features import extract as extract_module
from brainmri.features.extract import FeatureCache, ImageFeatures, compute_features

PRE = Preprocess(size=48)


@pytest.fixture
def paths(demo_source):
    return sorted(str(p) for p in demo_source.rglob("*.png"))[:10]


def test_parallel_equals_serial(paths):
    extractors = [GLCMFeatures(grid=2), IntensityFeatures()]
    serial = compute_features(paths, extractors, preprocess=PRE, n_jobs=1, chunk_size=3)
    parallel = compute_features(paths, extractors, preprocess=PRE, n_jobs=2, chunk_size=3)
    np.testing.assert_array_equal(serial, parallel)
    assert serial.shape == (10, GLCMFeatures(grid=2).fit().n_features_out_ + IntensityFeatures().fit().n_features_out_)


def test_cache_serves_second_run_and_copies(paths, tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path / "cache" / "f.sqlite")
    first = compute_features(paths, [IntensityFeatures()], preprocess=PRE, cache=cache)
    copy = tmp_path / "elsewhere.png"
    shutil.copy(paths[0], copy)  # same content, other path: found by content hash

    def fail(*args, **kwargs):
        raise AssertionError("features were recomputed despite the cache")

    monkeypatch.setattr(extract_module, "_extract_chunk", fail)
    second = compute_features(paths + [str(copy)], [IntensityFeatures()], preprocess=PRE, cache=cache)
    np.testing.assert_array_equal(second[:-1], first)
    np.testing.assert_array_equal(second[-1], first[0])


def test_cache_key_includes_parameters_and_preprocessing(paths, tmp_path):
    cache = FeatureCache(tmp_path / "f.sqlite")
    a = compute_features(paths[:2], [IntensityFeatures(bins=4)], preprocess=PRE, cache=cache)
    b = compute_features(paths[:2], [IntensityFeatures(bins=8)], preprocess=PRE, cache=cache)
    c = compute_features(paths[:2], [IntensityFeatures(bins=4)], preprocess=Preprocess(size=32, crop=False), cache=cache)
    assert a.shape[1] + 4 == b.shape[1]
    assert not np.array_equal(a, c)


def test_image_features_transformer_in_a_pipeline(paths):
    from sklearn.base import clone

    step = ImageFeatures([("intensity", IntensityFeatures())], preprocess=PRE)
    out = clone(step).fit(paths).transform(paths)
    assert out.shape == (10, step.fit(paths).n_features_out_)
    assert step.get_feature_names_out()[0] == "intensity_mean"


def test_precompute_fills_the_cache_for_every_method(paths, tmp_path, monkeypatch):
    from brainmri.features.extract import precompute_features
    from brainmri.models.registry import get_method

    models = [get_method(m).builder(seed=0, n_jobs=1, cache_dir=str(tmp_path), preprocess=PRE)
              for m in ("glcm-svm", "multifeature-rf", "rf")]
    # glcm, intensity, otsu, shape, wavelet: the GLCM shared by all three counts once
    assert precompute_features(models, paths) == 5

    def fail(*args, **kwargs):
        raise AssertionError("features were recomputed after precompute_features")

    monkeypatch.setattr(extract_module, "_extract_chunk", fail)
    for model in models:
        assert model[0].fit(paths).transform(paths).shape[0] == len(paths)
