"""Intensity harmonisation: z-scores in the head, Nyúl landmarks learned on training items only, N4, aspect."""

from __future__ import annotations

import hashlib
import json
import sys

import numpy as np
import pytest

from brainmri.data.cache import preprocess_key
from brainmri.data.harmonise import PERCENTILES, ZSCORE_RANGE, n4_correct
from brainmri.data.head import head_mask
from brainmri.data.nyul import HistogramStandardizer
from brainmri.data.preprocess import Preprocess, read_preprocessed
from brainmri.data.synthetic import synthetic_slice
from brainmri.errors import ConfigError, DataError
from brainmri.features.extract import ImageFeatures
from brainmri.features.texture import GLCMFeatures


def _slices(n: int, seed: int, size: int = 96) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    classes = ["glioma", "meningioma", "notumor", "pituitary"]
    return [synthetic_slice(classes[k % 4], rng, size=size) for k in range(n)]


def _scanner(image: np.ndarray) -> np.ndarray:
    """Another scanner's export of the same slice: a gamma curve, then another gain and offset."""
    x = (image - image.min()) / (image.max() - image.min())
    return (x**2.2 * 3000 + 40).astype(np.float32)


def test_zscore_gives_mean_0_and_sd_1_inside_the_head_whatever_the_gain():
    image = _slices(1, 0)[0]
    pre = Preprocess(crop=False, size=None, harmonise="zscore")
    out = pre(image)
    z = out * 2 * ZSCORE_RANGE - ZSCORE_RANGE  # undo the documented map of [-3, 3] onto [0, 1]
    inside = z[head_mask(pre.geometry(image))]
    assert abs(inside.mean()) < 0.02 and abs(inside.std() - 1) < 0.03
    np.testing.assert_allclose(pre(image * 7.5 + 100), out, atol=1e-5)  # an affine change of intensity is undone
    assert not np.allclose(Preprocess(crop=False, size=None)(image), out, atol=0.05)


def test_nyul_maps_another_scanners_images_back_to_the_training_distribution():
    train, test = _slices(12, 0), _slices(6, 1)
    base = Preprocess(size=64, crop=False)  # the crop box, which moves under a gamma curve, is not compared here
    landmarks = HistogramStandardizer().fit(read_preprocessed(train, base)).landmarks_
    nyul = Preprocess(size=64, crop=False, harmonise="nyul", landmarks=tuple(landmarks))
    # The same slices from "another scanner": without harmonisation their intensities differ a lot; with it,
    # the other scanner's images land close to how the training scanner's images are standardised.
    plain = np.mean([np.abs(base(_scanner(x)) - base(x)).mean() for x in test])
    harmonised = np.mean([np.abs(nyul(_scanner(x)) - nyul(x)).mean() for x in test])
    assert plain > 0.08
    assert harmonised < 0.03
    # And the histograms of the standardised test images follow the learned landmarks.
    own = np.mean([np.percentile(nyul(_scanner(x))[head_mask(base.geometry(x))], PERCENTILES[1:-1]) for x in test], 0)
    np.testing.assert_allclose(own, landmarks[1:-1], atol=0.05)


def test_the_first_step_learns_landmarks_from_its_training_items_only(tmp_path, monkeypatch):
    train, test = _slices(8, 0, size=64), [_scanner(x) for x in _slices(4, 1, size=64)]
    expected = HistogramStandardizer().fit(read_preprocessed(train, Preprocess(size=32))).landmarks_
    read = []
    import brainmri.data.nyul as harmonise_module

    real = harmonise_module.HistogramStandardizer.fit

    def spy(self, X, y=None):
        read.extend(np.asarray(x).tobytes() for x in X)
        return real(self, X, y)

    monkeypatch.setattr(harmonise_module.HistogramStandardizer, "fit", spy)
    pre = Preprocess(size=32, harmonise="nyul")
    step = ImageFeatures([("glcm", GLCMFeatures(grid=1))], preprocess=pre).fit(train)
    step.transform(test)
    np.testing.assert_array_equal(step.preprocess_.landmarks, expected)
    assert step.params_ == {"nyul_landmarks": list(expected)}
    test_pixels = {x.tobytes() for x in read_preprocessed(test, Preprocess(size=32))}
    assert len(read) == len(train) and not test_pixels & set(read)


