"""Fuzzy C-means segmentation and the wavelet features of the segmented slice (Mohsen et al. 2018)."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from brainmri.data import tissue
from brainmri.data.synthetic import synthetic_slice
from brainmri.data.tissue import fuzzy_cmeans_1d
from brainmri.errors import ConfigError
from brainmri.features import fcm
from brainmri.features.fcm import PALETTE, FCMWaveletFeatures, fcm_segment


def plateaus(levels=(0, 51, 102, 153, 204), size=64) -> np.ndarray:
    """Vertical bands of the given 8-bit levels, left to right, as values in [0, 1]."""
    bands = np.repeat(np.asarray(levels, dtype=np.float64) / 255, -(-size // len(levels)))[:size]
    return np.tile(bands, (size, 1))


def test_histogram_fcm_equals_scikit_fuzzy_on_the_pixels():
    skfuzzy = pytest.importorskip("skfuzzy")
    image = np.rint(synthetic_slice("glioma", np.random.default_rng(0), size=48) * 255) / 255
    values, counts = np.unique(image, return_counts=True)
    start = np.array([0.1, 0.3, 0.5, 0.7, 0.9])
    centres, u, n_iter = fuzzy_cmeans_1d(values, counts, start, m=2.0, error=0.005, max_iter=100)

    pixels = image.reshape(1, -1)
    init = tissue._memberships(np.fmax(np.abs(pixels - start[:, None]), tissue._EPS), 2.0)
    sk_centres, sk_u, _, _, _, sk_iter, _ = skfuzzy.cmeans(pixels, 5, 2.0, 0.005, 100, init=init)

    assert n_iter == sk_iter > 1
    np.testing.assert_allclose(centres, sk_centres.ravel(), rtol=1e-10)
    np.testing.assert_allclose(u[:, np.searchsorted(values, image.ravel())], sk_u, atol=1e-10)


def test_segments_are_numbered_from_dark_to_bright():
    image = plateaus()[:, ::-1]  # brightest band on the left
    labels, centres = fcm_segment(image, n_clusters=5)
    np.testing.assert_allclose(centres, np.array([0, 51, 102, 153, 204]) / 255, atol=1e-6)
    assert np.unique(labels[:, :12]).tolist() == [4] and np.unique(labels[:, -12:]).tolist() == [0]
    assert (np.diff(labels[0]) <= 0).all()  # labels fall with the intensity, left to right


def test_labels_follow_the_centres_whatever_order_fcm_returns_them(monkeypatch):
    def reversed_fcm(values, weights, centres, **kw):
        c, u, n = fuzzy_cmeans_1d(values, weights, centres, **kw)
        return c[::-1], u[::-1], n

    monkeypatch.setattr(tissue, "fuzzy_cmeans_1d", reversed_fcm)
    labels, centres = fcm_segment(plateaus(), n_clusters=5)
    assert (np.diff(centres) > 0).all()
    assert labels[0, 0] == 0 and labels[0, -1] == 4


def test_a_constant_slice_is_one_segment():
    labels, centres = fcm_segment(np.full((16, 16), 0.4), n_clusters=5)
    assert np.unique(labels).tolist() == [0]
    np.testing.assert_allclose(centres, 0.4, atol=0.5 / 255)


def test_features_are_the_haar_approximation_of_the_segmented_slice():
    import pywt

    image = plateaus(size=64)  # 5 exact levels: the segmented slice is the slice itself
    extractor = FCMWaveletFeatures(size=64, level=2).fit()
    (row,) = extractor.transform([image])
    expected = pywt.wavedec2(image, "haar", level=2)[0].ravel()
    assert row.shape == (16 * 16,) == (extractor.n_features_out_,)
    np.testing.assert_allclose(row, expected, atol=1e-6)
    assert extractor.feature_names_[:2] == ["fcm_dwt_cA2_0_0", "fcm_dwt_cA2_0_1"]


def test_default_features_are_the_studys_1024_coefficients_and_repeat_exactly():
    image = synthetic_slice("meningioma", np.random.default_rng(3), size=64)
    extractor = FCMWaveletFeatures().fit()
    first, second = extractor.transform([image, image])
    assert first.shape == (1024,) and np.array_equal(first, second)
    # Each level-3 Haar approximation coefficient is 8 times the mean of an 8 x 8 block of the segmented slice.
    labels, centres = extractor.segment(image)
    blocks = centres[labels].reshape(32, 8, 32, 8).mean(axis=(1, 3))
    np.testing.assert_allclose(first, 8 * blocks.ravel(), atol=1e-9)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"n_clusters": 1}, r"n_clusters must be an integer in 2\.\.8, got 1"),
        ({"m": 1.0}, r"m must be a number > 1, got 1\.0"),
        ({"size": 100}, r"size must be a multiple of 2\*\*level = 8, got 100"),
        ({"wavelet": "db4"}, r"wavelet must have 2 filter taps \(such as 'haar'\).*got 'db4'"),
        ({"wavelet": "nope"}, r"wavelet must be a discrete PyWavelets wavelet.*got 'nope'"),
    ],
)
def test_invalid_settings_are_refused_with_the_fix(params, message):
    with pytest.raises(ConfigError, match=message):
        FCMWaveletFeatures(**params).fit()


def test_illustration_shows_the_slice_beside_its_segments():
    image = synthetic_slice("pituitary", np.random.default_rng(1), size=64)
    caption, picture = FCMWaveletFeatures(size=64).illustrate(image)
    assert "fuzzy C-means" in caption and picture.dtype == np.uint8 and picture.shape == (64, 128, 3)
    np.testing.assert_array_equal(picture[:, :64, 0], np.rint(image * 255))
    labels, _ = fcm_segment(image)
    np.testing.assert_array_equal(picture[:, 64:], PALETTE[labels])
    assert len({tuple(c) for c in picture[:, 64:].reshape(-1, 3)}) == 5


def test_docstring_examples():
    result = doctest.testmod(fcm)
    assert result.attempted > 0 and result.failed == 0
