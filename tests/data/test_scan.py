"""Reading a whole dataset once: records in item order, unreadable files kept with their reason."""

from __future__ import annotations

import numpy as np

from brainmri.data.dataset import load_dataset
from brainmri.data.fingerprint import fingerprint
from brainmri.data.scan import scan_dataset


def test_scan_records_in_item_order_with_errors(tmp_path, write_pil, write_dicom, write_nifti):
    ramp = np.arange(256).reshape(16, 16) % 200  # any content but a uniform one, which is refused as blank
    write_pil(tmp_path / "a/img.png", ramp.astype(np.uint8))
    write_dicom(tmp_path / "a/slice.dcm", ramp + 100)
    write_nifti(tmp_path / "b/vol.nii.gz", np.repeat(ramp[..., None], 3, axis=2).astype(np.float32))
    (tmp_path / "b/notes.txt").write_text("hello")
    ds = load_dataset(tmp_path)
    calls = []
    records = scan_dataset(ds, n_jobs=1, progress=calls.append)
    assert calls == [4]
    by_name = {it.path.name: rec for it, rec in zip(ds.items, records, strict=True)}
    assert [by_name[n].format for n in ("img.png", "slice.dcm", "vol.nii.gz")] == ["png", "dicom", "nifti"]
    assert by_name["vol.nii.gz"].shape == (16, 16, 3)
    assert by_name["img.png"].fingerprint is not None
    bad = by_name["notes.txt"]
    assert bad.fingerprint is None and bad.format is None
    assert bad.error.startswith(str(tmp_path / "b/notes.txt")) and "not a supported image type" in bad.error


def test_parallel_scan_equals_serial_scan(demo_source):
    ds = load_dataset(demo_source)
    serial = scan_dataset(ds, n_jobs=1)
    calls = []
    parallel = scan_dataset(ds, n_jobs=2, chunk_size=5, progress=calls.append)
    assert calls == [5, 5, 5, 5, 4]
    assert [r.fingerprint.pixel_hash for r in parallel] == [r.fingerprint.pixel_hash for r in serial]
    assert [r.shape for r in parallel] == [(64, 64)] * 24


def test_multiframe_dicom_is_fingerprinted_by_its_middle_frame(tmp_path, write_dicom):
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 4096, (3, 16, 16))
    write_dicom(tmp_path / "a/mf.dcm", frames)
    (record,) = scan_dataset(load_dataset(tmp_path), n_jobs=1)
    assert record.shape == (3, 16, 16)
    np.testing.assert_array_equal(record.fingerprint.thumb, fingerprint(frames[1].astype(np.float32)).thumb)
