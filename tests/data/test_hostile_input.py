"""Hostile or careless input: each case is a one-line error or a skip with its reason, never a traceback,
a hang or a silently wrong dataset (issue 6, sections 5 and 8)."""

from __future__ import annotations

import builtins
import logging
import os
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainmri.cli import main
from brainmri.data.audit import analyse
from brainmri.data.dataset import load_dataset
from brainmri.data.io import read_image
from brainmri.data.scan import scan_dataset
from brainmri.errors import ConfigError, DataError
from brainmri.runs.config import BenchmarkConfig
from brainmri.runs.plan import plan_benchmark


@pytest.fixture(autouse=True)
def _restore_brainmri_logger():
    """``main()`` sets up the 'brainmri' logger for a terminal (no propagation); undo it for later tests' caplog."""
    logger = logging.getLogger("brainmri")
    handlers, propagate, level = logger.handlers[:], logger.propagate, logger.level
    yield
    logger.handlers[:] = handlers
    logger.propagate = propagate
    logger.setLevel(level)


def _touch(root: Path, *names: str) -> Path:
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).touch()
    return root


def _copy_demo(demo_source: Path, dest: Path, per_class: dict[str, int], classes=None) -> Path:
    """``dest/<class>/`` holding the first ``per_class[class]`` demo images of each class."""
    for name, n in per_class.items():
        (dest / name).mkdir(parents=True, exist_ok=True)
        for src in sorted((demo_source / (classes or {}).get(name, name)).glob("*.png"))[:n]:
            shutil.copy(src, dest / name / src.name)
    return dest


def _unreadable(analysis) -> dict[str, str]:
    return {u["path"]: u["reason"] for u in analysis.unreadable}


# ---------------------------------------------------------------- directory symlinks

LOOP = r"directory symlink to .*, a folder that contains the link \(a loop\); not followed, remove the link$"
INSIDE = (
    r"directory symlink to b, inside the dataset; not followed, so its images are not listed twice under another class"
)


@pytest.mark.parametrize(
    "links, counts, problems",
    [
        ([("data/a/loop", "data")], {"a": 1, "b": 1}, {"a/loop": LOOP}),
        ([("data/a/loop", "data/a")], {"a": 1, "b": 1}, {"a/loop": LOOP}),
        ([("data/a/loop", "data"), ("data/b/loop", "data")], {"a": 1, "b": 1}, {"a/loop": LOOP, "b/loop": LOOP}),
        ([("data/a/up", ".")], {"a": 1, "b": 1}, {"a/up": LOOP}),
        ([("data/a/other", "data/b")], {"a": 1, "b": 1}, {"a/other": INSIDE}),
        ([("data/a/ext", "ext")], {"a": 2, "b": 1}, {}),
        ([("data/a/ext", "ext"), ("ext/again", "ext")], {"a": 2, "b": 1}, {"a/ext/again": LOOP}),
        ([("data/a/ext", "ext"), ("ext/back", "data")], {"a": 2, "b": 1}, {"a/ext/back": LOOP}),
    ],
    ids=[
        "to-root",
        "to-own-class",
        "two-loops",
        "to-parent-of-root",
        "into-other-class",
        "outside-followed",
        "outside-with-loop",
        "outside-linking-back",
    ],
)
def test_directory_symlinks_are_followed_only_out_of_the_dataset_and_never_in_a_loop(tmp_path, links, counts, problems):
    _touch(tmp_path, "data/a/1.png", "data/b/2.png", "ext/3.png")
    for link, target in links:
        os.symlink(tmp_path / target, tmp_path / link, target_is_directory=True)
    ds = load_dataset(tmp_path / "data")
    assert ds.counts() == {"all": counts}
    assert len({it.path for it in ds.items}) == len(ds)
    assert sorted(p["path"] for p in ds.problems) == sorted(problems)
    for p in ds.problems:
        assert re.search(problems[p["path"]], p["reason"]), p["reason"]


