"""``brainmri regions``: the genetic region-mask search on synthetic volumes with planted atrophy."""

from __future__ import annotations

import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from brainmri.cli import main
from brainmri.errors import ConfigError, DataError
from brainmri.regions.atlas import load_atlas
from brainmri.regions.features import attribution_density, class_relevance
from brainmri.regions.genetic import GeneticRegionSearch
from brainmri.regions.region_search import RegionSearchConfig, run_region_search

FAST = ["--population", "12", "--generations", "8", "--regions", "12"]  # the fixture's parcellation: 12 regions


@pytest.fixture(scope="module")
def searched(volume_source, tmp_path_factory):
    """One CLI run on the session's synthetic volumes (16^3, 12 regions, 3 planted): (out folder, stdout)."""
    out = tmp_path_factory.mktemp("regions") / "out"
    import contextlib
    import io

    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["regions", str(volume_source), "--out", str(out), *FAST, "-q"]) == 0
    return out, stdout.getvalue()


def test_search_recovers_the_planted_regions_with_whole_brain_accuracy(searched, volume_source):
    out, stdout = searched
    results = json.loads((out / "results.json").read_text())
    planted = json.loads((volume_source / ".regions" / "planted_regions.json").read_text())["planted_regions"]
    assert results["planted"]["comparable"] and results["planted"]["planted_regions"] == planted
    ranked = json.loads((out / "regions.json").read_text())
    top = [r["region"] for r in ranked[: len(planted)]]
    assert len(set(top) & set(planted)) / len(planted) >= 0.8 and results["planted"]["recovered_top"] >= 0.8
    assert results["accuracy"]["mask"] >= results["accuracy"]["whole_brain"] - 0.05
    assert results["accuracy"]["mask"] >= 0.9
    assert f"{results['planted']['recovered_top']:.0%} among the top 3 ranked" in stdout
    assert "accuracy with the mask" in stdout


def test_outputs_mask_table_and_report_agree(searched, volume_source):
    out, _ = searched
    results = json.loads((out / "results.json").read_text())
    selected = results["selected_regions"]
    assert 1 <= len(selected) < results["atlas"]["n_regions"]  # the penalty keeps the mask small
    atlas = np.asarray(nib.load(volume_source / ".regions" / "atlas.nii.gz").dataobj)
    mask = nib.load(out / "mask.nii.gz")
    np.testing.assert_array_equal(np.asarray(mask.dataobj), np.isin(atlas, selected).astype(np.uint8))
    np.testing.assert_allclose(mask.affine, nib.load(volume_source / ".regions" / "atlas.nii.gz").affine)
    rows = (out / "regions.csv").read_text().splitlines()
    assert rows[0].startswith("rank,region,selected") and len(rows) == 1 + results["atlas"]["n_regions"]
    assert [int(r.split(",")[1]) for r in rows[1 : 1 + len(selected)]] == selected  # selected regions rank first
    html = (out / "report.html").read_text()
    assert "<script" not in html and "brainmri region search" in html and "data:image/png;base64," in html


def test_same_seed_same_search_and_the_seed_is_used(volume_source, tmp_path):
    def run(name, seed):
        config = RegionSearchConfig(population=8, generations=4, seed=seed)
        return run_region_search(volume_source, config, tmp_path / name)

    first, again, other = run("a", 1), run("b", 1), run("c", 2)
    assert first["selected_regions"] == again["selected_regions"] and first["history"] == again["history"]
    assert (tmp_path / "a" / "regions.json").read_bytes() == (tmp_path / "b" / "regions.json").read_bytes()
    assert first["cv"] == again["cv"] and other["history"] != first["history"]


def _shifted_atlas(volume_source, path):
    """The folder's atlas padded by two voxels a side (a larger grid, same world positions)."""
    image = nib.load(volume_source / ".regions" / "atlas.nii.gz")
    padded = np.pad(np.asarray(image.dataobj), 2)
    affine = image.affine.copy()
    affine[:3, 3] -= image.affine[:3, :3] @ np.full(3, 2.0)
    nib.save(nib.Nifti1Image(padded, affine), path)
    return path


