"""The benchmark's feature pass: computed once per run without a cache, code versions recorded and checked."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from brainmri.data.preprocess import Preprocess
from brainmri.errors import ConfigError
from brainmri.features import EXTRACTORS, GLCMFeatures
from brainmri.runs import unit as unit_module
from brainmri.runs.benchmark import run_benchmark
from brainmri.runs.config import BenchmarkConfig

CONFIG = dict(methods=("glcm-svm", "rf"), cv=3, n_boot=20, preprocess=Preprocess(size=48))


def _count_extractions(monkeypatch) -> Counter:
    """Count the images each extractor class computes features of."""
    counts: Counter = Counter()
    for cls in EXTRACTORS:

        def counted(self, image, _real=cls._extract, _name=cls.__name__):
            counts[_name] += 1
            return _real(self, image)

        monkeypatch.setattr(cls, "_extract", counted)
    return counts


@pytest.fixture(scope="module")
def no_cache_run(tmp_path_factory):
    from brainmri.data.synthetic import write_demo_data

    root = tmp_path_factory.mktemp("nocache")
    data = write_demo_data(root / "data", n=6, seed=3, size=64)
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("BRAINMRI_CACHE", str(root / "default-cache"))
        counts = _count_extractions(monkeypatch)
        # Counted here: features of the dataset's images. The report's occlusion maps compute features of occluded
        # copies of a few test images too (tests/explain/test_examples.py).
        monkeypatch.setattr(unit_module, "explain_examples", lambda *args, **kwargs: [])
        config = BenchmarkConfig(data=str(data), **CONFIG)
        results = run_benchmark(config, root / "out", n_jobs=1, cache_dir=None)
    return root, config, results, counts


def test_without_a_cache_each_image_is_computed_once_per_run(no_cache_run):
    root, _, results, counts = no_cache_run
    n_images = results["dataset"]["n_items"]
    assert len(results["methods"]["glcm-svm"]["per_fold"]) == len(results["methods"]["rf"]["per_fold"]) == 3
    # glcm-svm and rf share the GLCM; rf adds intensity, Otsu, shape and wavelet: each runs once per image,
    # not once per method and fold (2 methods x 3 folds x (train + test) before); then once more per method using
    # it, for the inference speed, timed without cache on the test items (all of them here: fewer than 64 per fold)
    users = {"GLCMFeatures": 2}  # glcm-svm and rf; the others rf only
    # The acquisition descriptors of the out-of-distribution score: once per image, shared by the methods and folds.
    assert counts == {
        "AcquisitionDescriptors": n_images,
        **{
            name: n_images * (1 + users.get(name, 1))
            for name in ("GLCMFeatures", "IntensityFeatures", "OtsuFeatures", "ShapeFeatures", "WaveletFeatures")
        },
    }
    assert not list(root.rglob("*.sqlite")) and not (root / "default-cache").exists()


def test_a_finished_run_is_summarised_without_computing_features(no_cache_run, monkeypatch):
    root, config, results, _ = no_cache_run
    counts = _count_extractions(monkeypatch)
    again = run_benchmark(config, root / "out", n_jobs=1, cache_dir=None)
    assert not counts
    assert again["methods"]["rf"]["metrics"] == results["methods"]["rf"]["metrics"]


def test_results_record_the_code_versions(no_cache_run):
    root, _, results, _ = no_cache_run
    on_disk = json.loads((root / "out" / "results.json").read_text())
    assert on_disk["versions"] == results["versions"]
    assert on_disk["versions"]["preprocess"] == Preprocess.version
    assert on_disk["versions"]["extractors"] == {cls.__name__: cls.version for cls in EXTRACTORS}
    assert on_disk["versions"]["brainmri"] == on_disk["brainmri_version"]


def test_a_run_made_by_other_code_versions_is_not_resumed(no_cache_run, monkeypatch):
    root, config, _, _ = no_cache_run
    monkeypatch.setattr(GLCMFeatures, "version", GLCMFeatures.version + 1)
    old, new = GLCMFeatures.version - 1, GLCMFeatures.version
    with pytest.raises(
        ConfigError,
        match=rf"holds a benchmark run with other code versions \(GLCMFeatures {old} -> {new}\); "
        "choose another --out or add --restart$",
    ):
        run_benchmark(config, root / "out", n_jobs=1, cache_dir=None)


def test_a_corrupt_cache_file_does_not_stop_the_benchmark(demo_data, tmp_path, caplog):
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "features.sqlite").write_bytes(b"\x00garbage" * 1000)
    config = BenchmarkConfig(data=str(demo_data), **{**CONFIG, "methods": ("rf",)})
    with caplog.at_level("WARNING", logger="brainmri"):
        results = run_benchmark(config, tmp_path / "out", n_jobs=1, cache_dir=cache)
    assert results["methods"]["rf"]["metrics"]["accuracy"]["value"] > 0
    (moved,) = cache.glob("features.sqlite.corrupt-*")
    assert moved.read_bytes() == b"\x00garbage" * 1000
    assert any(f"moved it to {moved}" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


def test_changes_since_names_what_differs(monkeypatch):
    config = BenchmarkConfig(data="data", **CONFIG)
    record = json.loads(json.dumps(config.run_record()))  # as read back from run.json
    reseeded = BenchmarkConfig(data="data", **CONFIG, seed=1)
    assert reseeded.changes_since(record) == "other arguments"
    monkeypatch.setattr(GLCMFeatures, "version", GLCMFeatures.version + 1)
    moved = f"GLCMFeatures {GLCMFeatures.version - 1} -> {GLCMFeatures.version}"
    assert config.changes_since(record) == f"other code versions ({moved})"
    assert reseeded.changes_since(record) == f"other arguments and other code versions ({moved})"
    del record["versions"]  # a run.json written before versions were recorded
    changes = config.changes_since(record)
    assert changes.startswith("other code versions (") and "GLCMFeatures none -> " in changes
