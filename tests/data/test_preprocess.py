"""Crop to head, resize, percentile normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from brainmri.data.head import crop_to_head
from brainmri.data.preprocess import Preprocess, normalize_intensity
from brainmri.data.synthetic import synthetic_slice
from brainmri.errors import ConfigError, DataError


def _head(shape=(40, 50), box=(10, 30, 5, 45), value=1.0) -> np.ndarray:
    """Zeros with a bright rectangle rows box[0]:box[1], columns box[2]:box[3]."""
    image = np.zeros(shape, np.float32)
    image[box[0] : box[1], box[2] : box[3]] = value
    return image


@pytest.mark.parametrize(
    "margin, expected_shape",
    [(0, (20, 40)), (2, (24, 44)), (20, (40, 50))],  # a big margin stops at the image border
)
def test_crop_to_head_bounding_box_plus_margin(margin, expected_shape):
    assert crop_to_head(_head(), margin=margin).shape == expected_shape


def test_crop_keeps_the_largest_component_only():
    image = _head()
    image[0:2, 0:2] = 1.0  # a small bright label in the corner, as on scanner exports
    cropped = crop_to_head(image, margin=0)
    assert cropped.shape == (20, 40)
    assert cropped.min() == 1.0


@pytest.mark.parametrize(
    "image",
    [np.full((10, 10), 3.0, np.float32), _head((100, 100), (0, 3, 0, 3))],  # constant; component < 1% of the image
    ids=["constant", "tiny-component"],
)
def test_crop_leaves_image_unchanged_when_no_head_is_found(image):
    assert crop_to_head(image) is image


def test_crop_of_a_synthetic_slice_removes_background():
    image = synthetic_slice("notumor", np.random.default_rng(0), size=128)
    cropped = crop_to_head(image)
    assert cropped.shape[0] < 128 and cropped.shape[1] < 128
    assert cropped.shape[0] > 90 and cropped.shape[1] > 70  # the head fills most of the frame


def test_normalize_min_max():
    out = normalize_intensity(np.array([[0.0, 5.0], [10.0, 20.0]]), None)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [[0.0, 0.25], [0.5, 1.0]])


def test_normalize_clips_to_percentiles():
    image = np.arange(101, dtype=np.float32).reshape(1, 101)  # percentile p of 0..100 is p
    out = normalize_intensity(image, (10, 90))
    np.testing.assert_allclose(out[0, :11], 0.0)
    np.testing.assert_allclose(out[0, 90:], 1.0)
    np.testing.assert_allclose(out[0, 50], 0.5)


def test_normalize_constant_image_is_zero():
    out = normalize_intensity(np.full((3, 3), 7.0), (1, 99))
    assert out.dtype == np.float32 and not out.any()


def test_preprocess_defaults_give_size_square_in_unit_range():
    image = synthetic_slice("glioma", np.random.default_rng(1), size=96) * 4095  # a 12-bit scale
    out = Preprocess(size=32)(image)
    assert out.shape == (32, 32) and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0


def test_preprocess_without_resize_keeps_the_cropped_shape():
    out = Preprocess(size=None, clip_percentiles=None)(_head() * 3 + 1)
    assert out.shape == (24, 44)
    assert out.min() == 0.0 and out.max() == 1.0


def test_preprocess_every_step_off_only_scales():
    image = np.array([[2.0, 4.0], [6.0, 10.0]], np.float32)
    np.testing.assert_array_equal(
        Preprocess(crop=False, size=None, clip_percentiles=None)(image), [[0, 0.25], [0.5, 1]]
    )


def test_preprocess_upsamples_small_crops():
    out = Preprocess(size=64, clip_percentiles=None)(_head())
    assert out.shape == (64, 64)
    assert out.min() >= 0 and out.max() <= 1


def test_preprocess_settings_round_trip():
    settings = Preprocess(crop=False, size=64, clip_percentiles=(1.0, 99.0))
    assert settings.to_dict() == {"crop": False, "size": 64, "clip_percentiles": (1.0, 99.0)}
    assert Preprocess(**settings.to_dict()) == settings


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"size": 4}, r"--size must be an integer from 8 to 1024 \(pixels a side\), got 4"),
        ({"size": 32.0}, r"--size must be an integer from 8 to 1024 \(pixels a side\), got 32\.0"),
        ({"size": 100000}, r"--size must be an integer from 8 to 1024 \(pixels a side\), got 100000"),
        (
            {"clip_percentiles": (99.0, 1.0)},
            r"clip percentiles must satisfy 0 <= low < high <= 100, got \(99\.0, 1\.0\)",
        ),
        ({"clip_percentiles": (-1, 50)}, r"clip percentiles must satisfy 0 <= low < high <= 100"),
        ({"clip_percentiles": (5, 101)}, r"clip percentiles must satisfy 0 <= low < high <= 100"),
    ],
)
def test_preprocess_rejects_bad_settings(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        Preprocess(**kwargs)


def test_preprocess_refuses_volumes():
    with pytest.raises(DataError, match=r"expected a 2D slice, got an array of shape \(2, 8, 8\); 3D volumes need"):
        Preprocess()(np.zeros((2, 8, 8)))


def _jpeg_signature(image: np.ndarray) -> float:
    """Share of near-zero high-frequency DCT coefficients in 8x8 blocks: what a JPEG export leaves behind."""
    from scipy.fft import dctn

    rows, cols = image.shape[0] // 8 * 8, image.shape[1] // 8 * 8
    blocks = image[:rows, :cols].reshape(rows // 8, 8, cols // 8, 8).transpose(0, 2, 1, 3)
    return float(np.mean(np.abs(dctn(blocks, axes=(2, 3), norm="ortho")[..., 4:, 4:]) < 0.5))


def test_canonical_decoding_hides_which_export_a_slice_came_from(tmp_path):
    """One class as PNG, the other as RGB JPEG (quality 95), same anatomy: the export's trace separates them
    perfectly as read, and hardly at all after canonical decoding."""
    from PIL import Image
    from sklearn.metrics import roc_auc_score

    from brainmri.data.io import read_image
    from brainmri.data.preprocess import canonical_decoding

    rng = np.random.default_rng(0)
    raw, canonical = [], []
    for k in range(16):
        gray = Image.fromarray(
            np.round(255 * normalize_intensity(synthetic_slice("notumor", rng), None)).astype(np.uint8)
        )
        path = tmp_path / (f"{k}.png" if k % 2 == 0 else f"{k}.jpg")
        (gray if k % 2 == 0 else gray.convert("RGB")).save(path, quality=95)
        image = read_image(path)[0]
        raw.append(_jpeg_signature(image))
        canonical.append(_jpeg_signature(canonical_decoding(image)))
    exported_as_jpeg = [k % 2 for k in range(16)]
    assert roc_auc_score(exported_as_jpeg, raw) == 1.0
    assert 0.3 <= roc_auc_score(exported_as_jpeg, canonical) <= 0.75


def test_canonical_decoding_gives_one_bit_depth_and_is_recorded():
    from brainmri.data.preprocess import canonical_decoding

    eight = np.round(255 * normalize_intensity(synthetic_slice("glioma", np.random.default_rng(1)), None))
    np.testing.assert_array_equal(canonical_decoding(eight * 257), canonical_decoding(eight))  # a 16-bit copy
    assert not np.array_equal(canonical_decoding(eight), eight)  # quantised again
    assert Preprocess(canonical=True).to_dict()["canonical"] is True
    assert "canonical" not in Preprocess().to_dict()  # earlier cache keys and bundles stay valid
    image = synthetic_slice("glioma", np.random.default_rng(1))
    assert not np.array_equal(Preprocess(canonical=True)(image), Preprocess()(image))
    with pytest.raises(ConfigError, match="preprocess canonical must be true or false, got 'yes'"):
        Preprocess(canonical="yes")
