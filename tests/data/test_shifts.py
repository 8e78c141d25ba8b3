import numpy as np
import pytest

from brainmri.data.shifts import SEVERITIES, SHIFTS, check_severities, parse_shifts, shift_image
from brainmri.data.synthetic import synthetic_slice
from brainmri.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def slice_8bit():
    """A synthetic 96 x 96 slice on the 0-255 scale of an 8-bit file."""
    return np.round(synthetic_slice("glioma", np.random.default_rng(3), size=96) * 255).astype(np.float32)


@pytest.mark.parametrize("name", list(SHIFTS))
def test_each_shift_grows_with_severity_and_keeps_shape_and_range(name, slice_8bit):
    change = []
    for severity in (0, *SEVERITIES):
        out = shift_image(slice_8bit, name, severity, seed=1)
        assert out.shape == slice_8bit.shape and out.dtype == np.float32
        assert slice_8bit.min() <= out.min() and out.max() <= slice_8bit.max()
        change.append(float(np.abs(out - slice_8bit).mean()))
    assert change[0] == 0.0
    assert 0 < change[1] < change[5], change
    # Milder to harsher: the change grows from severity 1 to 3 to 5.
    assert change[1] < change[3] < change[5], change


@pytest.mark.parametrize("name", list(SHIFTS))
def test_a_shift_is_the_same_for_the_same_seed(name, slice_8bit):
    first = shift_image(slice_8bit, name, 4, seed=7)
    np.testing.assert_array_equal(first, shift_image(slice_8bit, name, 4, seed=7))


@pytest.mark.parametrize("name", ["rician-noise", "bias-field", "motion"])
def test_random_shifts_change_with_the_seed(name, slice_8bit):
    assert not np.array_equal(shift_image(slice_8bit, name, 4, seed=1), shift_image(slice_8bit, name, 4, seed=2))


def test_noise_differs_between_images_under_one_seed(slice_8bit):
    other = slice_8bit.copy()
    other[0, 0] += 1
    noise = shift_image(slice_8bit, "rician-noise", 3) - slice_8bit
    assert not np.allclose(noise[10:], (shift_image(other, "rician-noise", 3) - other)[10:])


def test_bit_depth_keeps_the_number_of_levels_it_names():
    ramp = np.linspace(0, 65535, 4096, dtype=np.float32).reshape(64, 64)
    assert len(np.unique(shift_image(ramp, "bit-depth", 5))) == 4  # 2 bits


def test_background_inversion_whitens_the_air_and_keeps_the_head(slice_8bit):
    out = shift_image(slice_8bit, "background-inversion", 5)
    low, high = slice_8bit.min(), slice_8bit.max()
    corners = (slice(0, 4), slice(0, 4))
    np.testing.assert_allclose(out[corners], high - (slice_8bit[corners] - low), rtol=1e-5)
    centre = (slice(40, 56), slice(40, 56))
    np.testing.assert_allclose(out[centre], slice_8bit[centre], rtol=1e-5)


@pytest.mark.parametrize(
    "text, expected",
    [("all", tuple(SHIFTS)), ("blur,jpeg", ("blur", "jpeg")), (" blur , blur ", ("blur",)), ("", ())],
)
def test_parse_shifts(text, expected):
    assert parse_shifts(text) == expected


def test_unknown_shift_name_is_one_line_listing_the_valid_names():
    with pytest.raises(ConfigError, match=r"--shift: unknown shift 'fog'; choose among all, gamma, window") as info:
        parse_shifts("blur,fog")
    assert "\n" not in str(info.value) and all(name in str(info.value) for name in SHIFTS)


@pytest.mark.parametrize("bad", [[], [0], [6], [1, 1], [2.5], [True]])
def test_bad_severities_are_refused(bad):
    with pytest.raises(ConfigError, match="--shift-severities must be distinct integers from 1 to 5"):
        check_severities(bad)


@pytest.mark.parametrize(
    "image, name, severity, error, match",
    [
        (np.zeros((2, 8, 8)), "blur", 1, DataError, "needs a 2D slice"),
        (np.zeros((8, 8)), "blur", 6, ConfigError, "severity must be an integer from 0 to 5"),
        (np.zeros((8, 8)), "snow", 1, ConfigError, "unknown shift 'snow'"),
    ],
)
def test_bad_calls_are_refused(image, name, severity, error, match):
    with pytest.raises(error, match=match):
        shift_image(image, name, severity)


def test_a_constant_image_is_left_alone():
    np.testing.assert_array_equal(shift_image(np.full((8, 8), 3.0), "rician-noise", 5), np.full((8, 8), 3.0))
