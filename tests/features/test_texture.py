import numpy as np
import pytest
from skimage.feature import graycomatrix, graycoprops

from brainmri.errors import ConfigError
from brainmri.features import GLCMFeatures, LBPFeatures
from brainmri.features.texture import GLCM_PROPERTIES, cooccurrence, glcm_properties, quantize

ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)


@pytest.mark.parametrize(
    "shape, levels, distances", [((9, 7), 4, (1,)), ((40, 33), 8, (1, 2, 5)), ((64, 64), 16, (1, 3))]
)
def test_cooccurrence_matches_scikit_image(shape, levels, distances):
    image = quantize(np.random.default_rng(1).random(shape), levels)
    expected = graycomatrix(image, list(distances), list(ANGLES), levels=levels, symmetric=True)
    ours = cooccurrence(image, levels, distances, ANGLES)[0]  # (d, a, L, L)
    np.testing.assert_array_equal(ours.transpose(2, 3, 0, 1), expected)


@pytest.mark.parametrize(
    "image", [np.random.default_rng(2).random((30, 30)), np.zeros((12, 12)), np.tile(np.linspace(0, 1, 16), (16, 1))]
)
def test_properties_match_scikit_image(image):
    q = quantize(image, 8)
    normed = graycomatrix(q, [1, 2], list(ANGLES), levels=8, symmetric=True, normed=True)
    counts = cooccurrence(q, 8, (1, 2), ANGLES)[0]
    ours = glcm_properties(counts)
    for k, prop in enumerate(GLCM_PROPERTIES):
        np.testing.assert_allclose(ours[k], graycoprops(normed, prop), atol=1e-12, err_msg=prop)


def test_tiles_partition_the_pairs_of_the_whole_image():
    q = quantize(np.random.default_rng(3).random((24, 24)), 4)
    counts = cooccurrence(q, 4, (1,), ANGLES, grid=3)
    assert counts.shape == (10, 1, 4, 4, 4)
    np.testing.assert_array_equal(counts[0], counts[1:].sum(axis=0))


def test_hand_computed_contrast():
    # Two columns 0 | 1: horizontal neighbours differ by one level in every pair.
    image = np.array([[0.0, 1.0], [0.0, 1.0]])
    features = GLCMFeatures(
        distances=(1,), angles=(0.0,), levels=2, properties=("contrast", "homogeneity"), grid=1
    ).fit()
    np.testing.assert_allclose(features.transform([image]), [[1.0, 0.5]])


def test_output_shape_and_names():
    features = GLCMFeatures(grid=2, distances=(1, 3), per_angle=True).fit()
    out = features.transform(np.random.default_rng(0).random((3, 32, 32)))
    assert out.shape == (3, (1 + 4) * 6 * 2 * 4) == (3, features.n_features_out_)
    names = features.get_feature_names_out()
    assert names[0] == "glcm_all_contrast_d1_a0" and names[-1] == "glcm_r1c1_ASM_d3_a3"
    assert len(set(names)) == len(names)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"levels": 1}, r"GLCMFeatures: levels must be an integer in 2\.\.256, got 1"),
        ({"distances": (0,)}, r"distances must be positive integers"),
        ({"properties": ("entropyy",)}, r"properties must be a subset of"),
        ({"grid": 9}, r"grid must be an integer in 1\.\.8, got 9"),
    ],
)
def test_glcm_rejects_bad_parameters(params, message):
    with pytest.raises(ConfigError, match=message):
        GLCMFeatures(**params).fit()


def test_lbp_histogram_is_normalised():
    features = LBPFeatures(points=8, radius=1).fit()
    hist = features.transform([np.random.default_rng(0).random((20, 20))])
    assert hist.shape == (1, 10)
    assert hist.sum() == pytest.approx(1.0)
