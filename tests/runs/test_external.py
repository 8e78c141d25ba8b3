"""External validation (``--test-data``): copies of training images in the test data are found and set apart."""

from __future__ import annotations

import csv
import json
import shutil

import numpy as np
import pytest

from brainmri.cli import main
from brainmri.data.preprocess import Preprocess
from brainmri.errors import ConfigError, DataError
from brainmri.report.terminal import format_results
from brainmri.runs.benchmark import run_benchmark
from brainmri.runs.config import BenchmarkConfig

COPIES = {
    "TEST/glioma/copy_of_glioma_0000.jpg",
    "TEST/notumor/copy_of_notumor_0001.jpg",
    "TEST/notumor/copy_of_notumor_0002.jpg",
    "TEST/pituitary/copy_of_pituitary_0003.png",
}
PER_CLASS = {
    "glioma": {"leaking": 1, "of": 4, "matches": {"glioma": 1}},
    "meningioma": {"leaking": 0, "of": 3, "matches": {}},
    "notumor": {"leaking": 2, "of": 5, "matches": {"notumor": 2}},
    "pituitary": {"leaking": 1, "of": 4, "matches": {"pituitary": 1}},
}


def config(data, other, **kw):
    return BenchmarkConfig(
        data=str(data), methods=("rf",), test_data=str(other), n_boot=50, preprocess=Preprocess(size=48), **kw
    )