def test_a_benchmark_learns_the_landmarks_in_every_fold_and_records_them(demo_source, tmp_path):
    from brainmri.runs.benchmark import run_benchmark
    from brainmri.runs.config import BenchmarkConfig

    config = BenchmarkConfig(
        data=str(demo_source), methods=("glcm-svm",), cv=2, n_boot=10, preprocess=Preprocess(size=32, harmonise="nyul")
    )
    run_benchmark(config, tmp_path / "run", n_jobs=1, cache_dir=tmp_path / "cache")
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["config"]["preprocess"]["harmonise"] == "nyul"
    by_fold = results["methods"]["glcm-svm"]["params"]
    landmarks = [by_fold[f]["nyul_landmarks"] for f in sorted(by_fold)]
    assert len(landmarks) == 2 and landmarks[0] != landmarks[1]  # each fold learns its own
    assert "Nyúl histogram standardisation" in (tmp_path / "run" / "report.html").read_text()


def test_n4_removes_most_of_a_smooth_bias_field():
    rows, cols = np.mgrid[0:96, 0:96] / 95.0
    head = (rows - 0.5) ** 2 + (cols - 0.5) ** 2 < 0.4**2
    texture = 1 + 0.05 * np.sin(rows * 40) * np.cos(cols * 37)
    flat = np.where(head, 100.0 * texture, 2.0)
    biased = (flat * np.exp(1.2 * (rows - 0.5) + 0.8 * (cols - 0.5))).astype(np.float32)

    def spread(image):  # coefficient of variation inside the head
        return float(image[head].std() / image[head].mean())

    corrected = n4_correct(biased, head)
    assert spread(biased) > 0.25
    assert spread(corrected) < 0.5 * spread(biased)
    assert Preprocess(crop=False, size=None, n4=True)(biased).shape == biased.shape


def test_n4_without_simpleitk_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "SimpleITK", None)
    with pytest.raises(ConfigError, match=r"--n4 needs SimpleITK: pip install 'brainmri\[harmonise\]'"):
        Preprocess(size=32, n4=True)(_slices(1, 0)[0])


def test_keep_aspect_pads_the_crop_to_a_square_instead_of_stretching_it():
    image = np.zeros((100, 100), np.float32)
    image[30:50, 10:90] = 1.0  # a head twice as wide as tall (20 x 80 px)
    stretched = Preprocess(size=40, clip_percentiles=None)(image)
    kept = Preprocess(size=40, clip_percentiles=None, keep_aspect=True)(image)
    assert (stretched > 0.5).mean() > 0.75  # the head fills the frame but for the crop margin
    rows = np.flatnonzero((kept > 0.5).any(axis=1))
    cols = np.flatnonzero((kept > 0.5).any(axis=0))
    assert 3.5 < (cols[-1] - cols[0] + 1) / (rows[-1] - rows[0] + 1) < 4.5  # 84 x 24 px with the crop margin


def test_cache_keys_differ_between_options_and_the_default_key_is_that_of_earlier_runs():
    options = [
        Preprocess(),
        Preprocess(harmonise="zscore"),
        Preprocess(harmonise="nyul"),
        Preprocess(n4=True),
        Preprocess(keep_aspect=True),
        Preprocess(harmonise="nyul", landmarks=tuple(np.linspace(0, 1, 11))),
    ]
    keys = [preprocess_key(p) for p in options]
    assert len(set(keys)) == len(keys)
    before = repr(sorted({"crop": True, "size": 224, "clip_percentiles": (0.5, 99.5)}.items()))
    assert keys[0] == "pre-v1-" + hashlib.blake2b(before.encode(), digest_size=6).hexdigest()


