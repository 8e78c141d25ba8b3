"""``brainmri train`` and ``brainmri predict``: bundles from the command line, predictions as CSV or JSON, bad input."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from brainmri.cli import main

TRAIN = ["--method", "ovo-svm", "--size", "64", "--no-cache", "--jobs", "1", "-q"]


@pytest.fixture(scope="module")
def trained(demo_source, tmp_path_factory) -> tuple[Path, str]:
    """A bundle trained by ``brainmri train`` on the demo data, and what the command printed."""
    out = tmp_path_factory.mktemp("train") / "model"
    capture = io.StringIO()
    with contextlib.redirect_stdout(capture):
        assert main(["train", str(demo_source), "--out", str(out), *TRAIN]) == 0
    return out, capture.getvalue()


@pytest.fixture
def model(trained) -> Path:
    """The bundle folder of ``trained`` (module-wide; tests must not change it)."""
    return trained[0]


def _csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_train_prints_the_internal_validation_and_writes_a_bundle(trained):
    model, printed = trained
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["method"]["name"] == "ovo-svm"
    accuracy = manifest["validation"]["metrics"]["accuracy"]
    assert "internal validation (out-of-fold predictions of StratifiedGroupKFold over 24 groups" in printed
    assert f"accuracy {accuracy:.3f}" in printed
    assert f"bundle: {model} (ovo-svm, classes glioma, meningioma, notumor, pituitary, 24 training images)" in printed
    assert sorted(p.name for p in model.iterdir()) == ["manifest.json", "model.classifier.skops", "ood.npz"]
    timing = manifest["training_data"]["timing_s"]  # where the time went, stage by stage
    assert list(timing) == ["reading", "features", "training", "ood", "validation", "total"]
    assert all(v >= 0 for v in timing.values()) and timing["total"] >= sum(v for k, v in timing.items() if k != "total")
    last = printed.strip().splitlines()[-1]
    assert last.startswith("time: reading (waited for) ") and ", writing " in last and "images/s)" in last


def test_predict_a_labelled_folder_to_json_with_metrics(model, demo_source, tmp_path, capsys):
    out = tmp_path / "preds.json"
    assert main(["predict", str(model), str(demo_source), "--out", str(out), "-q"]) == 0
    doc = json.loads(out.read_text())
    assert doc["classes"] == ["glioma", "meningioma", "notumor", "pituitary"]
    assert len(doc["predictions"]) == 24 and doc["skipped"] == []
    first = doc["predictions"][0]
    assert first["label"] == "glioma" and abs(sum(first["proba"].values()) - 1) < 1e-9
    assert first["predicted"] == max(first["proba"], key=first["proba"].get)
    metrics = doc["metrics"][str(demo_source)]
    assert metrics["n"] == 24 and 0 <= metrics["metrics"]["accuracy"] <= 1
    right = np.mean([p["predicted"] == p["label"] for p in doc["predictions"]])
    assert metrics["metrics"]["accuracy"] == pytest.approx(right)
    printed = capsys.readouterr().out
    assert f"{demo_source}: 24 labelled images, accuracy {right:.3f}" in printed
    timing = doc["timing_s"]  # where the time went, stage by stage
    assert list(timing) == ["loading", "reading", "preprocessing", "network", "ood", "total"]
    assert all(v >= 0 for v in timing.values()) and timing["total"] >= sum(v for k, v in timing.items() if k != "total")
    last = printed.strip().splitlines()[-1]
    assert last.startswith("time: loading (imports, bundle) ") and ", writing " in last and "images/s)" in last


def test_predict_files_to_csv_on_stdout_in_input_order(model, demo_source, capsys):
    files = [demo_source / "notumor" / "notumor_0001.png", demo_source / "glioma" / "glioma_0000.png"]
    assert main(["predict", str(model), *map(str, files), "-q"]) == 0
    rows = _csv(capsys.readouterr().out)
    assert [r["path"] for r in rows] == [str(f) for f in files]
    assert list(rows[0]) == [
        "path",
        "label",
        "predicted",
        "p_glioma",
        "p_meningioma",
        "p_notumor",
        "p_pituitary",
        "note",
        "ood_score",
        "unlike_training",
    ]
    assert all(r["label"] == "" and r["note"] == "" for r in rows)


def test_small_batches_give_the_same_predictions_in_the_same_order(model, demo_source, capsys):
    assert main(["predict", str(model), str(demo_source), "-q"]) == 0
    whole = capsys.readouterr().out
    assert main(["predict", str(model), str(demo_source), "--batch-size", "5", "--jobs", "2", "-q"]) == 0
    assert capsys.readouterr().out == whole
    assert len(_csv(whole)) == 24


def test_unreadable_images_are_reported_and_skipped(model, demo_source, tmp_path, capsys):
    folder = tmp_path / "new"
    folder.mkdir()
    shutil.copy(demo_source / "glioma" / "glioma_0000.png", folder / "a.png")
    (folder / "b.png").write_bytes(b"not a png")
    out = tmp_path / "preds.csv"
    assert main(["predict", str(model), str(folder), "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "skipped" in captured.err and "b.png: not a readable PNG image" in captured.err
    assert "predicted 1 image(s) with ovo-svm (scikit-learn), skipped 1 unreadable" in captured.out
    assert [Path(r["path"]).name for r in _csv(out.read_text())] == ["a.png"]


def test_nothing_readable_exits_1_and_writes_nothing(model, tmp_path, capsys):
    folder = tmp_path / "bad"
    folder.mkdir()
    (folder / "b.png").write_bytes(b"not a png")
    out = tmp_path / "preds.csv"
    assert main(["predict", str(model), str(folder), "--out", str(out)]) == 1
    assert "none of the 1 image(s) could be read" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == [folder]


def test_an_image_unlike_the_training_images_is_converted_and_the_output_says_so(
    model, demo_source, tmp_path, write_pil, load_gray, capsys
):
    gray = (load_gray(demo_source / "glioma" / "glioma_0000.png") * 255).astype(np.uint8)
    big = np.kron(gray, np.ones((2, 2), dtype=np.uint8))
    rgb = write_pil(tmp_path / "in" / "big_rgb.png", np.stack([big] * 3, axis=-1))
    assert main(["predict", str(model), str(rgb), "-q"]) == 0
    [row] = _csv(capsys.readouterr().out)
    assert "size 128x128 not seen in training (64x64): resized to 64x64" in row["note"]
    assert "3 channel(s) (RGB) where training images had 1: converted to grayscale" in row["note"]


def test_a_folder_with_other_classes_gets_no_metrics(model, demo_source, tmp_path, capsys):
    folder = tmp_path / "other"
    shutil.copytree(demo_source / "glioma", folder / "astrocytoma")
    shutil.copytree(demo_source / "notumor", folder / "notumor")
    out = tmp_path / "preds.json"
    assert main(["predict", str(model), str(folder), "--out", str(out), "-q"]) == 0
    entry = json.loads(out.read_text())["metrics"][str(folder)]
    assert "class(es) astrocytoma are not among the bundle's" in entry["skipped"]


@pytest.mark.parametrize(
    "argv, match",
    [
        (
            lambda d, m, t: ["predict", m, str(t / "empty"), "--out", str(t / "p.csv")],
            r"empty: no image files in this folder or below",
        ),
        (lambda d, m, t: ["predict", m, str(t / "missing.png")], r"missing.png: no such file or folder"),
        (
            lambda d, m, t: ["predict", m, str(d), "--out", str(t / "p.txt")],
            r"--out .*p.txt: name a .csv or .json file",
        ),
        (lambda d, m, t: ["predict", m, str(d), "--out", str(d / "p.csv")], r"--out .*lies inside the input folder"),
        (
            lambda d, m, t: ["predict", str(t / "empty"), str(d), "--out", str(t / "p.csv")],
            r"empty: not a brainmri model bundle",
        ),
        (
            lambda d, m, t: ["predict", m, str(d), "--batch-size", "0"],
            r"--batch-size must be a positive integer, got 0",
        ),
        (lambda d, m, t: ["train", str(d), "--out", str(d / "model"), *TRAIN], r"--out .*lies inside the input folder"),
        (
            lambda d, m, t: ["train", str(d), "--out", str(t / "empty"), "--method", "no-such"],
            r"unknown method 'no-such'",
        ),
        (
            lambda d, m, t: ["train", str(d), "--out", str(t / "m"), *TRAIN, "--params", "rf.n_estimators=5"],
            r"--params names method 'rf', but --method is ovo-svm",
        ),
        (
            lambda d, m, t: ["train", str(d), "--out", str(t / "m"), *TRAIN, "--params", "ovo-svm.kernel=linear"],
            r"--params ovo-svm.kernel: ovo-svm has no setting 'kernel'",
        ),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(model, demo_data, tmp_path, capsys, listing, argv, match, error_line):
    (tmp_path / "empty").mkdir()
    before = listing(demo_data), listing(tmp_path)
    assert main(argv(demo_data, str(model), tmp_path)) == 2
    line = error_line(argv(demo_data, str(model), tmp_path)[0])
    assert re.search(match, line), line
    assert (listing(demo_data), listing(tmp_path)) == before


def test_a_tampered_bundle_is_refused_in_one_line(model, demo_source, tmp_path, capsys, error_line):
    copy = Path(shutil.copytree(model, tmp_path / "model"))
    with open(copy / "model.classifier.skops", "ab") as fh:
        fh.write(b"x")
    assert main(["predict", str(copy), str(demo_source), "--out", str(tmp_path / "p.csv")]) == 2
    assert "model.classifier.skops: sha256 differs from the manifest" in error_line("predict")
    assert not (tmp_path / "p.csv").exists()


def test_device_cuda_without_a_gpu_is_refused_before_reading(demo_data, tmp_path, capsys, error_line):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    argv = ["train", str(demo_data), "--method", "ayadi-cnn", "--device", "cuda", "--out", str(tmp_path / "m")]
    assert main(argv) == 2
    assert "--device cuda: torch sees no CUDA GPU" in error_line("train")
    assert list(tmp_path.iterdir()) == [demo_data]


@pytest.mark.slow
def test_a_deep_bundle_from_the_command_line(demo_source, tmp_path, capsys):
    pytest.importorskip("torch")
    settings = "ayadi-cnn.size=32,ayadi-cnn.epochs=1,ayadi-cnn.batch_size=8"
    out = tmp_path / "cnn"
    assert (
        main(
            [
                "train",
                str(demo_source),
                "--method",
                "ayadi-cnn",
                "--params",
                settings,
                "--device",
                "cpu",
                "--threads",
                "1",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    assert (
        "internal validation (validation part of the training data (grouped), epoch 1 of 1" in capsys.readouterr().out
    )
    assert json.loads((out / "manifest.json").read_text())["method"]["params"] == {
        "size": 32,
        "epochs": 1,
        "batch_size": 8,
    }
    assert (
        main(
            [
                "predict",
                str(out),
                str(demo_source),
                "--device",
                "cpu",
                "--threads",
                "1",
                "--out",
                str(tmp_path / "p.json"),
                "-q",
            ]
        )
        == 0
    )
    doc = json.loads((tmp_path / "p.json").read_text())
    assert doc["method"] == "ayadi-cnn" and len(doc["predictions"]) == 24
    assert doc["timing_s"]["network"] > 0 and doc["timing_s"]["ood"] > 0
    assert doc["metrics"][str(demo_source)]["n"] == 24


def test_predict_flags_images_unlike_the_training_data(model, demo_source, tmp_path, capsys, write_pil):
    rng = np.random.default_rng(0)
    noise = tmp_path / "noise"
    for k in range(4):
        write_pil(noise / f"noise_{k}.png", rng.integers(0, 256, (64, 64), dtype=np.uint8))
    assert main(["predict", str(model), str(noise), str(demo_source / "glioma"), "-q"]) == 0
    rows = _csv(capsys.readouterr().out)
    strange = [r for r in rows if "noise_" in r["path"]]
    usual = [r for r in rows if "noise_" not in r["path"]]
    assert [r["unlike_training"] for r in strange] == ["true"] * 4
    assert all(float(r["ood_score"]) == 1.0 for r in strange)
    assert max(float(r["ood_score"]) for r in usual) < 1.0


def test_predict_scores_blurred_copies_with_the_acquisition_detector_too(
    model, demo_source, tmp_path, capsys, write_pil
):
    from brainmri.data.io import read_image
    from brainmri.data.shifts import shift_image

    manifest = json.loads((model / "manifest.json").read_text())
    assert set(manifest["ood"]["detectors"]) == {"embedding", "acquisition"}
    for path in sorted((demo_source / "glioma").iterdir()):
        blurred = shift_image(read_image(path)[0], "blur", 3)  # ovo-svm's features alone call these typical
        write_pil(tmp_path / "blurred" / f"{path.stem}.png", np.round(blurred).astype(np.uint8))
    assert main(["predict", str(model), str(tmp_path / "blurred"), "-q"]) == 0
    rows = _csv(capsys.readouterr().out)
    assert len(rows) == 6 and [r["unlike_training"] for r in rows] == ["true"] * 6


def test_predict_refuses_to_adapt_a_classical_bundle(model, demo_source, error_line):
    assert main(["predict", str(model), str(demo_source / "glioma"), "--adapt", "adabn"]) == 2
    assert "--adapt adabn: ovo-svm classifies with" in error_line("predict")
