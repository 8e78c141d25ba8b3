"""DICOM series as data: a folder of slices read as one volume, listed as one item, checked for what breaks a volume."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from brainmri.data.cache import file_digest
from brainmri.data.dataset import load_dataset
from brainmri.data.io import read_image
from brainmri.errors import DataError

pytest.importorskip("pydicom")


def _volume(shape=(20, 24, 18), seed=0) -> np.ndarray:
    """An asymmetric volume (uint16 values): a flipped or transposed read cannot pass for it."""
    rng = np.random.default_rng(seed)
    volume = rng.integers(0, 1000, size=shape).astype(np.float32)
    volume[2:9, 3:12, 4:10] += 2000  # a bright block off centre
    return volume


# Axial (rows run left, columns back), sagittal and coronal slices, in DICOM's LPS directions.
ORIENTATIONS = {
    "axial": ((1.0, 0.0, 0.0), (0.0, 1.0, 0.0)),
    "sagittal": ((0.0, 1.0, 0.0), (0.0, 0.0, -1.0)),
    "coronal": ((1.0, 0.0, 0.0), (0.0, 0.0, -1.0)),
}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_a_series_reads_as_the_volume_in_ras_order_whatever_the_slice_direction(
    orientation, tmp_path, write_dicom_series, write_nifti
):
    volume = _volume()
    row, column = ORIENTATIONS[orientation]
    uid = write_dicom_series(tmp_path / "scan", volume, row=row, column=column)

    array, meta = read_image(tmp_path / "scan")

    np.testing.assert_array_equal(array, volume)
    nifti, _ = read_image(write_nifti(tmp_path / "scan.nii.gz", volume))
    np.testing.assert_array_equal(array, nifti)  # the same scan from DICOM and from NIfTI: the same array
    assert (meta.format, meta.mode, meta.extra["series"]) == ("dicom", "volume", uid)
    assert meta.spacing == (1.0, 1.0, 1.0)


def test_a_folder_of_series_lists_one_item_per_series_and_a_lone_slice_as_an_image(
    tmp_path, write_dicom_series, write_dicom
):
    data = tmp_path / "data"
    write_dicom_series(data / "tumour" / "sub-01", _volume(seed=1))
    write_dicom_series(data / "tumour" / "sub-02", _volume(seed=2))
    first = write_dicom_series(data / "normal" / "sub-03" / "mixed", _volume(seed=3), seed=1)
    shutil.copytree(data / "normal" / "sub-03" / "mixed", tmp_path / "one")
    second = write_dicom_series(tmp_path / "two", _volume(seed=4), seed=2)
    for file in (tmp_path / "two").iterdir():
        file.rename(data / "normal" / "sub-03" / "mixed" / f"B{file.name}")
    write_dicom(data / "normal" / "lone.dcm", np.arange(32 * 32).reshape(32, 32) % 300)

    dataset = load_dataset(data)

    listed = {dataset.relpath(it): it.label for it in dataset.items}
    assert listed == {
        "normal/lone.dcm": "normal",
        f"normal/sub-03/mixed/{first}": "normal",
        f"normal/sub-03/mixed/{second}": "normal",
        "tumour/sub-01": "tumour",
        "tumour/sub-02": "tumour",
    }
    by_name = {dataset.relpath(it): it.path for it in dataset.items}
    np.testing.assert_array_equal(read_image(by_name[f"normal/sub-03/mixed/{second}"])[0], _volume(seed=4))
    assert read_image(by_name["normal/lone.dcm"])[0].shape == (32, 32)
    with pytest.raises(DataError, match=r"holds 2 DICOM series; name one as .*mixed/<SeriesInstanceUID>"):
        read_image(data / "normal" / "sub-03" / "mixed")


def test_a_series_digest_follows_its_slices(tmp_path, write_dicom_series, write_dicom):
    volume = _volume()
    write_dicom_series(tmp_path / "scan", volume)
    before = file_digest(tmp_path / "scan")
    assert file_digest(tmp_path / "scan") == before

    one = sorted((tmp_path / "scan").iterdir())[0]
    import pydicom

    ds = pydicom.dcmread(one)
    pixels = ds.pixel_array.copy()
    pixels[0, 0] += 1
    ds.PixelData = pixels.tobytes()
    ds.save_as(one)

    assert file_digest(tmp_path / "scan") != before


@pytest.mark.parametrize(
    "damage, message",
    [
        ("4d", r"20 slices at 10 positions: a 4D series .*split it into one folder per volume"),
        ("gap", r"unevenly spaced slices \(gaps from 1 to 2 mm\): slices are missing"),
        ("size", r"mixes slices of different sizes 20x24, 32x32"),
        ("geometry", r"slices without ImagePositionPatient/ImageOrientationPatient"),
    ],
)
def test_a_series_that_is_not_one_volume_is_refused_with_the_reason(
    damage, message, tmp_path, write_dicom_series, write_dicom
):
    scan = tmp_path / "scan"
    volume = _volume(shape=(24, 20, 10))
    uid = write_dicom_series(scan, volume, skip=(4,) if damage == "gap" else ())
    if damage == "4d":  # a second echo of every slice, in the same series
        write_dicom_series(tmp_path / "echo2", volume + 1, uid=uid, seed=5)
        for file in (tmp_path / "echo2").iterdir():
            file.rename(scan / f"E2{file.name}")
    elif damage == "size":  # a localiser slice filed in the series
        write_dicom(
            scan / "LOC.dcm",
            np.ones((32, 32)),
            SeriesInstanceUID=uid,
            ImageOrientationPatient=[1.0, 0.0, 0.0, 0.0, 1.0, 0.0],
            ImagePositionPatient=[0.0, 0.0, 30.0],
        )
    elif damage == "geometry":
        write_dicom(scan / "NOPOS.dcm", np.ones((20, 24)), SeriesInstanceUID=uid)

    with pytest.raises(DataError, match=message) as raised:
        read_image(scan)
    assert str(raised.value).startswith(f"{scan}: DICOM series {uid}")
    assert "\n" not in str(raised.value)


def test_a_csv_row_may_name_a_series_and_a_folder_of_several_is_a_problem(tmp_path, write_dicom_series):
    write_dicom_series(tmp_path / "a", _volume(seed=1))
    write_dicom_series(tmp_path / "b", _volume(seed=2), seed=1)
    write_dicom_series(tmp_path / "c", _volume(seed=3), seed=2)
    for file in (tmp_path / "c").iterdir():
        file.rename(tmp_path / "b" / f"C{file.name}")
    (tmp_path / "c").rmdir()
    with open(tmp_path / "list.csv", "w", newline="") as fh:
        csv.writer(fh).writerows([["path", "label"], ["a", "tumour"], ["b", "normal"]])

    dataset = load_dataset(tmp_path / "list.csv")

    assert [dataset.relpath(it) for it in dataset.items] == ["a"]
    assert dataset.problems[0]["path"] == "b"
    assert "listed in list.csv line 3: the folder holds 2 DICOM series" in dataset.problems[0]["reason"]


def test_nothing_is_written_into_the_series_folder(tmp_path, write_dicom_series, listing):
    write_dicom_series(tmp_path / "data" / "tumour" / "sub-01", _volume(seed=1))
    write_dicom_series(tmp_path / "data" / "normal" / "sub-02", _volume(seed=2))
    before = listing(tmp_path / "data")

    dataset = load_dataset(tmp_path / "data")
    for item in dataset.items:
        read_image(item.path)
        file_digest(item.path)

    assert listing(tmp_path / "data") == before