def test_preprocess_round_trips_through_its_dict():
    pre = Preprocess(size=64, harmonise="nyul", n4=True, keep_aspect=True, landmarks=tuple(np.linspace(0, 1, 11)))
    assert Preprocess.from_dict(json.loads(json.dumps(pre.to_dict()))) == pre
    assert (
        Preprocess.from_dict({"crop": True, "size": 224, "clip_percentiles": [0.5, 99.5], "version": 1}) == Preprocess()
    )


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"harmonise": "histogram"}, r"--harmonise must be one of none, zscore, nyul, got 'histogram'"),
        (
            {"harmonise": "zscore", "landmarks": tuple(np.linspace(0, 1, 11))},
            "landmarks apply to harmonise 'nyul' only",
        ),
        ({"harmonise": "nyul", "landmarks": (0.0, 0.5, 1.0)}, "Nyúl landmarks must be 11 non-decreasing numbers"),
        ({"harmonise": "nyul", "landmarks": (0.0, *[0.5] * 8, 0.4, 1.0)}, "Nyúl landmarks must be 11 non-decreasing"),
        ({"n4": "yes"}, "preprocess n4 must be true or false, got 'yes'"),
    ],
)
def test_bad_settings_are_one_line_errors(settings, match):
    with pytest.raises(ConfigError, match=match):
        Preprocess(**settings)


def test_nyul_without_landmarks_or_training_images_is_refused():
    with pytest.raises(ConfigError, match="harmonise 'nyul' needs landmarks learned on training images"):
        Preprocess(size=32, harmonise="nyul")(_slices(1, 0)[0])
    with pytest.raises(DataError, match="needs training images to learn its landmarks, got none"):
        ImageFeatures([("glcm", GLCMFeatures())], preprocess=Preprocess(size=32, harmonise="nyul")).fit([])
    with pytest.raises(DataError, match="takes 2D slices, got an array of shape"):
        HistogramStandardizer().fit([np.zeros((2, 3, 4))])


def test_cli_harmonise_options_reach_results_and_a_bad_value_is_refused(demo_source, tmp_path, capsys):
    from brainmri.cli import main

    out = tmp_path / "run"
    assert (
        main(
            [
                "benchmark",
                str(demo_source),
                "--methods",
                "glcm-svm",
                "--cv",
                "2",
                "--n-boot",
                "10",
                "--size",
                "32",
                "--harmonise",
                "zscore",
                "--keep-aspect",
                "--canonical",
                "--out",
                str(out),
                "--no-cache",
                "-q",
            ]
        )
        == 0
    )
    recorded = json.loads((out / "results.json").read_text())["config"]["preprocess"]
    assert recorded == {
        "crop": True,
        "size": 32,
        "clip_percentiles": [0.5, 99.5],
        "harmonise": "zscore",
        "keep_aspect": True,
        "canonical": True,
    }
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main(["train", str(demo_source), "--method", "glcm-svm", "--out", str(tmp_path / "b"), "--harmonise", "hist"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'hist'" in capsys.readouterr().err


def test_the_deep_methods_first_step_learns_and_applies_landmarks_too():
    from brainmri.training.arrays import ImageArrays

    train = _slices(6, 0, size=48)
    step = ImageArrays(size=16, preprocess=Preprocess(harmonise="nyul")).fit(train)
    expected = HistogramStandardizer().fit(ImageArrays(size=16).fit(train).transform(train)).landmarks_
    np.testing.assert_array_equal(step.params_["nyul_landmarks"], expected)
    out = step.transform([_scanner(x) for x in train])
    assert out.shape == (6, 16, 16) and 0 <= out.min() and out.max() <= 1
    np.testing.assert_array_equal(
        out[0], Preprocess(size=16, harmonise="nyul", landmarks=tuple(expected))(_scanner(train[0])).astype(np.float16)
    )


@pytest.mark.parametrize("keep_aspect", [False, True])
def test_a_lesion_mask_follows_its_image_through_crop_padding_and_resize(keep_aspect):
    image = np.zeros((100, 100), np.float32)
    image[30:50, 10:90] = 0.5
    image[35:45, 60:80] = 1.0  # the lesion
    mask = (image == 1.0).astype(np.float32)
    pre = Preprocess(size=40, clip_percentiles=None, keep_aspect=keep_aspect)
    moved = pre.geometry(mask, reference=image) >= 0.5
    np.testing.assert_array_equal(moved, pre(image) > 0.75)
