"""Hostile or careless use of the commands (issue 20): one line and nothing lost, never a traceback, a hang, a
silently wrong answer or a file of the user's overwritten."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from brainmri.cli import main

TRAIN = ["--method", "ovo-svm", "--size", "64", "--no-cache", "--jobs", "1", "-q"]


@pytest.fixture(scope="module")
def model(demo_source, tmp_path_factory) -> Path:
    """An ovo-svm bundle trained on the demo data (module-wide: copy it before changing it)."""
    out = tmp_path_factory.mktemp("hostile") / "model"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["train", str(demo_source), "--out", str(out), *TRAIN, "--no-validation"]) == 0
    return out


def _rows(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def _rehash(bundle: Path, name: str) -> None:
    """Put the sha256 of ``bundle/name`` into the manifest, as a careful tamperer would."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][name] = hashlib.sha256((bundle / name).read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))


# ------------------------------------------------------------------------------------------------ predict


def test_images_that_cannot_be_scans_are_skipped_with_their_reason_never_given_a_class(
    model, demo_source, tmp_path, capsys, write_pil, write_nifti
):
    # Issue 20: a uniform image (black, white, 1x1, 1x200, an all-zero NIfTI slice) got ood_score=nan,
    # unlike_training=false and a confident class.
    odd = tmp_path / "odd"
    write_pil(odd / "black.png", np.zeros((64, 64), np.uint8))
    write_pil(odd / "white.png", np.full((64, 64), 255, np.uint8))
    write_pil(odd / "dot.png", np.full((1, 1), 90, np.uint8))
    write_pil(odd / "line.png", (np.arange(200) % 250).astype(np.uint8)[None, :])
    write_nifti(odd / "zero.nii.gz", np.zeros((64, 64, 1), np.float32))
    good = demo_source / "glioma" / "glioma_0000.png"
    out = tmp_path / "p.json"
    assert main(["predict", str(model), str(good), str(odd), "--out", str(out), "-q"]) == 0
    doc = json.loads(out.read_text())
    assert [p["path"] for p in doc["predictions"]] == [str(good)]
    reasons = {Path(s["path"]).name: s["reason"] for s in doc["skipped"]}
    assert reasons["black.png"].endswith("blank image: every pixel is 0 (no anatomy); remove it")
    assert reasons["white.png"].endswith("blank image: every pixel is 255 (no anatomy); remove it")
    assert reasons["dot.png"].endswith("1x1 image is too small to be an MRI slice (a side below 16 px); remove it")
    assert reasons["line.png"].endswith("1x200 image is too small to be an MRI slice (a side below 16 px); remove it")
    assert reasons["zero.nii.gz"].endswith("blank image: every pixel is 0 (no anatomy); remove it")
    assert all(np.isfinite(p["ood_score"]) for p in doc["predictions"])


@pytest.mark.timeout(60)
def test_a_fifo_on_the_command_line_is_skipped_not_waited_on(model, demo_source, tmp_path, capsys):
    # Issue 20: predict blocked forever on a FIFO named .png.
    os.mkfifo(tmp_path / "pipe.png")
    good = demo_source / "glioma" / "glioma_0000.png"
    assert main(["predict", str(model), str(tmp_path / "pipe.png"), str(good), "-q"]) == 0
    assert [r["path"] for r in _rows(capsys.readouterr().out)] == [str(good)]


def test_predict_has_the_max_pixels_its_message_suggests(model, demo_source, tmp_path, capsys):
    # Issue 20: predict suggested --max-pixels, which it lacked.
    good = demo_source / "glioma" / "glioma_0000.png"
    out = tmp_path / "p.json"
    assert main(["predict", str(model), str(good), "--max-pixels", "1000", "--out", str(out), "-q"]) == 1
    assert main(["predict", str(model), str(good), "--max-pixels", "4096", "--out", str(out), "-q"]) == 0
    assert len(json.loads(out.read_text())["predictions"]) == 1


