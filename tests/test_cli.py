"""The command line: exit codes 0/1/2, results on stdout, one-line errors on stderr."""

from __future__ import annotations

import json
import logging
import re
import shutil

import numpy as np
import pytest

from brainmri import __version__
from brainmri.cli import main
from brainmri.data.audit import AUDIT_KEYS
from brainmri.errors import DataError


@pytest.fixture(autouse=True)
def _restore_brainmri_logger():
    """``main`` points the "brainmri" logger at the stderr pytest captured for one
    test; restore it afterwards so later tests neither log to a closed stream
    nor miss records in ``caplog``."""
    log = logging.getLogger("brainmri")
    handlers, level, propagate = log.handlers[:], log.level, log.propagate
    yield
    log.handlers[:] = handlers
    log.setLevel(level)
    log.propagate = propagate


def _error_line(capsys, command: str) -> str:
    """The single line on stderr, checked to be a brainmri error for ``command``."""
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(f"brainmri {command}: error: ")
    return lines[0]


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"brainmri {__version__}"


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["audit"], ["demo-data", "x", "--n", "many"]])
def test_usage_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: brainmri" in capsys.readouterr().err


# ---------------------------------------------------------------- demo-data and demo


def test_demo_data(tmp_path, capsys):
    assert main(["demo-data", str(tmp_path / "d"), "--n", "2", "--size", "32", "--seed", "3", "-q"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"wrote 8 synthetic images (glioma, meningioma, notumor, pituitary) to {tmp_path / 'd'}"
    assert len(list((tmp_path / "d").rglob("*.png"))) == 8


@pytest.mark.parametrize(
    "args, taken, message",
    [
        (["--n", "0"], False, r"--n must be a positive integer \(images per class\), got 0$"),
        (["--size", "0"], False, r"--size must be an integer >= 8 \(pixels\), got 0$"),
        ([], True, r"/d: already exists and is not an empty folder; choose another output folder$"),
    ],
    ids=["n", "size", "taken"],
)
def test_demo_data_errors(tmp_path, capsys, args, taken, message):
    out = tmp_path / "d"
    if taken:
        out.mkdir()
        (out / "mine.txt").write_text("keep")
    assert main(["demo-data", str(out), "-q", *args]) == 2
    line = _error_line(capsys, "demo-data")
    assert re.search(message, line), line
    assert (out / "mine.txt").exists() if taken else not out.exists()


@pytest.mark.slow
def test_demo_runs_the_whole_flow(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n", "8", "-q", "--jobs", "1"]) == 0
    stdout = capsys.readouterr().out
    assert "wrote 32 synthetic images" in stdout and "items: 32  readable: 32" in stdout
    assert json.loads((out / "audit" / "audit.json").read_text())["n_items"] == 32
    results = json.loads((out / "benchmark" / "results.json").read_text())
    assert list(results["methods"]) == ["glcm-svm", "multifeature-rf", "ovo-svm", "rf"]
    assert f"report: {out / 'benchmark' / 'report.html'}" in stdout
    assert (out / "benchmark" / "report.html").exists()
    assert main(["demo", "--out", str(out), "--n", "8", "-q", "--jobs", "1"]) == 0
    assert f"using existing demo data in {out / 'data'}" in capsys.readouterr().out


# ---------------------------------------------------------------- benchmark


def test_benchmark_prints_the_table_and_writes_the_report(demo_data, tmp_path, capsys):
    out = tmp_path / "b"
    argv = ["benchmark", str(demo_data), "--methods", "rf", "--cv", "3", "--out", str(out), "--size", "48",
            "--n-boot", "20", "--cache-dir", str(tmp_path / "cache"), "--jobs", "1"]
    assert main([*argv, "-q"]) == 0
    stdout = capsys.readouterr().out
    assert "protocol: cv, 3 fold(s), grouping: duplicates" in stdout
    assert re.search(r"^rf +\d\.\d{3} \[", stdout, re.M)
    assert (out / "results.json").exists() and (out / "predictions.csv").exists()
    # progress per method and fold goes to stderr
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "[1/1] rf fold0 (1/3): done earlier, reusing" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--methods", "glcm-svm,cnn"], r"unknown method 'cnn'; valid methods: glcm-svm, multifeature-rf, ovo-svm, rf$"),
        (["--label-map", "glioma=tumor"], r"--label-map leaves DATA class\(es\) meningioma, notumor, pituitary unmapped"),
        (["--split", "official"], r"--split official needs train and test folders"),
        (["--drop-test-duplicates"], r"--drop-test-duplicates only applies to --split official or --test-data; k-fold already keeps duplicates on one side$"),
    ],
)
def test_benchmark_errors_are_one_line(demo_data, tmp_path, capsys, extra, message):
    assert main(["benchmark", str(demo_data), "--out", str(tmp_path / "b"), "-q", "--no-cache", *extra]) == 2
    line = _error_line(capsys, "benchmark")
    assert re.search(message, line), line


# ---------------------------------------------------------------- audit


def test_audit_writes_json_and_nothing_into_data(demo_data, tmp_path, capsys, listing):
    before = listing(demo_data)
    assert main(["audit", str(demo_data), "--out", str(tmp_path / "res"), "-q", "--jobs", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "items: 24  readable: 24  unreadable: 0" in captured.out
    assert f"wrote {tmp_path / 'res' / 'audit.json'}" in captured.out
    report = json.loads((tmp_path / "res" / "audit.json").read_text())
    assert set(AUDIT_KEYS) <= set(report)
    assert report["n_items"] == 24 and report["classes"]["notumor"] == 6
    assert listing(demo_data) == before
    assert [p.name for p in (tmp_path / "res").iterdir()] == ["audit.json"]  # no temporary file left


def test_audit_progress_goes_to_stderr(demo_data, capsys):
    assert main(["audit", str(demo_data), "--jobs", "1"]) == 0
    captured = capsys.readouterr()
    assert "reading" in captured.err
    assert "reading" not in captured.out


def test_audit_group_similar(demo_data, tmp_path, capsys):
    assert main(["audit", str(demo_data), "--group-similar", "--out", str(tmp_path), "-q"]) == 0
    assert "look-alike groups (--group-similar): 24, largest 1" in capsys.readouterr().out
    assert json.loads((tmp_path / "audit.json").read_text())["similar_groups"] == {"n_groups": 24, "largest": 1}


def test_audit_reports_leaks(leaky_split, tmp_path, capsys):
    assert main(["audit", str(leaky_split), "--out", str(tmp_path), "-q"]) == 0
    out = capsys.readouterr().out
    assert "cross-split leaks: 2 held-out items duplicate a training item" in out
    leaks = json.loads((tmp_path / "audit.json").read_text())["cross_split_leaks"]
    assert [(x["test_path"], x["train_path"]) for x in leaks] == [
        ("Testing/glioma/copy_of_glioma_0000.png", "Training/glioma/glioma_0000.png"),
        ("Testing/notumor/reencoded_notumor_0001.jpg", "Training/notumor/notumor_0001.png"),
    ]
    assert all(set(x) >= {"test_path", "train_path", "distance"} for x in leaks)


def test_audit_skips_and_reports_bad_files(demo_data, tmp_path, capsys, write_dicom, write_nifti, load_gray, write_pil):
    cut = write_pil(demo_data / "glioma/cut.jpg", load_gray(demo_data / "glioma/glioma_0000.png"))
    cut.write_bytes(cut.read_bytes()[:200])
    write_dicom(demo_data / "glioma/report.dcm", None, pixel_data=False)
    volume = np.ones((4, 4, 4), np.float32)
    volume[1, 1, 1] = np.nan
    write_nifti(demo_data / "notumor/nan.nii.gz", volume)
    (demo_data / "notumor/notes.txt").write_text("n/a")
    (demo_data / "empty").mkdir()
    assert main(["audit", str(demo_data), "--out", str(tmp_path), "-q"]) == 0
    out = capsys.readouterr().out
    assert "items: 28  readable: 24  unreadable: 4" in out
    lines = [line for line in out.splitlines() if line.startswith(("unreadable:", "problem:"))]
    expected = [
        r"unreadable: glioma/cut\.jpg: cannot decode \(.+\); the file is truncated or corrupt, re-export or remove it",
        r"unreadable: glioma/report\.dcm: DICOM file has no pixel data \(a report or structured file\?\); remove it from the dataset",
        r"unreadable: notumor/nan\.nii\.gz: contains NaN or infinite values; fix or remove the file",
        r"unreadable: notumor/notes\.txt: not a supported image type \(\.txt\); use one of \.png, .*, \.nii\.gz or remove the file",
        r"problem: empty: empty class folder; add images or remove the folder",
    ]
    assert len(lines) == len(expected)
    for line, pattern in zip(lines, expected):
        assert re.fullmatch(pattern, line), line
    report = json.loads((tmp_path / "audit.json").read_text())
    assert report["unreadable"][2] == {"path": "notumor/nan.nii.gz", "reason": "contains NaN or infinite values; fix or remove the file"}


def test_audit_exits_1_when_nothing_is_readable(tmp_path, capsys):
    for name in ("a/1.png", "b/2.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("not an image")
    assert main(["audit", str(tmp_path), "-q"]) == 1
    captured = capsys.readouterr()
    assert "unreadable: a/1.png: not a readable PNG image; re-export or remove it" in captured.out
    assert captured.err.strip() == f"ERROR: {tmp_path}: no readable image; see the unreadable list above"


def _missing_folder(tmp_path):
    return tmp_path / "nowhere"


def _csv_without_label(tmp_path):
    (tmp_path / "x.png").touch()
    (tmp_path / "m.csv").write_text("path,diagnosis\nx.png,a\n")
    return tmp_path / "m.csv"


def _csv_with_missing_file(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\nscans/gone.png,a\n")
    return tmp_path / "m.csv"


def _only_empty_class_folders(tmp_path):
    (tmp_path / "data" / "glioma").mkdir(parents=True)
    return tmp_path / "data"


def _an_image_not_a_dataset(tmp_path):
    (tmp_path / "scan.png").write_bytes(b"")
    return tmp_path / "scan.png"


@pytest.mark.parametrize(
    "make, extra, message",
    [
        (_missing_folder, [], r"nowhere: no such file or folder; pass a dataset folder or a CSV manifest$"),
        (_csv_without_label, [], r"m\.csv: CSV manifest lacks column\(s\) label; found \['path', 'diagnosis'\], expected path,label"),
        (_csv_with_missing_file, [], r"m\.csv: no usable images; scans/gone\.png: listed in m\.csv line 2 but the file does not exist; fix the path \(relative to the CSV\)$"),
        (_only_empty_class_folders, [], r"data: no usable images; glioma: empty class folder; add images or remove the folder$"),
        (_an_image_not_a_dataset, [], r"scan\.png: a dataset is a folder of class sub-folders or a \.csv manifest, not a \.png file$"),
        (_missing_folder, ["--hash-radius", "40"], r"hash_radius must be an integer in 0\.\.31 \(bits of a 64-bit hash\), got 40$"),
        (_missing_folder, ["--near-threshold", "2"], r"near_threshold is a correlation and must lie in \[-1, 1\], got 2\.0$"),
    ],
    ids=["missing-folder", "csv-missing-column", "csv-missing-file", "empty-class-folder", "not-a-dataset", "bad-radius", "bad-threshold"],
)
def test_audit_errors_are_one_line_and_exit_2(tmp_path, capsys, make, extra, message):
    source = make(tmp_path)
    assert main(["audit", str(source), "-q", *extra]) == 2
    line = _error_line(capsys, "audit")
    assert re.search(message, line), line
    assert capsys.readouterr().out == ""


def test_debug_shows_the_exception(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        main(["audit", str(tmp_path / "nowhere"), "--debug"])


def test_audit_of_a_csv_manifest(demo_source, tmp_path, capsys):
    data = shutil.copytree(demo_source, tmp_path / "data")
    rows = ["path,label,subject"] + [f"../data/{p.parent.name}/{p.name},{p.parent.name},s{k % 3}" for k, p in enumerate(sorted(data.rglob("*.png")))]
    manifest = tmp_path / "lists" / "m.csv"
    manifest.parent.mkdir()
    manifest.write_text("\n".join(rows) + "\n")
    assert main(["audit", str(manifest), "--out", str(tmp_path / "res"), "-q", "--allow-outside-paths"]) == 0
    out = capsys.readouterr().out
    assert f"dataset: {manifest.parent} (csv)" in out and "subjects: 3" in out
    report = json.loads((tmp_path / "res" / "audit.json").read_text())
    assert report["n_items"] == 24 and report["subjects"] == 3