def test_test_class_folder_linked_to_the_training_folder_is_not_listed_twice(tmp_path):
    _touch(tmp_path, "Training/a/1.png", "Training/b/2.png", "Testing/a/3.png")
    os.symlink(tmp_path / "Training/b", tmp_path / "Testing/b", target_is_directory=True)
    ds = load_dataset(tmp_path)
    assert ds.counts() == {"test": {"a": 1}, "train": {"a": 1, "b": 1}}
    assert [p["path"] for p in ds.problems] == ["Testing/b"]
    assert ds.problems[0]["reason"].startswith("directory symlink to Training/b, inside the dataset; not followed")


# ---------------------------------------------------------------- file symlinks that loop or point nowhere

SELF_LOOP = "symlink loop (the link leads back to itself); point it at a real file or remove it"


def test_file_symlink_loop_in_a_folder_dataset_is_unreadable_as_a_loop(demo_source, tmp_path):
    data = _copy_demo(demo_source, tmp_path / "data", {"glioma": 3, "notumor": 3})
    os.symlink("loop.png", data / "glioma/loop.png")
    os.symlink("gone.png", data / "notumor/link.png")
    analysis = analyse(load_dataset(data), n_jobs=1)
    assert _unreadable(analysis) == {
        "glioma/loop.png": SELF_LOOP,
        "notumor/link.png": "broken symlink to gone.png; point it at a real file or remove it",
    }
    assert len(analysis.dataset) == 6


def test_file_symlink_loop_in_a_csv_is_a_problem_not_a_crash(tmp_path):
    _touch(tmp_path, "ok.png")
    os.symlink("loop.png", tmp_path / "loop.png")
    (tmp_path / "m.csv").write_text("path,label\nok.png,a\nloop.png,a\n")
    ds = load_dataset(tmp_path / "m.csv")
    assert [ds.relpath(it) for it in ds.items] == ["ok.png"]
    assert ds.problems == [{"path": "loop.png", "reason": f"listed in m.csv line 3: {SELF_LOOP}"}]


# ---------------------------------------------------------------- decompression bombs and huge images


