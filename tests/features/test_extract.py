import shutil

import numpy as np
import pytest

from brainmri.data.cache import FeatureCache
from brainmri.data.preprocess import Preprocess
from brainmri.errors import DataError
from brainmri.features import GLCMFeatures, IntensityFeatures
from brainmri.features import extract as extract_module
from brainmri.features.extract import ImageFeatures, compute_features

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
    c = compute_features(
        paths[:2], [IntensityFeatures(bins=4)], preprocess=Preprocess(size=32, crop=False), cache=cache
    )
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
    from brainmri.models.catalog import get_method

    models = [
        get_method(m).builder(seed=0, n_jobs=1, cache_dir=str(tmp_path), preprocess=PRE)
        for m in ("glcm-svm", "multifeature-rf", "rf")
    ]
    # glcm, intensity, otsu, shape, wavelet: the GLCM shared by all three counts once
    assert precompute_features(models, paths) == 5

    def fail(*args, **kwargs):
        raise AssertionError("features were recomputed after precompute_features")

    monkeypatch.setattr(extract_module, "_extract_chunk", fail)
    for model in models:
        assert model[0].fit(paths).transform(paths).shape[0] == len(paths)


@pytest.mark.parametrize("owner", [IntensityFeatures, Preprocess], ids=lambda cls: cls.__name__)
def test_rows_of_another_code_version_are_never_read(paths, tmp_path, monkeypatch, owner):
    cache = FeatureCache(tmp_path / "f.sqlite")
    computed = []
    real = extract_module._extract_chunk
    monkeypatch.setattr(extract_module, "_extract_chunk", lambda chunk, *a: computed.extend(chunk) or real(chunk, *a))
    first = compute_features(paths, [IntensityFeatures()], preprocess=PRE, cache=cache)
    assert len(computed) == len(paths)
    monkeypatch.setattr(owner, "version", owner.version + 1)
    again = compute_features(paths, [IntensityFeatures()], preprocess=PRE, cache=cache)
    assert len(computed) == 2 * len(paths)  # recomputed, not read from the rows of the old version
    np.testing.assert_array_equal(again, first)
    compute_features(paths, [IntensityFeatures()], preprocess=PRE, cache=cache)
    assert len(computed) == 2 * len(paths)  # the new version's rows are cached in turn


def _truncated(data: bytes) -> list[bytes]:
    """A cache file cut inside its last page and at a page boundary."""
    return [data[: len(data) - 100], data[: len(data) // 2 // 4096 * 4096]]


@pytest.mark.parametrize("damage", ["garbage", "cut inside a page", "cut at a page boundary"])
def test_corrupt_cache_is_moved_aside_and_rebuilt(paths, tmp_path, caplog, damage):
    extractors = [GLCMFeatures(), IntensityFeatures()]
    fresh = compute_features(paths, extractors, preprocess=PRE)
    path = tmp_path / "cache" / "features.sqlite"
    compute_features(paths, extractors, preprocess=PRE, cache=FeatureCache(path))
    good = path.read_bytes()
    assert len(good) > 3 * 4096
    broken = {
        "garbage": b"not a database\n" * 500,
        "cut inside a page": _truncated(good)[0],
        "cut at a page boundary": _truncated(good)[1],
    }[damage]
    path.write_bytes(broken)

    with caplog.at_level("WARNING", logger="brainmri"):
        again = compute_features(paths, extractors, preprocess=PRE, cache=FeatureCache(path))
    np.testing.assert_array_equal(again, fresh)
    (moved,) = tmp_path.joinpath("cache").glob("features.sqlite.corrupt-*")
    assert moved.read_bytes() == broken  # kept for inspection, never deleted
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert f"feature cache {path} is corrupt" in warning and f"moved it to {moved}" in warning
    # the fresh cache works: nothing is recomputed or moved the next time
    caplog.clear()
    with caplog.at_level("WARNING", logger="brainmri"):
        compute_features(paths, extractors, preprocess=PRE, cache=FeatureCache(path))
    assert not caplog.records and len(list(path.parent.iterdir())) == 2


@pytest.mark.parametrize("damage", ["odd-length blobs", "short rows", "NaN values", "text", "text of NaN"])
def test_damaged_entries_of_a_valid_cache_are_computed_again(paths, tmp_path, caplog, damage):
    # Issue 20: a valid SQLite cache whose blobs had the wrong length ("buffer size must be a multiple of element
    # size") or held NaN ended the command with a traceback.
    import sqlite3

    extractors = [IntensityFeatures()]
    fresh = compute_features(paths, extractors, preprocess=PRE)
    path = tmp_path / "features.sqlite"
    compute_features(paths, extractors, preprocess=PRE, cache=FeatureCache(path))
    spoil = {
        "odd-length blobs": "substr(value, 1, length(value) - 3)",
        "short rows": "substr(value, 1, 16)",
        "NaN values": "CAST(x'000000000000f87f' || substr(value, 9) AS BLOB)",
        "text": "'not numbers'",
        "text of NaN": "x'000000000000f87f' || substr(value, 9)",
    }[damage]
    with sqlite3.connect(path) as con:
        con.execute(f"UPDATE features SET value = {spoil}")
    with caplog.at_level("WARNING", logger="brainmri"):
        again = compute_features(paths, extractors, preprocess=PRE, cache=FeatureCache(path))
    np.testing.assert_array_equal(again, fresh)
    (warning,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert (
        f"feature cache {path}: {len(paths)} damaged entries (wrong length, NaN or not numbers); computing them "
        "again" == warning
    )
    caplog.clear()
    with caplog.at_level("WARNING", logger="brainmri"):  # the damaged entries were replaced
        np.testing.assert_array_equal(
            compute_features(paths, extractors, preprocess=PRE, cache=FeatureCache(path)), fresh
        )
    assert not caplog.records


def test_unusable_cache_folder_is_a_one_line_error(paths, tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(
        DataError, match=r"^feature cache .*a_file/features\.sqlite: .*; choose another --cache-dir or use --no-cache$"
    ):
        compute_features(
            paths[:1],
            [IntensityFeatures()],
            preprocess=PRE,
            cache=FeatureCache(tmp_path / "a_file" / "features.sqlite"),
        )


def test_memory_cache_is_shared_by_clones(paths, monkeypatch):
    from sklearn.base import clone

    from brainmri.data.cache import MemoryCache

    step = ImageFeatures([("intensity", IntensityFeatures())], preprocess=PRE, cache_dir=MemoryCache())
    first = step.fit(paths).transform(paths)
    monkeypatch.setattr(extract_module, "_extract_chunk", lambda *a: pytest.fail("features were recomputed"))
    np.testing.assert_array_equal(clone(step).fit(paths).transform(paths), first)
