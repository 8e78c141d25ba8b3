"""Readers: every supported format into float32 with its metadata, and a clear error for each bad file."""

from __future__ import annotations

import numpy as np
import pytest

from brainmri.data.io import image_format, read_image, volume_slices
from brainmri.errors import DataError

GRAY8 = np.array([[0, 10, 20], [100, 200, 255]], dtype=np.uint8)
GRAY16 = np.array([[0, 1000], [40000, 65535]], dtype=np.uint16)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("a.png", "png"),
        ("a.PNG", "png"),
        ("a.jpg", "jpeg"),
        ("a.JPEG", "jpeg"),
        ("a.bmp", "bmp"),
        ("a.tif", "tiff"),
        ("a.tiff", "tiff"),
        ("a.dcm", "dicom"),
        ("a.dicom", "dicom"),
        ("dir/a.nii", "nifti"),
        ("dir/a.nii.gz", "nifti"),
        ("a.gz", None),
        ("notes.txt", None),
        ("no_suffix", None),
    ],
)
def test_image_format_from_suffix(name, expected):
    assert image_format(name) == expected


# ---------------------------------------------------------------- 2D images (Pillow)


@pytest.mark.parametrize(
    "name, array, mode, bit_depth",
    [
        ("g.png", GRAY8, "L", 8),
        ("g.bmp", GRAY8, "L", 8),
        ("g.tif", GRAY8, "L", 8),
        ("g16.png", GRAY16, "I;16", 16),
        ("g16.tif", GRAY16, "I;16", 16),
    ],
)
def test_lossless_gray_images_keep_their_values(tmp_path, write_pil, name, array, mode, bit_depth):
    path = write_pil(tmp_path / name, array)
    image, meta = read_image(path)
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image, array.astype(np.float32))
    assert (meta.mode, meta.bit_depth, meta.original_shape) == (mode, bit_depth, array.shape)
    assert meta.format == image_format(name)
    assert meta.path == str(path)
    assert meta.spacing is None


def test_jpeg_of_a_flat_image_reads_back_its_value(tmp_path, write_pil):
    path = write_pil(tmp_path / "flat.jpg", np.full((16, 16), 100, np.uint8), quality=95)
    image, meta = read_image(path)
    assert image.shape == (16, 16) and image.dtype == np.float32
    np.testing.assert_allclose(image, 100, atol=1)
    assert (meta.format, meta.mode, meta.bit_depth) == ("jpeg", "L", 8)


@pytest.mark.parametrize("name", ["rgb.png", "rgb.bmp", "rgb.tif"])
def test_rgb_holding_gray_is_reduced_to_one_channel(tmp_path, write_pil, name):
    path = write_pil(tmp_path / name, np.stack([GRAY8] * 3, axis=-1))
    image, meta = read_image(path)
    np.testing.assert_array_equal(image, GRAY8.astype(np.float32))
    assert meta.mode == "RGB"
    assert meta.original_shape == (2, 3, 3)


def test_rgb_jpeg_of_gray_content_matches_its_gray_version(tmp_path, write_pil):
    gray = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (32, 1))
    image_rgb, meta = read_image(write_pil(tmp_path / "rgb.jpg", np.stack([gray] * 3, axis=-1), quality=95))
    image_gray, _ = read_image(write_pil(tmp_path / "gray.jpg", gray, quality=95))
    assert meta.mode == "RGB" and image_rgb.shape == (32, 32)
    assert np.abs(image_rgb - image_gray).mean() < 2


def test_gray_with_alpha_keeps_the_gray_channel(tmp_path):
    from PIL import Image

    path = tmp_path / "la.png"
    Image.fromarray(GRAY8).convert("LA").save(path)
    image, meta = read_image(path)
    np.testing.assert_array_equal(image, GRAY8.astype(np.float32))
    assert meta.mode == "LA"


