import numpy as np
import pytest

from brainmri.data.cache import MemoryCache
from brainmri.data.io import read_image
from brainmri.data.preprocess import Preprocess
from brainmri.errors import DataError
from brainmri.training import arrays as arrays_module
from brainmri.training.arrays import ImageArrays


@pytest.fixture
def files(demo_data):
    return sorted(str(p) for p in demo_data.rglob("*.png"))[:6]


def test_paths_become_preprocessed_float16_images(files):
    out = ImageArrays(size=24).fit([]).transform(files)
    assert out.shape == (6, 24, 24) and out.dtype == np.float16
    assert 0.0 <= out.min() and out.max() <= 1.0
    expected = Preprocess(size=24)(read_image(files[0])[0])
    np.testing.assert_allclose(out[0], expected, atol=1e-3)


@pytest.mark.parametrize("cache", ["folder", "memory"])
def test_a_second_read_comes_from_the_cache(files, tmp_path, monkeypatch, cache):
    where = tmp_path / "cache" if cache == "folder" else MemoryCache()
    first = ImageArrays(size=24, cache_dir=where).fit([]).transform(files)

    def no_decoding(paths, preprocess):
        raise AssertionError("decoded again")

    monkeypatch.setattr(arrays_module, "_decode", no_decoding)
    assert np.array_equal(ImageArrays(size=24, cache_dir=where).fit([]).transform(files), first)
    with pytest.raises(AssertionError, match="decoded again"):  # another size is another key
        ImageArrays(size=16, cache_dir=where).fit([]).transform(files)
    if cache == "folder":
        assert len(list((tmp_path / "cache" / "arrays").rglob("*.npy"))) == 6


def test_arrays_and_paths_can_be_mixed(files):
    image = np.random.default_rng(0).random((40, 30))
    out = ImageArrays(size=16, preprocess=Preprocess(crop=False)).fit([]).transform([files[0], image])
    np.testing.assert_allclose(out[1], Preprocess(crop=False, size=16)(image), atol=1e-3)


def test_a_volume_is_refused():
    with pytest.raises(DataError, match=r"item 0: an array of shape \(2, 8, 8\); expected a 2D slice"):
        ImageArrays(size=16).fit([]).transform([np.zeros((2, 8, 8))])
