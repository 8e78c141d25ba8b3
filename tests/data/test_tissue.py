"""Tissue classes of a slice (FCM on its histogram) and the random contrast per tissue."""

from __future__ import annotations

import numpy as np
import pytest

from brainmri.data.tissue import random_tissue_contrast, tissue_centres


def bands(levels=(0.0, 0.2, 0.5, 0.8), size=40) -> np.ndarray:
    """Horizontal bands of the given levels, top to bottom."""
    return np.repeat(np.asarray(levels), size // len(levels))[:, None].repeat(size, axis=1)


def test_the_centres_are_the_levels_of_the_classes_from_dark_to_bright():
    np.testing.assert_allclose(tissue_centres(bands()[::-1], 4), [0.0, 0.2, 0.5, 0.8], atol=1 / 255)


@pytest.mark.parametrize(
    "new, expected",
    [
        ((0.2, 0.5, 0.8), (0.0, 0.2, 0.5, 0.8)),  # the identity
        ((0.9, 0.5, 0.1), (0.0, 0.9, 0.5, 0.1)),  # inverted: the brightest tissue becomes the darkest
        ((0.6, 0.6, 0.3), (0.0, 0.6, 0.6, 0.3)),
    ],
)
def test_each_class_takes_its_new_level_and_the_background_stays(new, expected):
    out = random_tissue_contrast(bands(), np.array(new))
    assert out.dtype == np.float32 and out.shape == (40, 40)
    np.testing.assert_allclose(out[::10, 0], expected, atol=2 / 255)


def test_values_between_the_centres_follow_a_straight_line():
    image = bands()
    image[0, 0] = 0.35  # half way between the tissues of 0.2 and 0.5
    out = random_tissue_contrast(image, np.array([1.0, 0.0, 0.5]))
    assert abs(out[0, 0] - 0.5) < 0.02


def test_a_slice_with_fewer_classes_than_asked_is_left_as_it_is():
    image = bands((0.0, 0.0, 0.6, 0.6))
    np.testing.assert_array_equal(random_tissue_contrast(image, np.array([0.9, 0.1, 0.5])), image.astype(np.float32))


def test_the_examples_in_the_docstrings_hold():
    import doctest

    from brainmri.data import tissue

    result = doctest.testmod(tissue)
    assert result.attempted >= 3 and result.failed == 0
