"""``brainmri explain`` and ``brainmri predict --explain``: files per image, checks, bad input."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest

from brainmri.cli import main

pytest.importorskip("captum")

#: A tiny ayadi-cnn (32 px, 4 channels wide) that trains in seconds; accuracy does not matter here.
CNN = [
    "--method",
    "ayadi-cnn",
    "--params",
    "ayadi-cnn.size=32,ayadi-cnn.width=4,ayadi-cnn.epochs=2,ayadi-cnn.batch_size=8,ayadi-cnn.threads=1",
    "--size",
    "32",
    "--device",
    "cpu",
]
SVM = ["--method", "ovo-svm", "--size", "32"]


def _train(data: Path, out: Path, argv: list[str]) -> Path:
    assert (
        main(["train", str(data), "--out", str(out), *argv, "--no-cache", "--no-validation", "--jobs", "1", "-q"]) == 0
    )
    return out


@pytest.fixture(scope="module")
def masked_demo(tmp_path_factory) -> Path:
    """The demo dataset (same images as ``demo_source``) with its lesion masks in ``.masks``."""
    from brainmri.data.synthetic import write_demo_data

    return write_demo_data(tmp_path_factory.mktemp("masked") / "data", n=6, seed=0, size=64, masks=True)


@pytest.fixture(scope="module")
def cnn(demo_source, tmp_path_factory) -> Path:
    return _train(demo_source, tmp_path_factory.mktemp("explain") / "cnn", CNN)


@pytest.fixture(scope="module")
def svm(demo_source, tmp_path_factory) -> Path:
    return _train(demo_source, tmp_path_factory.mktemp("explain") / "svm", SVM)


def _explain(model, images, out, *more) -> int:
    return main(["explain", str(model), *map(str, images), "--out", str(out), "--jobs", "1", "-q", *map(str, more)])


def test_explain_writes_a_map_and_an_overlay_per_image_and_the_checks(
    cnn, masked_demo, tmp_path, capsys, one_torch_thread
):
    from PIL import Image

    out = tmp_path / "gradcam"
    assert _explain(cnn, [masked_demo], out, "--masks", masked_demo / ".masks", "--check-items", "4") == 0
    doc = json.loads((out / "explain.json").read_text())
    assert len(doc["images"]) == 24 and doc["skipped"] == []
    for entry in doc["images"]:
        heat = np.load(out / entry["map"])
        assert heat.shape == (32, 32) and heat.dtype == np.float32 and heat.min() >= 0  # Grad-CAM is ReLU'd
        with Image.open(out / entry["overlay"]) as png:
            assert png.format == "PNG" and png.width >= 256
    first = doc["images"][0]
    assert first["map"] == "maps/glioma/glioma_0000.npy" and first["overlay"] == "overlays/glioma/glioma_0000.png"
    checks = doc["checks"]
    known = checks["known_answer"]
    assert known["n_images"] == 18 and known["n_without_mask"] == 6  # notumor images have no lesion
    hits = [e["pointing_hit"] for e in doc["images"] if e.get("mask")]
    assert known["pointing_game"] == pytest.approx(np.mean(hits))
    assert 0 < known["random_map_pointing_game"] < 0.2  # a lesion covers a small part of the head
    assert checks["deletion_insertion"]["n_images"] == 4 and len(checks["deletion_insertion"]["deletion"]) == 11
    assert checks["randomisation"]["n_images"] == 4
    printed = capsys.readouterr().out
    assert known["tolerance_px"] == 2  # 15 px of 224, at 32 px
    assert known["pointing_game"] >= known["pointing_game_strict"]
    assert (
        f"pointing game {known['pointing_game']:.1%} within 2 px (random map {known['random_map_pointing_game']:.1%}), "
        f"{known['pointing_game_strict']:.1%} strictly inside"
    ) in printed
    assert f"deletion AOPC {checks['deletion_insertion']['deletion_aopc']:.3f}" in printed
    assert "randomisation check: Spearman rank correlation with random weights" in printed


def test_masks_line_up_with_the_image_the_model_sees(cnn):
    """A bright square and its mask: after the crop to the head and the resize, the aligned mask covers the square."""
    from brainmri.explain.view import ModelView
    from brainmri.models.bundle import load_model

    view = ModelView(load_model(cnn, device="cpu"))
    image = np.zeros((100, 80), dtype=np.float32)
    image[30:90, 10:70] = 0.4  # the head, off centre: cropping moves everything
    image[40:52, 20:32] = 1.0  # the lesion
    mask = image == 1.0
    seen, aligned = view.preprocess(image), view.align(mask, image)
    assert aligned.shape == seen.shape == (32, 32)
    assert seen[aligned].min() > 0.7 and seen[~aligned].mean() < 0.5


def test_a_method_that_does_not_apply_names_the_ones_that_do(svm, demo_source, tmp_path, error_line):
    assert _explain(svm, [demo_source / "glioma"], tmp_path / "x", "--method", "gradcam") == 2
    assert error_line("explain") == (
        "brainmri explain: error: --method gradcam: does not apply to ovo-svm (it needs a "
        "torch network on the images, and this model is not one); valid methods for "
        "this model: occlusion"
    )
    assert not (tmp_path / "x").exists()


def test_an_unknown_method_names_every_method(cnn, demo_source, tmp_path, error_line):
    assert _explain(cnn, [demo_source], tmp_path / "x", "--method", "lime") == 2
    assert error_line("explain").endswith(
        "--method 'lime' is not an attribution method; valid methods: gradcam, "
        "integrated-gradients, saliency, occlusion"
    )


def test_occlusion_explains_a_classical_model_through_predict_proba(svm, demo_source, tmp_path):
    images = [demo_source / "meningioma" / "meningioma_0000.png", demo_source / "notumor" / "notumor_0000.png"]
    out = tmp_path / "occ"
    assert _explain(svm, images, out, "--method", "occlusion", "--check-items", "1") == 0
    doc = json.loads((out / "explain.json").read_text())
    heat = np.load(out / doc["images"][0]["map"])
    assert heat.shape == (32, 32) and np.ptp(heat) > 0  # occluding some patches changed the probability
    assert doc["checks"]["randomisation"]["skipped"].startswith("the model has no network weights")


@pytest.mark.parametrize(
    "where, message",
    [
        ("inside", "lies inside the input folder"),
        (
            "foreign",
            "holds maps, notes.txt but no brainmri run.json; brainmri only writes in folders of its own runs, so "
            "choose a new or empty folder",
        ),
        # Issue 20: one marker file (explain.json) was enough for explain to overwrite a folder.
        ("foreign-explain-json", "holds explain.json, notes.txt but no brainmri run.json"),
        (
            "another-command",
            "holds the output of brainmri audit, not of brainmri explain; choose a new or empty folder",
        ),
    ],
)
def test_refuses_to_write_into_the_data_or_a_folder_it_did_not_write(
    cnn, demo_data, tmp_path, error_line, listing, where, message
):
    out = demo_data / "explained" if where == "inside" else tmp_path / "mine"
    if where == "foreign":
        (out / "maps").mkdir(parents=True)
    elif where == "foreign-explain-json":
        out.mkdir()
        (out / "explain.json").write_text('{"my": "results"}')
    elif where == "another-command":
        out.mkdir()
        (out / "run.json").write_text('{"tool": "brainmri", "command": "audit"}')
    if where != "inside":
        (out / "notes.txt").write_text("keep")
    before = listing(tmp_path)
    assert _explain(cnn, [demo_data], out, "--no-checks") == 2
    assert message in error_line("explain")
    assert listing(tmp_path) == before
    assert where == "inside" and not out.exists() or (out / "notes.txt").read_text() == "keep"


def test_an_earlier_explain_output_may_be_written_again(cnn, demo_source, tmp_path, one_torch_thread):
    out = tmp_path / "again"
    for _ in range(2):
        assert _explain(cnn, [demo_source / "pituitary"], out, "--method", "saliency", "--no-checks") == 0
    assert sorted(p.name for p in (out / "maps").iterdir()) == [f"pituitary_{k:04d}.npy" for k in range(6)]


def test_predict_explain_writes_an_overlay_per_image(cnn, demo_source, tmp_path, one_torch_thread):
    preds, out = tmp_path / "preds.csv", tmp_path / "overlays"
    assert (
        main(
            [
                "predict",
                str(cnn),
                str(demo_source / "glioma"),
                "--out",
                str(preds),
                "--explain",
                str(out),
                "--jobs",
                "1",
                "-q",
            ]
        )
        == 0
    )
    explained = list(csv.DictReader(io.StringIO(preds.read_text())))
    assert main(["predict", str(cnn), str(demo_source / "glioma"), "--out", str(tmp_path / "plain.csv"), "-q"]) == 0
    plain = list(csv.DictReader(io.StringIO((tmp_path / "plain.csv").read_text())))
    assert len(explained) == 6 and [r["path"] for r in explained] == [r["path"] for r in plain]
    for got, want in zip(
        explained, plain, strict=True
    ):  # Grad-CAM's own pass predicts (no batch-norm folding): same up to bf16
        assert [float(got[k]) for k in got if k.startswith("p_")] == pytest.approx(
            [float(want[k]) for k in want if k.startswith("p_")], abs=1e-3
        )
    doc = json.loads((out / "explain.json").read_text())
    assert doc["method"] == "gradcam" and doc["checks"] == {"known_answer": {"skipped": "no --masks given"}}
    assert sorted(p.name for p in (out / "overlays").iterdir()) == [f"glioma_{k:04d}.png" for k in range(6)]
