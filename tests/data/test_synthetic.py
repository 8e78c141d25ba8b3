"""Synthetic demo data: deterministic per seed, written completely or not at all."""

from __future__ import annotations

import os

import numpy as np
import pytest

from brainmri.data.synthetic import CLASSES, MASKS_FOLDER, synthetic_slice, synthetic_slice_and_mask, write_demo_data
from brainmri.errors import ConfigError, DataError


def _contents(root) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("label", CLASSES)
def test_slice_shape_dtype_range(label):
    image = synthetic_slice(label, np.random.default_rng(0), size=48)
    assert image.shape == (48, 48) and image.dtype == np.float32
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert image[:6, :6].mean() < 0.1 < 0.4 < image[12:36, 12:36].mean()  # dark corner, brain in the middle


def test_slice_is_determined_by_the_generator():
    a = synthetic_slice("glioma", np.random.default_rng([1, 0, 0]), size=32)
    b = synthetic_slice("glioma", np.random.default_rng([1, 0, 0]), size=32)
    c = synthetic_slice("glioma", np.random.default_rng([1, 0, 1]), size=32)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("label", ["glioma", "meningioma", "pituitary"])
def test_the_mask_covers_the_lesion_the_slice_was_given(label):
    """Same image with and without the mask; inside the mask the image differs from its tumour-free anatomy."""
    image, mask = synthetic_slice_and_mask(label, np.random.default_rng([0, 1, 2]), size=96)
    np.testing.assert_array_equal(image, synthetic_slice(label, np.random.default_rng([0, 1, 2]), size=96))
    assert mask.dtype == bool and 0.002 < mask.mean() < 0.2  # a lesion, not the whole head
    outside = image[~mask & (image > 0.3)].mean()  # brain tissue away from the lesion
    assert abs(image[mask].mean() - outside) > 0.1


def test_a_slice_without_tumour_has_an_empty_mask():
    assert not synthetic_slice_and_mask("notumor", np.random.default_rng(0), size=32)[1].any()


def test_masks_are_written_beside_the_classes_but_never_listed_as_images(tmp_path, demo_source):
    from brainmri.data.audit import analyse, audit_report
    from brainmri.data.dataset import load_dataset

    data = write_demo_data(tmp_path / "d", n=3, seed=0, size=64, masks=True)
    masks = sorted(p.relative_to(data / MASKS_FOLDER).as_posix() for p in (data / MASKS_FOLDER).rglob("*.png"))
    assert masks == [f"{c}/{c}_{k:04d}.png" for c in ("glioma", "meningioma", "pituitary") for k in range(3)]
    ds = load_dataset(data)
    assert ds.classes == list(CLASSES) and len(ds) == 12 and ds.ignored == [MASKS_FOLDER]
    assert all(MASKS_FOLDER not in it.path.parts for it in ds.items)
    report = audit_report(analyse(ds, n_jobs=1))
    assert report["n_unreadable"] == 0 and report["classes"] == {c: 3 for c in CLASSES}
    plain = write_demo_data(tmp_path / "plain", n=3, seed=0, size=64)
    assert not (plain / MASKS_FOLDER).exists() and _contents(plain).keys() < _contents(data).keys()


def test_unknown_class():
    with pytest.raises(
        ConfigError, match=r"unknown synthetic class 'astrocytoma'; use one of glioma, meningioma, notumor, pituitary"
    ):
        synthetic_slice("astrocytoma", np.random.default_rng(0))


def test_demo_data_layout(demo_source):
    files = sorted(p.relative_to(demo_source).as_posix() for p in demo_source.rglob("*.png"))
    assert len(files) == 24
    assert files[:2] == ["glioma/glioma_0000.png", "glioma/glioma_0001.png"]
    assert sorted(p.name for p in demo_source.iterdir()) == sorted(CLASSES)


def test_same_seed_same_bytes_different_seed_different_bytes(tmp_path, demo_source):
    again = write_demo_data(tmp_path / "again", n=6, seed=0, size=64)
    other = write_demo_data(tmp_path / "other", n=6, seed=1, size=64)
    reference = _contents(demo_source)
    assert _contents(again) == reference
    other_contents = _contents(other)
    assert other_contents.keys() == reference.keys()
    assert all(other_contents[name] != reference[name] for name in reference)


def test_progress_reports_every_image(tmp_path):
    calls = []
    write_demo_data(tmp_path / "d", n=2, size=16, progress=calls.append)
    assert calls == [1] * 8


def test_writes_into_an_existing_empty_folder(tmp_path):
    (tmp_path / "d").mkdir()
    write_demo_data(tmp_path / "d", n=1, size=16)
    assert len(list((tmp_path / "d").rglob("*.png"))) == 4


@pytest.mark.skipif(os.name != "posix", reason="permission bits are POSIX")
def test_output_honours_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        out = write_demo_data(tmp_path / "d", n=1, size=16)
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o755


def test_failure_leaves_nothing_behind(tmp_path):
    def stop(_):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        write_demo_data(tmp_path / "d", n=2, size=16, progress=stop)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"n": 0}, ConfigError, r"--n must be a positive integer \(images per class\), got 0"),
        ({"n": 2.5}, ConfigError, r"--n must be a positive integer .*got 2\.5"),
        ({"size": 0}, ConfigError, r"--size must be an integer >= 8 \(pixels\), got 0"),
        ({"size": 32.0}, ConfigError, r"--size must be an integer >= 8 \(pixels\), got 32\.0"),
        (
            {"out": "taken"},
            DataError,
            r"taken: already exists and is not an empty folder; choose another output folder",
        ),
        ({"out": "file.txt"}, DataError, r"file\.txt: already exists and is not an empty folder"),
    ],
)
def test_write_demo_data_rejects(tmp_path, kwargs, error, message):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    (tmp_path / "file.txt").write_text("mine")
    kwargs = {"out": "new", "n": 1, "size": 16, **kwargs}
    before = sorted(p.name for p in tmp_path.rglob("*"))
    with pytest.raises(error, match=message):
        write_demo_data(tmp_path / kwargs.pop("out"), **kwargs)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before
