"""Upload types by content and pixel counts from headers (``brainmri.serve.uploads``)."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest
from PIL import Image

from brainmri.serve.uploads import RequestError, check_upload, pixel_count, sniff


def _pil(array, fmt, **kwargs) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


@pytest.fixture
def samples(tmp_path, write_dicom, write_nifti):
    """Files of every accepted type, 40 x 30 pixels, by the type sniff should name."""
    image = np.arange(1200, dtype=np.uint8).reshape(30, 40)
    return {
        "png": _pil(image, "PNG"),
        "jpeg": _pil(image, "JPEG"),
        "jpeg-progressive": _pil(image, "JPEG", progressive=True, optimize=True),
        "dicom": write_dicom(tmp_path / "a.dcm", image.astype(np.uint16)).read_bytes(),
        "nifti": write_nifti(tmp_path / "a.nii", image.T[:, :, None].astype(np.float32)).read_bytes(),
        "nifti-gz": write_nifti(tmp_path / "a.nii.gz", image.T[:, :, None].astype(np.float32)).read_bytes(),
    }


@pytest.mark.parametrize("kind", ["png", "jpeg", "jpeg-progressive", "dicom", "nifti", "nifti-gz"])
def test_each_type_is_told_by_content_and_its_pixels_by_its_header(kind, samples):
    data = samples[kind]
    assert sniff(data) == kind.removesuffix("-progressive")
    assert pixel_count(data, sniff(data)) == 1200


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"GIF89a" + bytes(20),
        b"BM" + bytes(60),
        b"II*\x00" + bytes(20),
        b"%PDF-1.7",
        bytes(400),
        gzip.compress(b"not a nifti header" * 40, mtime=0),
        b"\x1f\x8b broken gzip",
    ],
    ids=["empty", "gif", "bmp", "tiff", "pdf", "zeros", "gzip-not-nifti", "broken-gzip"],
)  # stable ids: xdist workers
# must collect the same names (gzip's header holds a time stamp unless mtime is given)
def test_other_content_is_no_upload_type(data):
    assert sniff(data) is None


def test_a_dicom_without_its_preamble_is_not_taken(samples):
    assert sniff(samples["dicom"][128:]) is None


def test_a_jpeg_declaring_a_huge_frame_is_refused_before_decoding(samples):
    data = bytearray(samples["jpeg"])
    sof = data.index(b"\xff\xc0")
    data[sof + 5 : sof + 9] = (30000).to_bytes(2, "big") + (30000).to_bytes(2, "big")
    with pytest.raises(
        RequestError, match=r"files\[0\]: jpeg image of 900,000,000 pixels, above the limit of 1,000"
    ) as info:
        check_upload("files[0]", "x.jpg", bytes(data), max_pixels=1000)
    assert info.value.status == 413


def test_a_dicom_declaring_many_frames_counts_them(tmp_path, write_dicom):
    data = write_dicom(tmp_path / "m.dcm", np.zeros((5, 30, 40), np.uint16)).read_bytes()
    assert pixel_count(data, "dicom") == 6000
    with pytest.raises(RequestError, match="dicom image of 6,000 pixels"):
        check_upload("files[0]", None, data, max_pixels=5999)
