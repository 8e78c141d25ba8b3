"""``cnn3d`` on volumes through every command: benchmark, train (bundle), predict and explain."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainmri.cli import main
from brainmri.errors import DataError

torch = pytest.importorskip("torch")

#: A tiny cnn3d (16^3 voxels, 2 channels wide, 2 epochs) that trains in seconds; accuracy does not matter here.
TINY = "cnn3d.size=16,cnn3d.width=2,cnn3d.epochs=2,cnn3d.batch_size=4,cnn3d.threads=1"


def test_cnn3d_maps_a_batch_of_volumes_to_logits():
    from brainmri.nets.cnn import cnn3d

    net = cnn3d(num_classes=3, width=2).eval()
    assert net(torch.zeros(2, 1, 16, 20, 24)).shape == (2, 3)
    assert sum(isinstance(m, torch.nn.Conv3d) for m in net.modules()) == 4


@pytest.fixture(scope="module")
def volume_model(volume_source, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cnn3d") / "model"
    assert (
        main(
            [
                "train",
                str(volume_source),
                "--method",
                "cnn3d",
                "--params",
                TINY,
                "--out",
                str(out),
                "--device",
                "cpu",
                "--no-cache",
                "--no-validation",
                "--jobs",
                "1",
                "-q",
            ]
        )
        == 0
    )
    return out


@pytest.mark.slow
def test_cnn3d_runs_in_the_benchmark_like_any_method(volume_source, tmp_path, one_torch_thread):
    out = tmp_path / "bench"
    assert (
        main(
            [
                "benchmark",
                str(volume_source),
                "--methods",
                "cnn3d",
                "--params",
                TINY,
                "--cv",
                "2",
                "--out",
                str(out),
                "--device",
                "cpu",
                "--no-cache",
                "--jobs",
                "1",
                "-q",
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    entry = results["methods"]["cnn3d"]
    assert set(entry["history"]) == {"fold0", "fold1"}
    assert 0 <= entry["metrics"]["accuracy"]["value"] <= 1
    fold = json.loads((out / "units" / "cnn3d" / "fold0.json").read_text())
    np.testing.assert_allclose(np.sum(fold["proba"], axis=1), 1.0, atol=1e-5)
    assert (out / "report.html").exists()


def test_a_volume_bundle_round_trips_and_predicts_volumes(volume_model, volume_source, one_torch_thread):
    from brainmri.models.bundle import load_model

    manifest = json.loads((volume_model / "manifest.json").read_text())
    assert manifest["input_size"] == [16, 16, 16]
    assert manifest["training_data"]["image_sizes"] == {"16x16x16": 12}
    paths = sorted(str(p) for c in ("atrophy", "control") for p in (volume_source / c).glob("*.nii.gz"))
    loaded = load_model(volume_model, device="cpu")
    proba = loaded.predict_proba(paths)
    assert proba.shape == (12, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_allclose(load_model(volume_model, device="cpu").predict_proba(paths), proba)
    arrays = [np.asarray(nib.load(p).dataobj, dtype=np.float32) for p in paths[:2]]  # volumes already read
    np.testing.assert_allclose(loaded.predict_proba(arrays), proba[:2], atol=1e-6)


def test_predict_skips_what_a_volume_model_cannot_read(volume_model, volume_source, tmp_path, write_pil, capsys):
    bad = tmp_path / "bad"
    bad.mkdir()
    write_pil(bad / "slice.png", np.full((32, 32), 128, np.uint8))
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.float32), np.eye(4)), bad / "empty.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((16, 16, 16, 2), np.float32), np.eye(4)), bad / "series.nii.gz")
    good = sorted(volume_source.glob("control/*.nii.gz"))[0]
    out = tmp_path / "preds.json"
    assert main(["predict", str(volume_model), str(good), str(bad), "--out", str(out), "--jobs", "1", "-q"]) == 0
    doc = json.loads(out.read_text())
    assert [Path(p["path"]).name for p in doc["predictions"]] == [good.name]
    reasons = {Path(s["path"]).name: s["reason"] for s in doc["skipped"]}
    assert "a 2D image of shape (32, 32); this model takes 3D volumes (NIfTI)" in reasons["slice.png"]
    assert "every voxel of this volume is 0" in reasons["empty.nii.gz"]
    assert "split 4D series first" in reasons["series.nii.gz"]


def test_explain_writes_3d_maps_and_checks_them_against_the_planted_regions(
    volume_model, volume_source, tmp_path, capsys, one_torch_thread
):
    from PIL import Image

    out = tmp_path / "explained"
    assert (
        main(
            [
                "explain",
                str(volume_model),
                str(volume_source),
                "--method",
                "gradcam",
                "--masks",
                str(volume_source / ".masks"),
                "--check-items",
                "3",
                "--out",
                str(out),
                "--jobs",
                "1",
                "-q",
            ]
        )
        == 0
    )
    doc = json.loads((out / "explain.json").read_text())
    assert len(doc["images"]) == 12
    first = doc["images"][0]
    assert first["map"] == "maps/atrophy/sub-atrophy000.npy"
    heat = np.load(out / first["map"])
    assert heat.shape == (16, 16, 16) and heat.dtype == np.float32 and heat.min() >= 0
    with Image.open(out / first["overlay"]) as png:
        assert png.width > 2 * png.height  # three planes side by side
    known = doc["checks"]["known_answer"]
    assert known["n_images"] == 6 and known["n_without_mask"] == 6  # controls have no planted region
    assert 0 < known["random_map_lesion_share"] < 0.5
    assert doc["checks"]["randomisation"]["n_images"] == 3
    assert "16 x 16 x 16 volumes" in doc["space"]
    assert "known answer (6 images with a lesion mask)" in capsys.readouterr().out


def test_occlusion_explains_a_volume_model(volume_model, volume_source, tmp_path, one_torch_thread):
    out = tmp_path / "occ"
    assert (
        main(
            [
                "explain",
                str(volume_model),
                *map(str, sorted(volume_source.glob("atrophy/*"))[:1]),
                "--method",
                "occlusion",
                "--no-checks",
                "--out",
                str(out),
                "--jobs",
                "1",
                "-q",
            ]
        )
        == 0
    )
    doc = json.loads((out / "explain.json").read_text())
    assert np.load(out / doc["images"][0]["map"]).shape == (16, 16, 16)


def test_masks_line_up_with_the_volume_the_model_sees(volume_model):
    """A bright cube in an off-centre head, and its mask: after the 3D crop and the resize, the mask covers the cube."""
    from brainmri.explain.view import ModelView
    from brainmri.models.bundle import load_model

    view = ModelView(load_model(volume_model, device="cpu"))
    volume = np.zeros((40, 36, 44), np.float32)
    volume[8:38, 4:30, 10:40] = 0.4  # the head, off centre: cropping moves everything
    volume[12:20, 8:16, 14:22] = 1.0  # the lesion
    seen, aligned = view.preprocess(volume), view.align(volume == 1.0, volume)
    assert aligned.shape == seen.shape == (16, 16, 16) and aligned.any()
    assert seen[aligned].mean() > 0.8 and seen[~aligned].mean() < 0.5


def test_slice_methods_on_volumes_are_refused_before_training(volume_source, tmp_path, error_line):
    assert (
        main(["train", str(volume_source), "--method", "ayadi-cnn", "--out", str(tmp_path / "m"), "--no-cache", "-q"])
        == 2
    )
    assert error_line("train").endswith(
        "--method ayadi-cnn: reads slices, but DATA holds volumes; methods for volumes: cnn3d"
    )
    assert (
        main(
            [
                "benchmark",
                str(volume_source),
                "--methods",
                "cnn3d,glcm-svm,rf",
                "--out",
                str(tmp_path / "b"),
                "--no-cache",
                "-q",
            ]
        )
        == 2
    )
    assert error_line("benchmark").endswith(
        "--methods glcm-svm, rf: read slices, but DATA holds volumes; methods for volumes: cnn3d"
    )


def test_cnn3d_on_slices_is_refused_before_training(demo_source, tmp_path, error_line):
    assert main(["train", str(demo_source), "--method", "cnn3d", "--out", str(tmp_path / "m"), "--no-cache", "-q"]) == 2
    assert "--method cnn3d: reads volumes, but DATA holds slices; methods for slices: ayadi-cnn," in error_line("train")


def test_a_slice_method_given_a_volume_array_names_the_fix():
    from brainmri.training.arrays import ImageArrays

    with pytest.raises(DataError, match=r"item 0: an array of shape \(16, 16, 16\); expected a 2D slice"):
        ImageArrays(size=16).fit().transform([np.ones((16, 16, 16))])


def test_predictions_csv_of_volumes_has_one_row_per_volume(volume_model, volume_source, tmp_path):
    out = tmp_path / "p.csv"
    assert main(["predict", str(volume_model), str(volume_source), "--out", str(out), "-q"]) == 0
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 12 and {r["label"] for r in rows} == {"atrophy", "control"}


@pytest.fixture(scope="module")
def series_and_nifti(volume_source, write_dicom_series, write_nifti, tmp_path_factory) -> tuple[Path, Path]:
    """``volume_source``'s volumes twice, as DICOM series (``<class>/<subject>/IM*.dcm``) and as NIfTI files.

    The voxels are the same in both: the volumes scaled to 0..1000 and rounded, which DICOM's 16-bit integers hold
    exactly.
    """
    root = tmp_path_factory.mktemp("series")
    for nifti in sorted(p for c in ("atrophy", "control") for p in (volume_source / c).glob("*.nii.gz")):
        volume = np.asarray(nib.as_closest_canonical(nib.load(nifti)).dataobj, dtype=np.float32)
        volume = np.rint(1000 * (volume - volume.min()) / np.ptp(volume))
        subject = nifti.name.removesuffix(".nii.gz")
        write_dicom_series(root / "series" / nifti.parent.name / subject, volume)
        write_nifti(root / "nifti" / nifti.parent.name / f"{subject}.nii.gz", volume)
    return root / "series", root / "nifti"


def test_a_dataset_of_dicom_series_is_audited_trained_on_and_predicted_like_nifti(
    series_and_nifti, volume_model, tmp_path, one_torch_thread
):
    from brainmri.models.bundle import load_model

    series, nifti = series_and_nifti
    assert main(["audit", str(series), "--out", str(tmp_path / "audit"), "--jobs", "1", "-q"]) == 0
    audit = json.loads((tmp_path / "audit" / "audit.json").read_text())
    assert audit["n_items"] == 12 and audit["n_unreadable"] == 0

    loaded = load_model(volume_model, device="cpu")
    series_paths = sorted(p for p in series.glob("*/*") if p.is_dir())
    nifti_paths = sorted(nifti.glob("*/*.nii.gz"))
    assert [p.name for p in series_paths] == [p.name.removesuffix(".nii.gz") for p in nifti_paths]
    np.testing.assert_allclose(loaded.predict_proba(series_paths), loaded.predict_proba(nifti_paths), atol=1e-6)

    out = tmp_path / "p.csv"
    assert main(["predict", str(volume_model), str(series_paths[0]), "--out", str(out), "-q"]) == 0
    assert len(list(csv.DictReader(io.StringIO(out.read_text())))) == 1  # one series, one row

    model = tmp_path / "model"
    command = ["train", str(series), "--method", "cnn3d", "--params", TINY, "--out", str(model)]
    assert main([*command, "--device", "cpu", "--no-cache", "--no-validation", "--jobs", "1", "-q"]) == 0
    assert json.loads((model / "manifest.json").read_text())["training_data"]["image_sizes"] == {"16x16x16": 12}


def test_a_bids_dataset_trains_a_volume_model(volume_source, write_nifti, tmp_path, one_torch_thread):
    pytest.importorskip("bids")
    root = tmp_path / "bids"
    root.mkdir()
    (root / "dataset_description.json").write_text(json.dumps({"Name": "volumes", "BIDSVersion": "1.8.0"}))
    rows = ["participant_id\tgroup"]
    for k, nifti in enumerate(sorted(p for c in ("atrophy", "control") for p in (volume_source / c).glob("*.nii.gz"))):
        subject = f"sub-{k:02d}"
        rows.append(f"{subject}\t{nifti.parent.name}")
        volume = np.asarray(nib.load(nifti).dataobj, dtype=np.float32)
        write_nifti(root / subject / "anat" / f"{subject}_T1w.nii.gz", volume)
    (root / "participants.tsv").write_text("\n".join(rows) + "\n")

    model = tmp_path / "model"
    command = ["train", str(root), "--bids-label", "group", "--method", "cnn3d", "--params", TINY, "--out", str(model)]
    assert main([*command, "--device", "cpu", "--no-cache", "--no-validation", "--jobs", "1", "-q"]) == 0
    manifest = json.loads((model / "manifest.json").read_text())
    assert manifest["classes"] == ["atrophy", "control"]
    assert manifest["training_data"]["image_sizes"] == {"16x16x16": 12}
