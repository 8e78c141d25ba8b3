"""``--extra-data``: a second collection added to the training data only."""

import csv
import json
import shutil

import pytest

from brainmri.cli import main
from brainmri.errors import ConfigError
from brainmri.runs.config import BenchmarkConfig

COMMON = ["--methods", "rf", "--cv", "2", "--n-boot", "20", "--size", "48", "--jobs", "1", "--no-cache", "-q"]


@pytest.fixture(scope="module")
def with_extra(demo_source, copies_elsewhere, tmp_path_factory):
    out = tmp_path_factory.mktemp("extra") / "out"
    assert main(["benchmark", str(demo_source), *COMMON, "--extra-data", str(copies_elsewhere), "--out", str(out)]) == 0
    return json.loads((out / "results.json").read_text()), out


def test_extra_items_train_every_fold_and_copies_of_the_data_are_dropped(with_extra):
    results, _ = with_extra
    extra = results["dataset"]["extra_data"]
    # copies_elsewhere: 3 fresh images per class, and 4 copies of demo images (each tested in some fold).
    assert (extra["n_items"], extra["n_used"]) == (16, 12)
    assert extra["dropped_copies"] == {"glioma": 1, "notumor": 2, "pituitary": 1}
    assert extra["counts"] == {"glioma": 3, "meningioma": 3, "notumor": 3, "pituitary": 3}
    assert {d["path"] for d in extra["dropped"]} == {
        "EXTRA/glioma/copy_of_glioma_0000.jpg",
        "EXTRA/notumor/copy_of_notumor_0001.jpg",
        "EXTRA/notumor/copy_of_notumor_0002.jpg",
        "EXTRA/pituitary/copy_of_pituitary_0003.png",
    }
    folds = results["methods"]["rf"]["per_fold"]
    assert [f["n_train"] for f in folds] == [24 - f["n_test"] + 12 for f in folds]
    assert any("extra training data: 12 of 16 items" in note for note in results["protocol"]["notes"])


def test_extra_items_are_never_tested(with_extra):
    _, out = with_extra
    with open(out / "predictions.csv") as fh:
        paths = [row["path"] for row in csv.DictReader(fh)]
    assert len(paths) == 24 and not any(p.startswith("EXTRA/") for p in paths)


def test_extra_classes_that_are_not_training_classes_are_refused(demo_source, tmp_path, error_line):
    other = tmp_path / "other"
    shutil.copytree(demo_source / "glioma", other / "tumour")
    shutil.copytree(demo_source / "notumor", other / "no")
    args = ["benchmark", str(demo_source), *COMMON, "--extra-data", str(other), "--out", str(tmp_path / "o")]
    assert main(args) == 2
    assert error_line("benchmark").endswith(
        f"--extra-data {other}: class(es) no, tumour are not classes of the training data (glioma, meningioma, "
        "notumor, pituitary); map them with --extra-label-map no=<training class>"
    )
    assert main([*args, "--extra-label-map", "tumour=glioma"]) == 2
    assert "--extra-label-map leaves --extra-data class(es) no unmapped" in error_line("benchmark")
    # Mapped, the classes pass; but these are copies of DATA's images.
    assert main([*args, "--extra-label-map", "tumour=glioma,no=notumor"]) == 2
    assert error_line("benchmark").endswith(
        "all 12 readable items copy an image of the data, so none is left to add "
        "to the training data; use another collection"
    )


def test_an_extra_label_map_without_extra_data_is_refused():
    with pytest.raises(ConfigError, match="--extra-label-map only applies with --extra-data"):
        BenchmarkConfig(data="d", methods=("rf",), extra_label_map={"a": "b"})


def test_train_adds_the_extra_items_and_records_them_in_the_bundle(demo_source, copies_elsewhere, tmp_path, capsys):
    out = tmp_path / "model"
    assert (
        main(
            [
                "train",
                str(demo_source),
                "--method",
                "ovo-svm",
                "--size",
                "48",
                "--no-cache",
                "--jobs",
                "1",
                "--no-validation",
                "--extra-data",
                str(copies_elsewhere),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    extra = json.loads((out / "manifest.json").read_text())["training_data"]["extra_data"]
    assert (extra["n_items"], extra["n_used"]) == (16, 12)
    assert "extra training data: 12 of 16 items" in capsys.readouterr().err


def test_source_balanced_sampling_trains_on_data_and_extra_data_and_needs_both(
    demo_source, copies_elsewhere, tmp_path, error_line
):
    pytest.importorskip("torch")

    settings = "ayadi-cnn.size=32,ayadi-cnn.epochs=1,ayadi-cnn.batch_size=8,ayadi-cnn.sampling=source"
    base = ["train", str(demo_source), "--method", "ayadi-cnn", "--params", settings, "--device", "cpu"]
    base += ["--threads", "1", "--jobs", "1", "--no-cache", "-q"]
    out = tmp_path / "model"
    assert main([*base, "--extra-data", str(copies_elsewhere), "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["method"]["params"]["sampling"] == "source"
    assert set(manifest["method"]["fitted"]["sampled_sources"]) == {"data", "extra:other"}
    assert main([*base, "--out", str(tmp_path / "alone")]) == 2
    assert "sampling=source needs training items from at least two sources, got one source" in error_line("train")
    assert not (tmp_path / "alone").exists()
