"""3D volumes: reading (orientation, refusals), preprocessing to a cubic grid, cached arrays, audit and grouped splits."""

from __future__ import annotations

import csv

import nibabel as nib
import numpy as np
import pytest

from brainmri.data.audit import analyse
from brainmri.data.dataset import load_dataset
from brainmri.data.io import read_image, size_and_channels
from brainmri.data.splits import kfold_splits
from brainmri.data.volumes import VolumePreprocess
from brainmri.errors import ConfigError, DataError
from brainmri.training.arrays import VolumeArrays


def _head(shape=(30, 36, 32), box=(slice(6, 20), slice(8, 30), slice(5, 25)), seed=0) -> np.ndarray:
    """A bright textured block (the head) in a dark volume."""
    volume = np.zeros(shape, np.float32)
    volume[box] = 100 + 10 * np.random.default_rng(seed).random(volume[box].shape)
    return volume


def _save(path, volume, affine=None):
    nib.save(nib.Nifti1Image(np.asarray(volume), np.eye(4) if affine is None else affine), path)
    return path


def test_preprocessing_crops_the_head_and_fills_the_cube_in_0_1():
    out = VolumePreprocess(size=16)(_head())
    assert out.shape == (16, 16, 16) and out.dtype == np.float32
    assert out.min() == 0.0 and out.max() == 1.0
    # Cropped to the head (2-voxel margin): the block (blurred by the antialiasing) fills most of the cube, a quarter
    # of it uncropped.
    assert (out > 0.01).mean() > 0.6
    assert (VolumePreprocess(size=16, crop=False)(_head()) > 0.01).mean() < 0.3


@pytest.mark.parametrize(
    "array, message",
    [
        (
            np.ones((20, 20), np.float32),
            r"expected a 3D volume, got an array of shape \(20, 20\); volume methods \(cnn3d\)",
        ),
        (np.zeros((20, 20, 20), np.float32), r"every voxel of the volume is 0"),
    ],
)
def test_preprocessing_refuses_what_is_not_a_volume(array, message):
    with pytest.raises(DataError, match=message):
        VolumePreprocess(size=16)(array)


@pytest.mark.parametrize("size", [4, 16.0, True])
def test_a_bad_grid_size_is_a_config_error(size):
    with pytest.raises(ConfigError, match=r"volume size must be an integer from 8 to 128 \(voxels a side\)"):
        VolumePreprocess(size=size)


def test_volumes_stored_in_another_orientation_are_read_in_ras_order(tmp_path):
    volume = _head()
    ras = read_image(_save(tmp_path / "ras.nii.gz", volume))[0]
    # The same head stored left-right mirrored (LAS: the x axis runs right to left).
    las = read_image(_save(tmp_path / "las.nii.gz", volume[::-1], np.diag([-1.0, 1.0, 1.0, 1.0])))[0]
    np.testing.assert_array_equal(las, ras)


def test_an_all_zero_volume_is_unreadable_with_a_reason(tmp_path):
    path = _save(tmp_path / "empty.nii.gz", np.zeros((8, 8, 8), np.float32))
    with pytest.raises(DataError, match=r"empty\.nii\.gz: every voxel of this volume is 0 .*; re-export or remove it"):
        read_image(path)


def test_a_volume_is_described_by_its_three_sides():
    assert size_and_channels((91, 109, 91), "volume") == ("91x109x91", "1")
    assert size_and_channels((64, 64, 1), "volume") == ("64x64", "1")  # a slice stored as a 3D NIfTI
    assert size_and_channels((64, 64, 3), "RGB") == ("64x64", "3")


def test_volume_arrays_are_cached_by_content_and_settings(tmp_path):
    path = str(_save(tmp_path / "v.nii.gz", _head()))
    cache = tmp_path / "cache"
    first = VolumeArrays(size=12, cache_dir=cache).fit().transform([path])
    assert first.shape == (1, 12, 12, 12) and first.dtype == np.float16
    files = sorted((cache / "arrays").rglob("*.npy"))
    assert len(files) == 1
    np.save(files[0], np.full((12, 12, 12), 0.25, np.float16))  # a second call must read the cache, not decode
    assert float(VolumeArrays(size=12, cache_dir=cache).fit().transform([path]).max()) == 0.25
    assert VolumeArrays(size=10, cache_dir=cache).fit().transform([path]).shape == (1, 10, 10, 10)
    assert len(list((cache / "arrays").rglob("*.npy"))) == 2


def test_a_2d_image_given_to_volume_arrays_names_the_file(tmp_path, write_pil):
    path = write_pil(tmp_path / "slice.png", np.full((20, 20), 128, np.uint8))
    with pytest.raises(DataError, match=r"slice\.png: expected a 3D volume, got an array of shape \(20, 20\)"):
        VolumeArrays(size=12).fit().transform([str(path)])


@pytest.fixture
def subject_manifest(tmp_path):
    """Six subjects with two volumes each (a scan and a rescan), listed in a CSV with a subject column."""
    rows = []
    for s in range(6):
        label = "ad" if s % 2 else "cn"
        for session in range(2):
            volume = _head(seed=10 * s + session)
            name = f"vol/sub{s}-ses{session}.nii.gz"
            (tmp_path / "vol").mkdir(exist_ok=True)
            _save(tmp_path / name, volume)
            rows.append({"path": name, "label": label, "subject": f"sub{s}"})
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["path", "label", "subject"])
        writer.writeheader()
        writer.writerows(rows)
    return manifest


def test_a_volume_manifest_is_audited_and_split_by_subject(subject_manifest):
    analysis = analyse(load_dataset(subject_manifest), n_jobs=1)
    assert len(analysis.dataset) == 12 and all(r.error is None for r in analysis.records)
    assert {r.shape for r in analysis.records} == {(30, 36, 32)}
    splits, how = kfold_splits(analysis, k=3, grouping="auto", seed=0)
    subjects = np.array([it.subject for it in analysis.dataset.items])
    assert how == "subject"
    for split in splits:
        assert not set(subjects[split.train]) & set(subjects[split.test])


def test_the_audit_reports_bad_volumes_and_keeps_the_others(subject_manifest, tmp_path):
    _save(tmp_path / "vol" / "sub0-ses0.nii.gz", np.zeros((30, 36, 32), np.float32))
    _save(tmp_path / "vol" / "sub1-ses0.nii.gz", np.ones((8, 8, 8, 3), np.float32))
    analysis = analyse(load_dataset(subject_manifest), n_jobs=1)
    reasons = " | ".join(p["reason"] for p in analysis.unreadable)
    assert len(analysis.dataset) == 10
    assert "every voxel of this volume is 0" in reasons
    assert "NIfTI of shape (8, 8, 8, 3) is not a 2D slice or 3D volume; split 4D series first" in reasons