def _write_blank_png(path: Path, width: int, height: int) -> Path:
    """A black 1-bit PNG of any size, compressed row by row (30000 x 30000 is about 110 KB)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    pixels = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))
    return path


def test_decompression_bomb_is_skipped_with_the_limit_and_how_to_raise_it(demo_source, tmp_path):
    data = _copy_demo(demo_source, tmp_path / "data", {"glioma": 3, "notumor": 3})
    bomb = _write_blank_png(data / "glioma/bomb.png", 30000, 30000)
    assert bomb.stat().st_size < 1_000_000
    analysis = analyse(load_dataset(data), n_jobs=1)
    assert _unreadable(analysis) == {
        "glioma/bomb.png": "30000x30000 image has 900,000,000 pixels, above the limit of 200,000,000 (a decompression "
        "bomb, or a scan larger than expected); remove it, or raise the limit with --max-pixels 900000000"
    }
    assert len(analysis.dataset) == 6


@pytest.mark.parametrize("max_pixels, refused", [(1999, True), (2000, False)])
def test_pixel_limit_is_checked_before_decoding(tmp_path, write_pil, max_pixels, refused):
    path = write_pil(tmp_path / "wide.png", np.zeros((40, 50), np.uint8))
    if refused:
        with pytest.raises(
            DataError, match=r"wide\.png: 50x40 image has 2,000 pixels, above the limit of 1,999 .*--max-pixels 2000$"
        ):
            read_image(path, max_pixels=max_pixels)
    else:
        assert read_image(path, max_pixels=max_pixels)[0].shape == (40, 50)


@pytest.mark.parametrize("max_pixels", [0, -5, 1.5, True])
def test_pixel_limit_must_be_a_positive_integer(tmp_path, write_pil, max_pixels):
    path = write_pil(tmp_path / "x.png", np.zeros((20, 20), np.uint8))
    with pytest.raises(ConfigError, match=r"--max-pixels must be a positive integer \(pixels of one image\), got "):
        read_image(path, max_pixels=max_pixels)


def test_images_above_half_the_limit_are_read_with_a_warning(demo_source, caplog):
    ds = load_dataset(demo_source)
    with caplog.at_level(logging.WARNING, logger="brainmri"):
        records = scan_dataset(ds, n_jobs=1, max_pixels=5000)
    assert all(r.error is None for r in records)
    (message,) = [r.getMessage() for r in caplog.records]
    assert re.fullmatch(
        r"24 image\(s\) have over 2,500 pixels \(half the --max-pixels limit\), the largest .*\.png with "
        r"4,096: each needs at least 0\.0 GB of memory to read as float32; downscale them if that is not intended",
        message,
    )
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="brainmri"):
        scan_dataset(ds, n_jobs=1)
    assert caplog.records == []


def test_cli_max_pixels_reaches_audit_and_benchmark(demo_source, tmp_path, capsys):
    assert main(["audit", str(demo_source), "--max-pixels", "4095", "-q"]) == 1
    assert (
        "unreadable: glioma/glioma_0000.png: 64x64 image has 4,096 pixels, above the limit of 4,095"
        in capsys.readouterr().out
    )
    assert (
        main(["benchmark", str(demo_source), "--out", str(tmp_path / "o"), "--max-pixels", "4095", "-q", "--jobs", "1"])
        == 2
    )
    assert "no readable image" in capsys.readouterr().err
    assert main(["audit", str(demo_source), "--max-pixels", "0", "-q"]) == 2
    assert (
        capsys.readouterr().err.strip()
        == "brainmri audit: error: --max-pixels must be a positive integer (pixels of one image), got 0"
    )


# ---------------------------------------------------------------- permissions, tiny and multi-frame images


def test_unreadable_permission_is_reported_as_such(demo_source, tmp_path, monkeypatch):
    # Tests run as root here, where chmod 000 does not stop reads: simulate the refusal.
    data = _copy_demo(demo_source, tmp_path / "data", {"glioma": 3, "notumor": 3})
    locked = data / "glioma/glioma_0001.png"
    real_open = builtins.open

    def guarded_open(file, *args, **kwargs):
        if isinstance(file, (str, Path)) and Path(file) == locked:
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    analysis = analyse(load_dataset(data), n_jobs=1)
    assert _unreadable(analysis) == {
        "glioma/glioma_0001.png": "permission denied; make the file readable (chmod a+r) or remove it from the dataset"
    }


@pytest.mark.parametrize(
    "shape, refused", [((1, 1), True), ((8, 64), True), ((15, 15), True), ((16, 16), False), ((16, 16, 3), False)]
)
def test_tiny_images_are_skipped_as_unreadable(tmp_path, write_pil, write_nifti, shape, refused):
    content = (np.arange(np.prod(shape)) % 200).reshape(shape)  # not uniform: a blank image is refused for that
    if len(shape) == 3:
        write_nifti(tmp_path / "a/img.nii.gz", content.astype(np.float32))
    else:
        write_pil(tmp_path / "a/img.png", content.astype(np.uint8))
    (record,) = scan_dataset(load_dataset(tmp_path), n_jobs=1)
    if refused:
        size = "x".join(map(str, shape))
        assert (
            record.error
            == f"{tmp_path / 'a/img.png'}: {size} image is too small to be an MRI slice (a side below 16 px); remove it"
        )
    else:
        assert record.error is None


def _frames(n: int = 3) -> list[Image.Image]:
    return [Image.fromarray(np.full((32, 32), 40 * (k + 1), np.uint8)) for k in range(n)]


@pytest.mark.parametrize(
    "name, save, kind",
    [
        ("gif_named.png", {"format": "GIF"}, "GIF"),
        ("animated.png", {"format": "PNG"}, "PNG"),
        ("pages.tif", {"format": "TIFF"}, "TIFF"),
    ],
    ids=["gif-named-png", "apng", "multipage-tiff"],
)
def test_multi_frame_images_are_refused_not_cut_to_their_first_frame(tmp_path, name, save, kind):
    frames = _frames()
    frames[0].save(tmp_path / name, save_all=True, append_images=frames[1:], **save)
    with pytest.raises(
        DataError,
        match=rf"{re.escape(name)}: multi-frame image \(3 frames, {kind}\); only its first frame "
        r"would be read, so export one slice per file$",
    ):
        read_image(tmp_path / name)


# ---------------------------------------------------------------- CSV manifests


@pytest.mark.parametrize("listed", ["../outside/x.png", "ABSOLUTE", "sub/../../outside/x.png"])
def test_csv_path_leaving_the_csv_folder_needs_allow_outside(tmp_path, listed):
    _touch(tmp_path, "outside/x.png", "lists/in.png")
    listed = str(tmp_path / "outside/x.png") if listed == "ABSOLUTE" else listed
    manifest = tmp_path / "lists/m.csv"
    manifest.write_text(f"path,label\nin.png,a\n{listed},b\n")
    ds = load_dataset(manifest)
    assert [it.label for it in ds.items] == ["a"]
    assert ds.problems == [
        {
            "path": listed,
            "reason": "listed in m.csv line 3 but outside the CSV's folder; move the CSV to "
            "a folder above its images, or allow such paths with --allow-outside-paths",
        }
    ]
    allowed = load_dataset(manifest, allow_outside=True)
    assert [it.path for it in allowed.items] == [tmp_path / "lists/in.png", tmp_path / "outside/x.png"]
    assert allowed.problems == []


def test_cli_allow_outside_paths(demo_source, tmp_path, capsys):
    rows = [f"../data/{p.parent.name}/{p.name},{p.parent.name}" for p in sorted(demo_source.rglob("*.png"))]
    shutil.copytree(demo_source, tmp_path / "data")
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists/m.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    assert main(["audit", str(tmp_path / "lists/m.csv"), "-q"]) == 2
    assert re.search(
        r"m\.csv: no usable images; \.\./data/glioma/glioma_0000\.png: listed in m\.csv line 2 but outside "
        r"the CSV's folder; .*--allow-outside-paths \(and 23 more problem\(s\) like it\)$",
        capsys.readouterr().err.strip(),
    )
    assert main(["audit", str(tmp_path / "lists/m.csv"), "-q", "--allow-outside-paths"]) == 0
    assert "items: 24  readable: 24" in capsys.readouterr().out


def test_duplicate_rows_count_once_and_conflicting_rows_are_skipped(tmp_path):
    _touch(tmp_path, "a.png", "b.png", "c.png", "d.png")
    (tmp_path / "m.csv").write_text(
        "path,label,split\n"
        "a.png,x,train\n"
        "a.png,x,train\n"
        "./a.png,x,train\n"
        "b.png,x,train\n"
        "b.png,y,train\n"
        "c.png,y,test\n"
        "d.png,y,train\n"
        "d.png,y,test\n"
    )
    ds = load_dataset(tmp_path / "m.csv")
    assert [(ds.relpath(it), it.label) for it in ds.items] == [("a.png", "x"), ("c.png", "y")]
    assert ds.problems == [
        {
            "path": "b.png",
            "reason": "listed 2 times with conflicting label (line 5: label x; line 6: label y); "
            "all its rows were skipped, keep one row per file",
        },
        {
            "path": "d.png",
            "reason": "listed 2 times with conflicting split (line 8: split train; line 9: split test); "
            "all its rows were skipped, keep one row per file",
        },
        {
            "path": "m.csv",
            "reason": "2 row(s) repeating an earlier row (lines 3, 4) were dropped; each file counts once",
        },
    ]


@pytest.mark.parametrize(
    "splits, problem",
    [
        (
            ["train", "", "test", ""],
            "2 row(s) with a blank split (lines 3, 5): --split official uses them neither for "
            "training nor for testing; fill in train or test",
        ),
        (["", "", "", ""], None),
        (["train", "train", "test", "test"], None),
    ],
    ids=["some-blank", "all-blank", "none-blank"],
)
def test_blank_split_next_to_filled_ones_is_reported(tmp_path, splits, problem):
    names = [f"{k}.png" for k in range(len(splits))]
    _touch(tmp_path, *names)
    (tmp_path / "m.csv").write_text(
        "path,label,split\n" + "".join(f"{n},a,{s}\n" for n, s in zip(names, splits, strict=True))
    )
    ds = load_dataset(tmp_path / "m.csv")
    assert len(ds) == 4
    assert ds.problems == ([{"path": "m.csv", "reason": problem}] if problem else [])


def test_latin1_csv_names_the_file_and_the_conversion(tmp_path):
    (tmp_path / "m.csv").write_bytes("path,label\ncaf\u00e9.png,m\u00e9ningiome\n".encode("latin-1"))
    with pytest.raises(
        DataError,
        match=r"m\.csv: not UTF-8 text \(byte 0xe9 at offset 14; saved as Latin-1 or "
        r"Windows-1252\?\); convert it, e\.g\. iconv -f latin1 -t utf-8 m\.csv > m-utf8\.csv$",
    ):
        load_dataset(tmp_path / "m.csv")


# ---------------------------------------------------------------- layout


@pytest.mark.parametrize(
    "files, example",
    [
        (["scan1.png", "scan2.jpg", "notes.txt"], "scan1.png"),
        (["Training/x.png", "Testing/y.dcm"], "Testing/y.dcm"),
    ],
    ids=["in-data", "in-split-folders"],
)
def test_images_without_class_folders_say_they_sit_one_level_too_high(tmp_path, capsys, files, example):
    _touch(tmp_path / "data", *files)
    message = (
        rf"data: 2 image\(s\) sit one level too high, outside any class sub-folder \(e\.g\. {re.escape(example)}\); "
        r"expected DATA/<class>/<image> \(optionally DATA/Training/<class>/<image>\): move them into one folder per class$"
    )
    with pytest.raises(DataError, match=message):
        load_dataset(tmp_path / "data")
    assert main(["audit", str(tmp_path / "data"), "-q"]) == 2
    assert re.search(message, capsys.readouterr().err.strip())


# ---------------------------------------------------------------- classes the split cannot score


def _official(demo_source: Path, root: Path, train: dict[str, int], test: dict[str, int]) -> Path:
    _copy_demo(demo_source, root / "Training", train)
    # Test images come from the end of each class so they are not copies of training images.
    for name, n in test.items():
        (root / "Testing" / name).mkdir(parents=True)
        for src in sorted((demo_source / name).glob("*.png"))[-n:]:
            shutil.copy(src, root / "Testing" / name / src.name)
    return root


def _plan(data, **kw):
    return plan_benchmark(BenchmarkConfig(data=str(data), methods=("rf",), split="official", n_boot=10, **kw), n_jobs=1)


def test_class_only_in_test_is_refused_before_training(demo_source, tmp_path):
    data = _official(
        demo_source, tmp_path / "d", {"glioma": 4, "notumor": 4}, {"glioma": 2, "notumor": 2, "pituitary": 2}
    )
    with pytest.raises(
        DataError,
        match=r"^official: class\(es\) pituitary have test images but no training images, so no "
        r"model can predict them; add training images of that class, remove its test images, or merge it "
        r"into a trained class with --label-map$",
    ):
        _plan(data)


def test_class_only_in_training_gets_a_note_on_macro_averages(demo_source, tmp_path):
    data = _official(
        demo_source, tmp_path / "d", {"glioma": 4, "notumor": 4, "pituitary": 4}, {"glioma": 2, "notumor": 2}
    )
    notes = _plan(data).protocol["notes"]
    assert (
        "class(es) pituitary have training images but none in the test set, so they cannot be scored: balanced "
        "accuracy averages recall over the 2 tested classes, while macro sensitivity, precision and F1 average over "
        "all 3 classes and count 0 for pituitary; compare methods on balanced accuracy, or add test images of those "
        "classes"
    ) in notes


def test_official_split_notes_items_with_a_blank_split(demo_source, tmp_path):
    data = _copy_demo(demo_source, tmp_path / "d", {"glioma": 6, "notumor": 6})
    rows = []
    for name in ("glioma", "notumor"):
        for k, p in enumerate(sorted((data / name).glob("*.png"))):
            split = "train" if k < 4 else ("test" if k == 4 else "")
            rows.append(f"{name}/{p.name},{name},{split}")
    (data / "m.csv").write_text("path,label,split\n" + "\n".join(rows) + "\n")
    notes = _plan(data / "m.csv").protocol["notes"]
    assert (
        "2 item(s) have a blank split and are used neither for training nor for testing; fill in their split "
        "(train or test) in the CSV" in notes
    )
    assert any(n.startswith("1 problem(s) found while listing") and "2 row(s) with a blank split" in n for n in notes)