def _predictions(out) -> list[dict]:
    with open(out / "predictions.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def external_run(demo_source, copies_elsewhere, tmp_path_factory):
    out = tmp_path_factory.mktemp("external") / "out"
    return out, run_benchmark(config(demo_source, copies_elsewhere), out, n_jobs=1)


def test_copies_are_reported_per_class_in_results_and_audit(external_run):
    out, results = external_run
    on_disk = json.loads((out / "results.json").read_text())
    leaks = on_disk["protocol"]["cross_dataset_leaks"]
    assert leaks["per_class"] == PER_CLASS and leaks["n_leaking"] == 4 and leaks["n_other"] == 16
    assert {f"TEST/{x['other_path']}" for x in leaks["pairs"]} == COPIES
    assert all(x["similarity"] >= 0.9 for x in leaks["pairs"])
    assert json.loads((out / "audit.json").read_text())["cross_dataset_leaks"] == leaks
    assert any("4 of the 16 items of other copy a data image" in n for n in on_disk["protocol"]["notes"])
    assert on_disk["protocol"]["dropped_duplicates"] == {}


def test_metrics_deduplicated_exclude_exactly_the_copies(external_run):
    out, results = external_run
    entry = results["methods"]["rf"]
    assert entry["n_test"] == 16 and entry["n_test_deduplicated"] == 12
    rows = _predictions(out)
    assert {r["path"] for r in rows} >= COPIES
    clean = [r for r in rows if r["path"] not in COPIES]
    accuracy = np.mean([r["label"] == r["predicted"] for r in clean])
    assert entry["metrics_deduplicated"]["accuracy"]["value"] == pytest.approx(accuracy)
    full = np.mean([r["label"] == r["predicted"] for r in rows])
    assert entry["metrics"]["accuracy"]["value"] == pytest.approx(full)


def test_terminal_and_report_show_the_copies(external_run):
    out, results = external_run
    text = format_results(results)
    assert "copies of DATA images in " in text and ": 4 of its 16 items" in text
    assert "  notumor: 2 of 5 (copies of DATA notumor 2)" in text.splitlines()
    assert "accuracy on the test items that do not duplicate a training item:" in text
    assert "  rf: " in text and " on 12 items (full test " in text
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "4 of the 16 external test items copy a training image" in html
    assert "notumor/copy_of_notumor_0001.jpg" in html


def test_drop_test_duplicates_removes_the_copies_from_the_external_test(demo_source, copies_elsewhere, tmp_path):
    results = run_benchmark(config(demo_source, copies_elsewhere, drop_test_duplicates=True), tmp_path / "d", n_jobs=1)
    assert results["protocol"]["dropped_duplicates"] == {"glioma": 1, "notumor": 2, "pituitary": 1}
    entry = results["methods"]["rf"]
    assert entry["n_test"] == 12 and "metrics_deduplicated" not in entry
    assert not {r["path"] for r in _predictions(tmp_path / "d")} & COPIES


def test_a_test_set_without_copies_reports_none(demo_source, copies_elsewhere, tmp_path):
    other = shutil.copytree(copies_elsewhere, tmp_path / "fresh")
    for copy in other.rglob("copy_of_*"):
        copy.unlink()
    results = run_benchmark(config(demo_source, other), tmp_path / "n", n_jobs=1)
    assert results["protocol"]["cross_dataset_leaks"]["n_leaking"] == 0
    assert "metrics_deduplicated" not in results["methods"]["rf"] and results["methods"]["rf"]["n_test"] == 12
    assert (
        f"copies of DATA images in {other.resolve()}: none among its 12 items" in format_results(results).splitlines()
    )


def test_a_test_set_made_only_of_copies(leaky_split, demo_source, tmp_path):
    # leaky_split holds every demo image, so all 24 test items copy a training image.
    results = run_benchmark(config(leaky_split, demo_source), tmp_path / "a", n_jobs=1)
    assert results["protocol"]["cross_dataset_leaks"]["n_leaking"] == 24
    assert "metrics_deduplicated" not in results["methods"]["rf"]
    assert any(n.startswith("all 24 items of data copy a split image") for n in results["protocol"]["notes"])
    with pytest.raises(
        DataError, match=r"all 24 test items copy a split image, so --drop-test-duplicates leaves no test item"
    ):
        run_benchmark(config(leaky_split, demo_source, drop_test_duplicates=True), tmp_path / "b", n_jobs=1)


@pytest.mark.parametrize(
    "kw, error",
    [
        ({"split": "official", "drop_test_duplicates": True}, None),
        ({"test_data": "x", "drop_test_duplicates": True}, None),
        ({"drop_test_duplicates": True}, r"--drop-test-duplicates only applies to --split official or --test-data"),
    ],
)
def test_drop_test_duplicates_needs_a_fixed_test_set(kw, error):
    if error is None:
        BenchmarkConfig(data="d", methods=("rf",), **kw)
    else:
        with pytest.raises(ConfigError, match=error):
            BenchmarkConfig(data="d", methods=("rf",), **kw)


def test_cli_audit_against_and_benchmark_test_data(demo_source, copies_elsewhere, tmp_path, capsys):
    assert (
        main(["audit", str(demo_source), "--against", str(copies_elsewhere), "--out", str(tmp_path / "a"), "-q"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert f"copies of DATA images in {copies_elsewhere.resolve()}: 4 of its 16 items" in lines
    assert "  pituitary: 1 of 4 (copies of DATA pituitary 1)" in lines
    audit = json.loads((tmp_path / "a/audit.json").read_text())
    assert audit["cross_dataset_leaks"]["per_class"] == PER_CLASS

    argv = [
        "benchmark",
        str(demo_source),
        "--test-data",
        str(copies_elsewhere),
        "--methods",
        "rf",
        "--size",
        "48",
        "--n-boot",
        "20",
        "--no-cache",
        "--jobs",
        "1",
        "--drop-test-duplicates",
        "--out",
        str(tmp_path / "b"),
        "-q",
    ]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "  notumor: 2 of 5 (copies of DATA notumor 2)" in lines
    results = json.loads((tmp_path / "b/results.json").read_text())
    assert results["protocol"]["dropped_duplicates"] == {"glioma": 1, "notumor": 2, "pituitary": 1}


def test_several_test_collections_are_scored_each_on_its_own_by_one_trained_model(
    demo_source, copies_elsewhere, tmp_path, capsys
):
    clean = shutil.copytree(copies_elsewhere, tmp_path / "clean")
    for copy in clean.glob("*/copy_of_*"):
        copy.unlink()
    argv = ["benchmark", str(demo_source), "--test-data", str(copies_elsewhere), str(clean), "--methods", "rf"]
    argv += ["--size", "48", "--n-boot", "20", "--no-cache", "--jobs", "1", "--out", str(tmp_path / "b")]
    assert main(argv) == 0
    said = capsys.readouterr().out
    results = json.loads((tmp_path / "b/results.json").read_text())
    sets = results["protocol"]["test_sets"]
    assert [t["name"] for t in sets] == ["other", "clean"] and [t["n_items"] for t in sets] == [16, 12]
    assert sets[0]["cross_dataset_leaks"]["n_leaking"] == 4 and sets[1]["cross_dataset_leaks"]["n_leaking"] == 0
    assert results["protocol"]["folds"] == 1  # trained once
    rf = results["methods"]["rf"]
    predictions = _predictions(tmp_path / "b")
    for name, n in (("other", 16), ("clean", 12)):
        mine = [p for p in predictions if p["path"].startswith(f"TEST/{name}/")]
        entry = rf["per_test_set"][name]
        assert entry["n_test"] == len(mine) == n
        right = sum(p["predicted"] == p["label"] for p in mine) / n
        assert entry["metrics"]["accuracy"]["value"] == pytest.approx(right, abs=1e-6)
        assert f"rf on {name} ({n} items): accuracy {right:.3f}" in said
    # the collection with copies is also scored without them; the clean one needs no such score
    kept = [p for p in predictions if p["path"].startswith("TEST/other/") and "copy_of_" not in p["path"]]
    dedup = rf["per_test_set"]["other"]["metrics_deduplicated"]["accuracy"]["value"]
    assert dedup == pytest.approx(sum(p["predicted"] == p["label"] for p in kept) / len(kept), abs=1e-6)
    assert "metrics_deduplicated" not in rf["per_test_set"]["clean"]
    assert [d["name"] for d in results["dataset"]["test_data"]] == ["other", "clean"]
    page = (tmp_path / "b/report.html").read_text()
    assert "Per test collection" in page and "Copies of training images in the external test data (other)" in page


@pytest.mark.parametrize(
    "given, stored",
    [(["a"], "a"), (("a", "b"), ("a", "b")), ("a", "a"), (None, None)],
)
def test_one_test_collection_is_stored_as_before_several_as_a_tuple(given, stored):
    cfg = BenchmarkConfig(data="d", methods=("rf",), test_data=given)
    assert cfg.test_data == stored and cfg.test_sets == (
        () if given is None else tuple([stored] if isinstance(stored, str) else stored)
    )


def test_a_test_collection_named_twice_is_refused():
    with pytest.raises(ConfigError, match="--test-data names a collection twice"):
        BenchmarkConfig(data="d", methods=("rf",), test_data=("a", "a"))