def test_palette_image_reads_intensities_not_indices(tmp_path):
    from PIL import Image

    gray = np.array([[0, 50], [100, 200]], dtype=np.uint8)
    path = tmp_path / "palette.png"
    palette = Image.fromarray(gray).convert("RGB").quantize(4)
    assert np.asarray(palette).max() < 4  # the file stores palette indices
    palette.save(path)
    image, meta = read_image(path)
    np.testing.assert_array_equal(image, gray.astype(np.float32))
    assert meta.mode == "P"


# ---------------------------------------------------------------- DICOM


def test_dicom_applies_rescale_slope_and_intercept(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "a.dcm", [[0, 10], [20, 30]], slope=2, intercept=-5, spacing=(0.5, 0.75))
    image, meta = read_image(path)
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image, [[-5, 15], [35, 55]])
    assert meta.format == "dicom"
    assert meta.mode == "MONOCHROME2"
    assert meta.bit_depth == 12
    assert meta.spacing == (0.5, 0.75)
    assert meta.extra == {"frames": 1}


def test_dicom_monochrome1_is_inverted(tmp_path, write_dicom):
    image, meta = read_image(write_dicom(tmp_path / "m1.dcm", [[0, 10], [20, 30]], photometric="MONOCHROME1"))
    np.testing.assert_array_equal(image, [[30, 20], [10, 0]])
    assert meta.mode == "MONOCHROME1"


def test_multiframe_dicom_is_a_stack_of_slices(tmp_path, write_dicom):
    frames = np.arange(12).reshape(3, 2, 2)
    image, meta = read_image(write_dicom(tmp_path / "mf.dcm", frames))
    assert image.shape == (3, 2, 2)
    assert meta.extra == {"frames": 3}
    slices = volume_slices(image, axis=0)
    assert len(slices) == 3
    for got, expected in zip(slices, frames, strict=True):
        np.testing.assert_array_equal(got, expected)


def test_non_grayscale_dicom_is_refused(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "odd.dcm", [[0, 1], [2, 3]], photometric="PALETTE COLOR")
    with pytest.raises(DataError, match=r"odd\.dcm: DICOM photometric interpretation PALETTE COLOR is not grayscale"):
        read_image(path)


# ---------------------------------------------------------------- NIfTI


@pytest.mark.parametrize("name", ["v.nii", "v.nii.gz"])
def test_nifti_volume_and_spacing(tmp_path, write_nifti, name):
    volume = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    image, meta = read_image(write_nifti(tmp_path / name, volume, zooms=(0.5, 1.0, 2.0)))
    assert image.dtype == np.float32
    np.testing.assert_array_equal(image, volume)
    assert (meta.format, meta.mode, meta.bit_depth, meta.original_shape) == ("nifti", "volume", 32, (2, 3, 4))
    assert meta.spacing == (0.5, 1.0, 2.0)


def test_nifti_single_slice_is_squeezed_to_2d(tmp_path, write_nifti):
    image, meta = read_image(write_nifti(tmp_path / "s.nii.gz", np.ones((3, 4, 1), np.int16)))
    assert image.shape == (3, 4)
    assert meta.original_shape == (3, 4, 1)
    assert meta.bit_depth == 16


@pytest.mark.parametrize(
    "axis, n_slices, slice_shape",
    [(0, 2, (3, 4)), (1, 3, (2, 4)), (2, 4, (2, 3))],
)
def test_volume_slices_along_each_axis(axis, n_slices, slice_shape):
    volume = np.arange(24).reshape(2, 3, 4)
    slices = volume_slices(volume, axis=axis)
    assert len(slices) == n_slices
    assert all(s.shape == slice_shape for s in slices)
    np.testing.assert_array_equal(np.stack(slices, axis=axis), volume)