@pytest.mark.parametrize("suffix", [".csv", ".json"])
def test_predict_out_never_overwrites_a_file_it_did_not_write(model, demo_source, tmp_path, capsys, error_line, suffix):
    # Issue 20: `predict --out sheet.csv` overwrote the user's spreadsheet.
    sheet = tmp_path / f"sheet{suffix}"
    sheet.write_text("my,own\n1,2\n")
    argv = ["predict", str(model), str(demo_source / "glioma"), "--out", str(sheet), "-q"]
    assert main(argv) == 2
    assert re.fullmatch(
        rf"brainmri predict: error: --out .*sheet\{suffix}: exists and brainmri did not write it; "
        "choose another name, or add --force to overwrite it",
        error_line("predict"),
    )
    assert sheet.read_text() == "my,own\n1,2\n"
    assert main([*argv, "--force"]) == 0  # the user says so
    assert main(argv) == 0  # now an earlier brainmri prediction file: replaced without --force
    assert len(_rows(sheet.read_text()) if suffix == ".csv" else json.loads(sheet.read_text())["predictions"]) == 6


@pytest.mark.parametrize("named", ["rf", "glcm-svm", "ayadi-cnn"])
def test_a_manifest_that_names_another_method_is_refused_in_one_line(
    model, demo_source, tmp_path, capsys, error_line, named
):
    # Issue 20: the manifest is not covered by a hash; naming another method gave a traceback (and the server's 5xx).
    copy = Path(shutil.copytree(model, tmp_path / "model"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["method"] = {**manifest["method"], "name": named, "params": {}}
    (copy / "manifest.json").write_text(json.dumps(manifest))
    assert main(["predict", str(copy), str(demo_source / "glioma"), "-q"]) == 2
    line = error_line("predict")
    assert re.search(
        r"holds a CalibratedSVC, but the method the manifest names builds a CalibratedForest there|the saved "
        r"model does not work as method|cannot be read as the state of a deep method",
        line,
    ), line


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0, -1.0, "NaN"])
def test_a_deep_bundle_whose_temperature_is_not_positive_is_refused(
    demo_source, tmp_path, capsys, error_line, temperature
):
    # Issue 20: temperature 0 gave NaN probabilities and exit 0.
    pytest.importorskip("torch")
    out = tmp_path / "cnn"
    settings = "ayadi-cnn.size=32,ayadi-cnn.width=4,ayadi-cnn.epochs=1,ayadi-cnn.batch_size=8,ayadi-cnn.threads=1"
    with contextlib.redirect_stdout(io.StringIO()):
        assert (
            main(
                [
                    "train",
                    str(demo_source),
                    "--method",
                    "ayadi-cnn",
                    "--params",
                    settings,
                    "--size",
                    "32",
                    "--device",
                    "cpu",
                    "--no-validation",
                    "--no-cache",
                    "--jobs",
                    "1",
                    "--out",
                    str(out),
                    "-q",
                ]
            )
            == 0
        )
    state = out / "model.classifier.state.json"
    text = re.sub(r'"temperature": [^,}]+', f'"temperature": {temperature}', state.read_text())
    state.write_text(text)
    _rehash(out, state.name)
    capsys.readouterr()
    assert main(["predict", str(out), str(demo_source / "glioma"), "--device", "cpu", "-q"]) == 2
    assert "is not a positive number, so every probability would be NaN or infinite" in error_line("predict")


# ------------------------------------------------------------------------------------------------ train, benchmark


def _with_blank_images(demo_source: Path, root: Path, write_pil) -> Path:
    data = shutil.copytree(demo_source, root / "data")
    write_pil(data / "glioma" / "black.png", np.zeros((64, 64), np.uint8))
    write_pil(data / "notumor" / "white.png", np.full((64, 64), 255, np.uint8))
    return data