def test_an_atlas_on_another_grid_is_resampled_and_the_user_told(volume_source, tmp_path, capsys):
    atlas = _shifted_atlas(volume_source, tmp_path / "atlas.nii.gz")
    out = tmp_path / "out"
    assert main(["regions", str(volume_source), "--atlas", str(atlas), "--out", str(out), *FAST]) == 0
    err = capsys.readouterr().err
    assert f"--atlas {atlas}: on another grid (20x20x20 voxels" in err
    assert "resampled onto the volumes' grid by nearest neighbour" in err
    results = json.loads((out / "results.json").read_text())
    assert results["atlas"]["note"].startswith(f"--atlas {atlas}: on another grid")
    assert results["planted"]["comparable"]  # nearest neighbour gave back the folder's own labels exactly


def test_an_atlas_with_labels_outside_the_brain_is_refused(volume_source, tmp_path, capsys):
    image = nib.load(volume_source / ".regions" / "atlas.nii.gz")
    labels = np.asarray(image.dataobj).copy()
    labels[:2, :2, :2] = 99  # a corner of the field of view, far from the brain
    nib.save(nib.Nifti1Image(labels, image.affine), tmp_path / "bad.nii.gz")
    code = main(["regions", str(volume_source), "--atlas", str(tmp_path / "bad.nii.gz"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "1 label(s) lie mostly outside the brain of the volumes: 99 (0% inside)" in err
    assert not (tmp_path / "o" / "results.json").exists()


@pytest.mark.parametrize(
    "data, match",
    [
        (np.full((4, 4, 4), 0.5, np.float32), "not whole numbers"),
        (np.zeros((4, 4, 4, 2), np.int16), "must be one 3D volume"),
        (np.full((4, 4, 4), -1, np.int16), "negative labels"),
        (np.zeros((4, 4, 4), np.int16), "every voxel is 0"),
        (
            np.where(np.eye(4, dtype=bool)[..., None], np.nan, 1.0).repeat(4, axis=2).astype(np.float32),
            "holds NaN or infinite values, so it is not a label volume",
        ),  # issue 20: a traceback before
    ],
)
def test_bad_atlas_files_are_refused_with_the_reason(tmp_path, data, match):
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "atlas.nii.gz")
    with pytest.raises(DataError, match=match):
        load_atlas(tmp_path / "atlas.nii.gz", (4, 4, 4), np.eye(4))


def test_a_missing_atlas_stops_the_run_with_one_line(volume_source, tmp_path, capsys):
    code = main(["regions", str(volume_source), "--atlas", str(tmp_path / "none.nii.gz"), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert f"error: --atlas {tmp_path / 'none.nii.gz'}: cannot be read as a NIfTI label volume" in err


def test_an_unreadable_atlas_is_a_one_line_error(tmp_path):
    (tmp_path / "atlas.nii.gz").write_bytes(b"not a nifti")
    with pytest.raises(DataError, match=r"--atlas .*atlas.nii.gz: cannot be read as a NIfTI label volume"):
        load_atlas(tmp_path / "atlas.nii.gz", (4, 4, 4), np.eye(4))


def test_the_penalty_drops_regions_that_add_no_accuracy():
    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b"], 12)
    X = rng.normal(size=(24, 8, 2))
    X[y == "a", 3, 0] += 4  # region 3 alone separates the classes
    free = GeneticRegionSearch(population=10, generations=6, penalty=0.0).fit(X, y, ranking=np.arange(8)[::-1])
    priced = GeneticRegionSearch(population=10, generations=6, penalty=0.01).fit(X, y, ranking=np.arange(8)[::-1])
    assert priced.support_.nonzero()[0].tolist() == [3] and priced.accuracy_ == 1.0
    assert priced.fitness_ == pytest.approx(1.0 - 0.01)
    assert free.support_.sum() >= priced.support_.sum()


def test_attribution_density_ranks_a_small_hot_region_above_a_large_lukewarm_one():
    labels = np.zeros((4, 4, 4), np.int64)
    labels[:2] = 1  # 32 voxels
    labels[2, :2, :2] = 2  # 4 voxels
    attribution = np.where(labels == 1, 1.0, 0.0) + np.where(labels == 2, 6.0, 0.0)
    attribution[3] = 50.0  # outside every region: ignored
    density = attribution_density(attribution, labels, np.array([1, 2]))
    # The large region holds 32 of the map's 56 inside the regions, the small one 24; per voxel 1 vs 6,
    # against a mean |map| of 56 / 36 over the regions' voxels.
    np.testing.assert_allclose(density, [36 / 56, 6 * 36 / 56])
    np.testing.assert_allclose(attribution_density(10 * attribution, labels, np.array([1, 2])), density)
    assert attribution_density(np.zeros((4, 4, 4)), labels, np.array([1, 2])).tolist() == [0.0, 0.0]


@pytest.mark.parametrize(
    "settings, match",
    [
        ({"population": 2}, "--population must be an integer >= 4"),
        ({"generations": 0}, "--generations must be an integer >= 1"),
        ({"mutation": 0.9}, r"--mutation must be a probability in \(0, 0.5\]"),
        ({"penalty": -1.0}, "--penalty must be >= 0"),
        (
            {"attribution": "saliency"},
            "--attribution 'saliency' is not a region attribution method; valid: gradient, "
            "integrated-gradients, gradcam",
        ),
    ],
)
def test_bad_search_settings_are_refused_before_reading(settings, match):
    with pytest.raises(ConfigError, match=match):
        RegionSearchConfig(**settings)


def test_class_relevance_keeps_what_every_subject_agrees_on():
    # Region 0: strong maps whose sign changes from subject to subject; region 1: weak, the same sign within a class.
    densities = np.array([[3.0, 0.5], [-3.0, 0.5], [-3.0, -0.5], [3.0, -0.5], [1.0, -0.5], [-1.0, -0.5]])
    score, ranking = class_relevance(densities, ["a", "a", "b", "b", "b", "b"])
    np.testing.assert_allclose(score, [0.0, 0.5])
    assert ranking.tolist() == [1, 0]
    score, _ = class_relevance(np.array([[4.0, 1.0], [2.0, 1.0], [1.0, 3.0]]), ["a", "a", "b"])
    np.testing.assert_allclose(score, [2.0, 2.0])  # each class weighs the same, not each volume


def test_the_docstring_examples_of_the_search_hold():
    import doctest

    from brainmri.regions import features, region_search

    results = [doctest.testmod(module) for module in (features, region_search)]
    assert sum(r.attempted for r in results) >= 6 and sum(r.failed for r in results) == 0


@pytest.fixture(scope="module")
def trained_cnn3d(tmp_path_factory):
    """20 subjects per class of 32^3 voxels (24 regions, 3 planted) and a cnn3d trained on them for 20 epochs."""
    pytest.importorskip("torch")
    pytest.importorskip("captum")
    from brainmri.data.synthetic3d import write_demo_volumes

    root = tmp_path_factory.mktemp("cnn3d")
    data = write_demo_volumes(root / "data", n=20, size=32, n_regions=24, seed=0)
    assert (
        main(
            [
                "train",
                str(data),
                "--method",
                "cnn3d",
                "--params",
                "cnn3d.size=32,cnn3d.epochs=20,cnn3d.batch_size=4,cnn3d.threads=1",
                "--out",
                str(root / "model"),
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
    return data, root / "model"


@pytest.mark.slow
def test_the_cnn3d_input_gradients_rank_the_planted_regions_first(trained_cnn3d, tmp_path):
    data, model = trained_cnn3d
    planted = json.loads((data / ".regions" / "planted_regions.json").read_text())["planted_regions"]
    results = run_region_search(
        data, RegionSearchConfig(model=str(model), population=8, generations=4), tmp_path / "out", device="cpu"
    )
    assert results["config"]["attribution"] == "gradient"
    assert results["attribution"].startswith(f"density of the gradient maps of {model} (cnn3d)")
    ranked = json.loads((tmp_path / "out" / "regions.json").read_text())
    by_attribution = [r["region"] for r in sorted(ranked, key=lambda r: -r["attribution"])]
    assert len(set(by_attribution[:3]) & set(planted)) / len(planted) >= 0.8  # the network's ranking alone
    assert results["planted"]["recovered_top"] >= 0.8  # the regions.json order: the mask, then that ranking
    assert results["accuracy"]["mask"] >= results["accuracy"]["whole_brain"] - 0.05
    rest = [r["attribution"] for r in ranked if not r["selected"]]
    assert rest == sorted(rest, reverse=True)


@pytest.mark.slow
def test_grad_cam_can_still_rank_the_regions_and_the_choice_is_recorded(trained_cnn3d, tmp_path, capsys):
    data, model = trained_cnn3d
    out = tmp_path / "out"
    assert (
        main(
            [
                "regions",
                str(data),
                "--model",
                str(model),
                "--attribution",
                "gradcam",
                "--device",
                "cpu",
                "--out",
                str(out),
                "--population",
                "6",
                "--generations",
                "1",
                "-q",
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["attribution"] == "gradcam" and "gradcam maps of" in results["attribution"]
    assert all(r["attribution"] >= 0 for r in json.loads((out / "regions.json").read_text()))  # Grad-CAM is >= 0
    assert "among the top 3 ranked" in capsys.readouterr().out


def test_a_bundle_that_is_not_a_volume_network_is_refused(volume_source, demo_source, tmp_path):
    model = tmp_path / "model"
    assert (
        main(
            [
                "train",
                str(demo_source),
                "--method",
                "glcm-svm",
                "--out",
                str(model),
                "--no-cache",
                "--no-validation",
                "--jobs",
                "1",
                "-q",
            ]
        )
        == 0
    )
    with pytest.raises(ConfigError, match=r"is a glcm-svm bundle; the attribution ranking needs a network on volumes"):
        run_region_search(volume_source, RegionSearchConfig(model=str(model)), tmp_path / "out")


def test_volumes_that_cannot_be_used_are_skipped_with_their_reason(volume_source, tmp_path, caplog):
    import shutil

    data = tmp_path / "data"
    shutil.copytree(volume_source, data)
    first = next(iter(sorted((data / "control").glob("*.nii.gz"))))
    affine = nib.load(first).affine
    nib.save(nib.Nifti1Image(np.zeros((16, 16, 16), np.float32), affine), data / "control" / "zero.nii.gz")
    nib.save(nib.Nifti1Image(np.ones((12, 16, 16), np.float32), affine), data / "control" / "other-grid.nii.gz")
    results = run_region_search(data, RegionSearchConfig(n_regions=12, population=6, generations=1), tmp_path / "o")
    reasons = {Path(s["path"]).name: s["reason"] for s in results["skipped"]}
    assert "every voxel of this volume is 0" in reasons["zero.nii.gz"]
    assert "on another voxel grid ((12, 16, 16)) than the first volume ((16, 16, 16))" in reasons["other-grid.nii.gz"]
    assert results["n_volumes"] == 12 and "skipped" in caplog.text


def test_an_atlas_of_one_region_says_so_and_blames_no_setting_the_user_never_gave(volume_source, tmp_path, capsys):
    # Issue 20: an atlas of one region was refused for "--mutation ... got 1.0", which the user never gave.
    image = nib.load(volume_source / ".regions" / "atlas.nii.gz")
    one = (np.asarray(image.dataobj) > 0).astype(np.int16)
    nib.save(nib.Nifti1Image(one, image.affine), tmp_path / "one.nii.gz")
    code = main(
        ["regions", str(volume_source), "--atlas", str(tmp_path / "one.nii.gz"), "--out", str(tmp_path / "o"), "-q"]
    )
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err and "--mutation" not in err
    assert "a region search needs at least 2 regions to choose among, the atlas has 1" in err


def test_a_foreign_results_json_is_never_overwritten(volume_source, tmp_path, capsys, listing):
    # Issue 20: one marker file (results.json) was enough for regions --out to overwrite regions.csv and the rest.
    out = tmp_path / "o"
    out.mkdir()
    (out / "results.json").write_text('{"mine": true}')
    (out / "regions.csv").write_text("a,b\n")
    before = listing(out)
    assert main(["regions", str(volume_source), "--out", str(out), *FAST, "-q"]) == 2
    assert "holds regions.csv, results.json but no brainmri run.json" in capsys.readouterr().err
    assert listing(out) == before
