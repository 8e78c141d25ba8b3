"""Sources: a manifest's source column or sources inferred from the files; leave-source-out folds that say what they
cannot score."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from brainmri.data.audit import analyse
from brainmri.data.dataset import load_dataset
from brainmri.data.preprocess import Preprocess
from brainmri.data.synthetic import synthetic_slice
from brainmri.errors import DataError
from brainmri.evaluation.shortcuts import measure_files
from brainmri.evaluation.sources import format_sources, infer_sources
from brainmri.runs.benchmark import run_benchmark
from brainmri.runs.config import BenchmarkConfig

# Three sources with their own export; "pituitary" lives in source "c" only.
PLAN = {"a": ("glioma", "notumor"), "b": ("glioma", "notumor"), "c": ("glioma", "notumor", "pituitary")}
EXPORT = {"a": ("png", "L"), "b": ("jpg", "RGB"), "c": ("jpg", "L")}


def _write(root, n=10, seed=0, manifest=True):
    rng = np.random.default_rng(seed)
    rows = []
    for source, classes in PLAN.items():
        fmt, mode = EXPORT[source]
        for label in classes:
            (root / source / label).mkdir(parents=True, exist_ok=True)
            for k in range(n):
                image = Image.fromarray((synthetic_slice(label, rng, 64) * 255).astype(np.uint8)).convert(mode)
                rel = f"{source}/{label}/{k:02d}.{fmt}"
                image.save(root / rel, **({"quality": 60} if fmt == "jpg" else {}))
                rows.append({"path": rel, "label": label, "source": source})
    if manifest:
        with open(root / "data.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=["path", "label", "source"])
            writer.writeheader()
            writer.writerows(rows)
    return root / "data.csv", rows


def _one_export(root, n, seed):
    """A folder of two classes, every image written the same way (one source)."""
    rng = np.random.default_rng(seed)
    for label in ("glioma", "notumor"):
        (root / label).mkdir(parents=True)
        for k in range(n):
            Image.fromarray((synthetic_slice(label, rng, 64) * 255).astype(np.uint8)).save(root / label / f"{k}.png")
    return root


def test_a_manifest_source_column_is_read(tmp_path):
    csv_path, rows = _write(tmp_path / "d", n=2)
    ds = load_dataset(csv_path)
    assert ds.has_sources and sorted({it.source for it in ds.items}) == ["a", "b", "c"]


def test_leave_source_out_holds_out_each_source_and_says_what_it_cannot_score(tmp_path):
    csv_path, _ = _write(tmp_path / "d")
    config = BenchmarkConfig(
        data=str(csv_path), methods=("rf",), grouping="source", n_boot=20, preprocess=Preprocess(size=64)
    )
    results = run_benchmark(config, tmp_path / "out", n_jobs=1, cache_dir=None)
    protocol = results["protocol"]
    assert protocol["grouping"] == "source" and protocol["sources"]["origin"] == "manifest"
    folds = [f["fold"] for f in results["methods"]["rf"]["per_fold"]]
    assert folds == ["source a", "source b", "source c"]
    # pituitary is in source c only: holding c out leaves no pituitary to train on, so its 10 images are not scored
    assert any(
        "held-out source c: class(es) pituitary" in n and "10 test items left out" in n for n in protocol["notes"]
    )
    predictions = list(csv.DictReader((tmp_path / "out/predictions.csv").read_text().splitlines()))
    assert {p["fold"] for p in predictions} == set(folds)
    assert not any(p["label"] == "pituitary" for p in predictions)
    assert len(predictions) == 60  # every glioma and notumor image, each scored once, from the other sources
    assert json.loads((tmp_path / "out/results.json").read_text())["protocol"]["folds"] == 3
    # the OOD flag, per held-out source: what share of the wrong calls it catches, recomputed from predictions.csv
    from brainmri.robust.ood import FLAG_QUANTILE

    ood = results["methods"]["rf"]["ood"]
    assert list(ood["per_fold"]) == folds
    for entry in results["methods"]["rf"]["per_fold"]:
        assert ood["per_fold"][entry["fold"]]["accuracy"] == pytest.approx(entry["accuracy"], abs=1e-6)
    wrong = [p for p in predictions if p["predicted"] != p["label"]]
    if wrong:
        caught = sum(float(p["ood_score"]) > FLAG_QUANTILE for p in wrong) / len(wrong)
        assert ood["wrong_flagged"] == pytest.approx(caught, abs=1e-6)
    kept = [p for p in predictions if float(p["ood_score"]) <= FLAG_QUANTILE]
    assert ood["coverage_unflagged"] == pytest.approx(len(kept) / len(predictions), abs=1e-6)
    # calibration on each held-out source, and the accuracy kept when abstaining on the least like training
    for entry in results["methods"]["rf"]["per_fold"]:
        assert ood["per_fold"][entry["fold"]]["ece"] == pytest.approx(entry["ece"], abs=1e-4)
    curve = ood["risk_coverage"]["ood_score"]
    assert curve["coverage"][-1] == 1.0 and curve["accuracy"][-1] == pytest.approx(1 - len(wrong) / 60, abs=1e-4)
    half = sorted(predictions, key=lambda p: float(p["ood_score"]))[:30]
    assert curve["accuracy"][4] == pytest.approx(sum(p["predicted"] == p["label"] for p in half) / 30, abs=1e-4)
    from brainmri.report.terminal import format_results

    ece = ", ".join(f"{fold} {ood['per_fold'][fold]['ece']:.3f}" for fold in folds)
    assert f"ECE on each held-out source (calibration under shift): {ece}" in format_results(results)


def test_one_source_is_refused_with_what_to_do(tmp_path):
    root = _one_export(tmp_path / "d", n=12, seed=0)
    config = BenchmarkConfig(
        data=str(root), methods=("rf",), grouping="source", n_boot=20, preprocess=Preprocess(size=64)
    )
    with pytest.raises(DataError, match="one source"):
        run_benchmark(config, tmp_path / "out", n_jobs=1, cache_dir=None)


def test_sources_are_inferred_from_how_the_files_were_made(tmp_path):
    _write(tmp_path / "d", n=12, manifest=False)
    # a folder of class folders per source would be read as classes; list them through a manifest without sources
    rows = [
        {"path": str(p.relative_to(tmp_path / "d")), "label": p.parent.name}
        for p in sorted((tmp_path / "d").rglob("*.*"))
        if p.suffix in (".png", ".jpg")
    ]
    with open(tmp_path / "d/plain.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", "label"])
        writer.writeheader()
        writer.writerows(rows)
    analysis = analyse(load_dataset(tmp_path / "d/plain.csv"), n_jobs=1)
    props = measure_files([it.path for it in analysis.dataset.items], n_jobs=1)
    sources, report = infer_sources(props, analysis.dataset.labels.astype(str))
    truth = np.array([analysis.dataset.relpath(it).split("/")[0] for it in analysis.dataset.items])
    assert report["n_sources"] == 3
    # each inferred source is one true source, whole
    for s in range(3):
        assert len(set(truth[sources == s].tolist())) == 1
    assert report["confidence"]["mean_posterior"] > 0.9
    assert report["single_source_classes"] == {"pituitary": int(sources[truth == "c"][0])}
    assert "a test on another source cannot score it" in "\n".join(format_sources(report))


def test_a_collection_made_one_way_is_one_source(tmp_path):
    root = _one_export(tmp_path / "d", n=30, seed=1)
    analysis = analyse(load_dataset(root), n_jobs=1)
    props = measure_files([it.path for it in analysis.dataset.items], n_jobs=1)
    _, report = infer_sources(props, analysis.dataset.labels.astype(str))
    assert report["n_sources"] == 1 and report["single_source_classes"] == {}


def test_a_copy_in_another_source_is_left_out_of_training(tmp_path):
    from brainmri.data.splits import source_splits

    csv_path, rows = _write(tmp_path / "d", n=4)
    # b/glioma/copy.png is a copy of a/glioma/00.png: trained on while a is tested, it would leak
    Image.open(tmp_path / "d/a/glioma/00.png").save(tmp_path / "d/b/glioma/copy.png")
    with open(csv_path, "a", newline="") as f:
        f.write("b/glioma/copy.png,glioma,b\n")
    analysis = analyse(load_dataset(csv_path), n_jobs=1)
    ds = analysis.dataset
    names = ["a", "b", "c"]
    sources = np.array([names.index(it.source) for it in ds.items])
    splits, notes = source_splits(analysis, sources, names)
    copy = next(k for k, it in enumerate(ds.items) if it.path.name == "copy.png")
    held_a = next(s for s in splits if s.name == "source a")
    assert copy not in held_a.train and held_a.dropped["training copies of test items"] >= 1
    assert any(n.startswith("held-out source a:") and "left out of training" in n for n in notes)
    assert copy in next(s for s in splits if s.name == "source c").train


def test_a_class_with_one_group_in_the_other_sources_is_not_trained_on(tmp_path):
    from brainmri.data.splits import source_splits

    csv_path, _ = _write(tmp_path / "d", n=6)
    # source c's pituitary images are all copies of one image: one group, too few to train on when b is held out
    rows = [line for line in csv_path.read_text().splitlines() if "/pituitary/" not in line]
    for k in range(6):
        Image.open(tmp_path / "d/c/glioma/00.jpg").save(tmp_path / f"d/c/pituitary/same{k}.jpg")
        rows.append(f"c/pituitary/same{k}.jpg,pituitary,c")
    csv_path.write_text("\n".join(rows) + "\n")
    analysis = analyse(load_dataset(csv_path), n_jobs=1)
    names = ["a", "b", "c"]
    sources = np.array([names.index(it.source) for it in analysis.dataset.items])
    splits, notes = source_splits(analysis, sources, names)
    labels = analysis.dataset.labels.astype(str)
    held_a = next(s for s in splits if s.name == "source a")
    assert "pituitary" not in set(labels[held_a.train].tolist())
    assert any("held-out source a: class(es) pituitary have fewer than 2 independent groups" in n for n in notes)