def test_blank_images_in_the_data_are_skipped_and_training_ends(demo_source, tmp_path, capsys, write_pil):
    # Issue 20: a blank image ended train (and benchmark) after training with "Input X contains NaN" (OOD fit).
    data = _with_blank_images(demo_source, tmp_path, write_pil)
    assert main(["train", str(data), "--out", str(tmp_path / "m"), *TRAIN, "--no-validation"]) == 0
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["training_data"]["n_items"] == 24
    assert np.isfinite(manifest["ood"]["threshold"])


def test_blank_images_in_the_data_are_skipped_and_the_benchmark_ends(demo_source, tmp_path, capsys, write_pil):
    data = _with_blank_images(demo_source, tmp_path, write_pil)
    out = tmp_path / "b"
    assert (
        main(
            [
                "benchmark",
                str(data),
                "--methods",
                "glcm-svm",
                "--cv",
                "2",
                "--size",
                "64",
                "--n-boot",
                "20",
                "--no-cache",
                "--jobs",
                "1",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    audit = json.loads((out / "audit.json").read_text())
    assert {u["path"] for u in audit["unreadable"]} == {"glioma/black.png", "notumor/white.png"}


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            ["--cv", "1000"],
            r"--cv 1000: more folds than the 24 items of DATA, so some test folds would be empty; use at "
            r"most --cv 24",
        ),
        (["--size", "100000"], r"--size must be an integer from 8 to 1024 \(pixels a side\), got 100000"),
        (
            ["--params", "ayadi-cnn.size=100000"],
            r"--params ayadi-cnn.size=100000: not a valid value; size must be an "
            r"integer from 8 to 1024$",
        ),
        (
            ["--params", "ayadi-cnn.width=0"],
            r"ayadi-cnn.width=0: not a valid value; width must be an integer from 1 to "
            r"1024$",
        ),
        (
            ["--params", "ayadi-cnn.dropout=2"],
            r"ayadi-cnn.dropout=2: not a valid value; dropout must be a number from 0 "
            r"to less than 1$",
        ),
        (["--params", "glcm-svm.C=-1"], r"glcm-svm.C=-1: not a valid value; C must be a number > 0$"),
        (
            ["--params", "rf.n_estimators=-1"],
            r"rf.n_estimators=-1: not a valid value; n_estimators must be an integer "
            r"from 1 to 100000$",
        ),
        (["--params", "mlp.hidden=0"], r"mlp.hidden=0: not a valid value; hidden must be a list of positive integers$"),
        (
            ["--label-map", "glioma=tumor,glioma=normal"],
            r"--label-map: class 'glioma' is mapped twice \(glioma=tumor and "
            r"glioma=normal\); map each class once$",
        ),
        (
            ["--out", "/proc/brainmri-x"],
            r"--out /proc/brainmri-x: cannot write in /proc \(.+\); choose another folder$",
        ),
    ],
    ids=[
        "cv-1000",
        "size",
        "cnn-size",
        "cnn-width",
        "cnn-dropout",
        "svm-C",
        "rf-trees",
        "mlp-hidden",
        "label-map-twice",
        "out-in-proc",
    ],
)
def test_bad_settings_are_one_line_before_any_image_is_read(
    demo_data, tmp_path, capsys, error_line, monkeypatch, extra, message
):
    # Issue 20: each of these failed after reading (or training), with a traceback or at 20 GB.
    from brainmri.data import audit

    def no_reading(*args, **kwargs):
        raise AssertionError("the images were read before the settings were checked")

    monkeypatch.setattr(audit, "scan_dataset", no_reading)
    methods = next((p.split(".")[0] for p in extra if "." in p and "=" in p and "/" not in p), "glcm-svm")
    argv = ["benchmark", str(demo_data), "--methods", methods, "--out", str(tmp_path / "b"), "-q", *extra]
    if "--out" in extra:
        argv = [a for a in argv if a != str(tmp_path / "b")]
        argv.remove("--out")
    assert main(argv) == 2
    line = error_line("benchmark")
    assert re.search(message, line), line
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize(
    "option, value, says",
    [
        ("--jobs", "0", "0 is not a number of workers; use -1 (every core) or a positive integer"),
        ("--seed", "-1", "-1 is not a seed; use an integer from 0 to 4294967295"),
    ],
)
def test_a_count_or_seed_out_of_range_is_refused_by_the_parser(demo_data, tmp_path, capsys, option, value, says):
    with pytest.raises(SystemExit) as stop:
        main(
            ["audit", str(demo_data), option, value]
            if option == "--jobs"
            else ["benchmark", str(demo_data), "--out", str(tmp_path / "b"), option, value]
        )
    assert stop.value.code == 2
    assert f"argument {option}: {says}" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------ output folders