@pytest.mark.parametrize(
    "array, axis, message",
    [
        (np.zeros((2, 2)), 2, r"expected a 3D volume, got an array of shape \(2, 2\)"),
        (np.zeros((2, 2, 2)), 3, "slice axis must be 0, 1 or 2, got 3"),
        (np.zeros((2, 2, 2)), -1, "slice axis must be 0, 1 or 2, got -1"),
    ],
)
def test_volume_slices_rejects(array, axis, message):
    with pytest.raises(DataError, match=message):
        volume_slices(array, axis=axis)


# ---------------------------------------------------------------- bad files: one clear line each


def _truncated_jpeg(tmp_path, request):
    path = request.getfixturevalue("write_pil")(
        tmp_path / "cut.jpg", np.random.default_rng(0).integers(0, 256, (32, 32), dtype=np.uint8)
    )
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


def _text_as_png(tmp_path, request):
    path = tmp_path / "fake.png"
    path.write_text("not an image")
    return path


def _notes(tmp_path, request):
    path = tmp_path / "notes.txt"
    path.write_text("scan notes")
    return path


def _colour_png(tmp_path, request):
    rgb = np.zeros((8, 8, 3), np.uint8)
    rgb[..., 0] = 255
    return request.getfixturevalue("write_pil")(tmp_path / "colour.png", rgb)


def _text_as_dicom(tmp_path, request):
    path = tmp_path / "fake.dcm"
    path.write_bytes(b"\x00" * 10)
    return path


def _dicom_without_pixels(tmp_path, request):
    return request.getfixturevalue("write_dicom")(tmp_path / "report.dcm", None, pixel_data=False)


def _nifti_with_nan(tmp_path, request):
    volume = np.ones((2, 2, 2), np.float32)
    volume[0, 1, 0] = np.nan
    return request.getfixturevalue("write_nifti")(tmp_path / "nan.nii.gz", volume)


def _nifti_4d(tmp_path, request):
    return request.getfixturevalue("write_nifti")(tmp_path / "series.nii.gz", np.zeros((2, 2, 2, 3), np.float32))


def _truncated_nifti(tmp_path, request):
    path = request.getfixturevalue("write_nifti")(tmp_path / "cut.nii", np.zeros((4, 4, 4), np.float32))
    path.write_bytes(path.read_bytes()[:-20])
    return path


def _missing(tmp_path, request):
    return tmp_path / "missing.png"


BAD_FILES = [
    (
        _truncated_jpeg,
        r"cut\.jpg: cannot decode \(image file is truncated.*\); the file is truncated or corrupt, re-export or remove it",
    ),
    (_text_as_png, r"fake\.png: not a readable PNG image; re-export or remove it"),
    (_notes, r"notes\.txt: not a supported image type \(\.txt\); use one of .*\.png.*\.nii\.gz or remove the file"),
    (
        _colour_png,
        r"colour\.png: RGB image with colour content \(mean channel spread 113\.3\); brainmri expects grayscale MRI",
    ),
    (_text_as_dicom, r"fake\.dcm: not a readable DICOM file \(.*\); re-export or remove it"),
    (_dicom_without_pixels, r"report\.dcm: DICOM file has no pixel data .*; remove it from the dataset"),
    (_nifti_with_nan, r"nan\.nii\.gz: contains NaN or infinite values; fix or remove the file"),
    (
        _nifti_4d,
        r"series\.nii\.gz: NIfTI of shape \(2, 2, 2, 3\) is not a 2D slice or 3D volume; split 4D series first",
    ),
    (_truncated_nifti, r"cut\.nii: not a readable NIfTI file \(.*\); re-export or remove it"),
    (_missing, r"missing\.png: file not found; check the path"),
]


@pytest.mark.parametrize("make, message", BAD_FILES, ids=[make.__name__.strip("_") for make, _ in BAD_FILES])
def test_bad_file_raises_one_line_naming_it(tmp_path, request, make, message):
    path = make(tmp_path, request)
    with pytest.raises(DataError, match=message) as info:
        read_image(path)
    text = str(info.value)
    assert text.startswith(str(path))
    assert "\n" not in text.strip()
