"""Files that hang, exhaust memory or mislead a reader (issue 20): each is skipped or refused with its reason."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

from brainmri.data.audit import analyse
from brainmri.data.dataset import load_dataset
from brainmri.data.io import read_image
from brainmri.errors import DataError


def _unreadable(analysis) -> dict[str, str]:
    return {u["path"]: u["reason"] for u in analysis.unreadable}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("listed_by", ["folder", "csv"])
def test_a_fifo_named_like_an_image_is_skipped_not_waited_on(demo_source, tmp_path, listed_by):
    # Issue 20: opening a FIFO waits for a writer forever, and the first SIGTERM was ignored.
    data = tmp_path / "data"
    for name in ("glioma", "notumor"):
        (data / name).mkdir(parents=True)
        for src in sorted((demo_source / name).glob("*.png"))[:3]:
            (data / name / src.name).write_bytes(src.read_bytes())
    os.mkfifo(data / "glioma" / "pipe.png")
    source = data
    if listed_by == "csv":
        rows = ["path,label"] + [
            f"{p.relative_to(data).as_posix()},{p.parent.name}" for p in sorted(data.rglob("*.png"))
        ]
        (data / "m.csv").write_text("\n".join(rows) + "\n")
        source = data / "m.csv"
    dataset = load_dataset(source)
    reason = "a FIFO (named pipe), not a regular file; skipped, remove it from the dataset"
    if listed_by == "csv":
        assert {p["path"]: p["reason"] for p in dataset.problems}["glioma/pipe.png"].endswith(reason)
    else:
        assert _unreadable(analyse(dataset, n_jobs=1))["glioma/pipe.png"] == reason


def _nifti_header_only(path, shape, dtype=np.uint8):
    """A ``.nii.gz`` whose header declares ``shape`` but that holds 1 KB of voxels: a decompression bomb's shape."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header["vox_offset"] = 352
    raw = header.binaryblock + b"\0" * 4 + bytes(1024)
    path.write_bytes(gzip.compress(raw))
    return path


@pytest.mark.parametrize("shape, what", [((3000, 3000, 1), "pixels"), ((200, 200, 200), "values")])
def test_a_nifti_is_refused_from_its_header_above_the_pixel_limit(tmp_path, shape, what):
    # Issue 20: a 900 KB .nii.gz declaring a 30000 x 30000 slice was decompressed (16 GB, OOM) and audit read a
    # 900-MP slice without a warning: the limit applied to Pillow's formats only.
    path = _nifti_header_only(tmp_path / "bomb.nii.gz", shape)
    count = int(np.prod(shape))
    with pytest.raises(
        DataError,
        match=rf"bomb\.nii\.gz: {'x'.join(map(str, shape))} image has {count:,} {what}, above "
        rf"the limit of 1,000,000 .*raise the limit with --max-pixels {count}$",
    ):
        read_image(path, max_pixels=1_000_000)


def test_a_dicom_is_refused_from_its_header_above_the_pixel_limit(tmp_path, write_dicom):
    path = write_dicom(tmp_path / "big.dcm", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    with pytest.raises(DataError, match=r"big\.dcm: 64x64 image has 4,096 pixels, above the limit of 1,000 "):
        read_image(path, max_pixels=1000)


@pytest.mark.parametrize(
    "array, reason",
    [
        (np.zeros((64, 64)), "blank image: every pixel is 0 (no anatomy); remove it"),
        (np.full((64, 64), 255.0), "blank image: every pixel is 255 (no anatomy); remove it"),
        (np.zeros((16, 16, 16)), "blank image: every voxel is 0 (no anatomy); remove it"),
        (np.ones((1, 1)), "1x1 image is too small to be an MRI slice (a side below 16 px); remove it"),
        (np.arange(200.0)[None, :], "1x200 image is too small to be an MRI slice (a side below 16 px); remove it"),
        (np.eye(16), None),
    ],
    ids=["black", "white", "empty-volume", "1x1", "1x200", "an-image"],
)
def test_what_cannot_be_a_scan(array, reason):
    from brainmri.data.io import degenerate_reason

    assert degenerate_reason(array) == reason


def test_a_blank_image_in_the_data_is_skipped_with_its_reason(demo_source, tmp_path, write_pil, write_nifti):
    # Issue 20: a blank image ended benchmark and train after training (NaN in the OOD fit).
    data = tmp_path / "data"
    for name in ("glioma", "notumor"):
        (data / name).mkdir(parents=True)
        for src in sorted((demo_source / name).glob("*.png"))[:3]:
            (data / name / src.name).write_bytes(src.read_bytes())
    write_pil(data / "glioma" / "black.png", np.zeros((64, 64), np.uint8))
    write_pil(data / "notumor" / "white.png", np.full((64, 64), 255, np.uint8))
    write_nifti(data / "notumor" / "zero-slice.nii.gz", np.zeros((64, 64, 1), np.float32))
    analysis = analyse(load_dataset(data), n_jobs=1)
    reasons = _unreadable(analysis)
    assert reasons["glioma/black.png"] == "blank image: every pixel is 0 (no anatomy); remove it"
    assert reasons["notumor/white.png"] == "blank image: every pixel is 255 (no anatomy); remove it"
    assert reasons["notumor/zero-slice.nii.gz"] == "blank image: every pixel is 0 (no anatomy); remove it"
    assert len(analysis.dataset) == 6


def test_a_csv_row_naming_a_folder_says_it_is_a_folder(tmp_path, write_pil):
    # Issue 20: a folder given where an image path was expected was reported as "does not exist".
    write_pil(tmp_path / "a.png", np.eye(32, dtype=np.uint8) * 200)
    (tmp_path / "scans").mkdir()
    (tmp_path / "m.csv").write_text("path,label\na.png,x\nscans,y\n")
    problems = {p["path"]: p["reason"] for p in load_dataset(tmp_path / "m.csv").problems}
    assert problems["scans"] == "listed in m.csv line 3: a folder, not an image file"