def test_audit_never_overwrites_a_foreign_audit_json(demo_data, tmp_path, capsys, error_line, listing):
    # Issue 20: one marker file (audit.json) was enough for audit --out to overwrite the folder's files.
    out = tmp_path / "mine"
    out.mkdir()
    (out / "audit.json").write_text('{"my": "audit"}')
    before = listing(out)
    assert main(["audit", str(demo_data), "--out", str(out), "-q"]) == 2
    assert "holds audit.json but no brainmri run.json; brainmri only writes in folders of its own runs" in error_line(
        "audit"
    )
    assert listing(out) == before


def test_audit_writes_its_folder_again(demo_data, tmp_path, capsys):
    for _ in range(2):
        assert main(["audit", str(demo_data), "--out", str(tmp_path / "a"), "-q"]) == 0
    assert json.loads((tmp_path / "a" / "run.json").read_text())["command"] == "audit"


# ------------------------------------------------------------------------------------------------ a full disk


def _complete(folder: Path) -> None:
    """Every file in ``folder`` is whole: no temporary file of an atomic write, every JSON file parses."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    assert not [p for p in files if p.name.endswith((".tmp", ".old"))], files
    for path in files:
        if path.suffix == ".json":
            json.loads(path.read_text())


@pytest.mark.system
def test_a_full_disk_is_one_line_leaves_no_half_written_file_and_the_rerun_resumes(
    demo_source, tmp_path, capsys, error_line, tmpfs
):
    # Issue 20: ENOSPC was a traceback from files.py, and left a partial run.json, audit.json or units/.
    disk = tmpfs("disk", size="120k")
    out = disk / "b"
    argv = [
        "benchmark",
        str(demo_source),
        "--methods",
        "glcm-svm",
        "--cv",
        "2",
        "--size",
        "64",
        "--n-boot",
        "20",
        "--no-cache",
        "--jobs",
        "1",
        "--out",
        str(out),
        "-q",
    ]
    assert main(argv) == 1
    line = error_line("benchmark")
    assert re.fullmatch(
        r"brainmri benchmark: error: .*: No space left on device \(files written completely so far are "
        r"kept, no half-written file is left\); free some space, or choose an output folder on another "
        r"disk; then rerun the same command to resume from the finished units",
        line,
    ), line
    _complete(disk)
    done = sorted(p.name for p in (out / "units" / "glcm-svm").glob("*.json"))
    tmpfs.resize(disk, "50m")
    assert main([*argv[:-1], "-v"]) == 0
    err = capsys.readouterr().err
    assert all(f"glcm-svm {name[:-5]} " in err and "done earlier, reusing" in err for name in done)
    assert (out / "report.html").exists()
    _complete(disk)


@pytest.mark.system
def test_a_full_disk_while_saving_a_bundle_is_one_line_and_leaves_nothing(
    demo_source, tmp_path, capsys, error_line, tmpfs
):
    # Issue 20: train failed inside skops after training, with a traceback.
    disk = tmpfs("disk", size="8k")
    assert main(["train", str(demo_source), "--out", str(disk / "model"), *TRAIN, "--no-validation"]) == 1
    assert "No space left on device" in error_line("train")
    assert list(disk.iterdir()) == []
