import csv
import json

import numpy as np
import pytest

from brainmri.data.labels import parse_label_map
from brainmri.data.preprocess import Preprocess
from brainmri.errors import ConfigError, DataError
from brainmri.models.validation import INNER_FOLDS
from brainmri.report.terminal import format_results
from brainmri.runs import benchmark as benchmark_module
from brainmri.runs import summary as summary_module
from brainmri.runs import unit as unit_module
from brainmri.runs.benchmark import run_benchmark
from brainmri.runs.config import BenchmarkConfig

PRE = Preprocess(size=48)
METRIC_NAMES = {
    "accuracy",
    "balanced_accuracy",
    "macro_f1",
    "auc",
    "sensitivity",
    "specificity",
    "precision",
    "brier",
    "ece",
}


def config(data, **kw):
    base = dict(data=str(data), methods=("glcm-svm", "rf"), cv=3, n_boot=50, preprocess=PRE)
    return BenchmarkConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def cv_run(tmp_path_factory):
    from brainmri.data.synthetic import write_demo_data

    root = tmp_path_factory.mktemp("bench")
    data = write_demo_data(root / "data", n=9, seed=5, size=64)
    out = root / "out"
    results = run_benchmark(config(data), out, n_jobs=1, cache_dir=root / "cache")
    return data, out, results


def test_results_have_the_documented_shape(cv_run):
    data, out, results = cv_run
    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["methods"].keys() == results["methods"].keys() == {"glcm-svm", "rf"}
    assert on_disk["protocol"]["kind"] == "cv" and on_disk["protocol"]["folds"] == 3
    assert on_disk["protocol"]["grouping"] == "duplicates"
    assert any("subject ids are absent" in n for n in on_disk["protocol"]["notes"])
    assert on_disk["dataset"]["n_items"] == 36
    for entry in on_disk["methods"].values():
        assert set(entry["metrics"]) == METRIC_NAMES
        for value in entry["metrics"].values():
            assert value["ci_low"] <= value["value"] <= value["ci_high"]
        assert set(entry["per_class"]) == {"glioma", "meningioma", "notumor", "pituitary"}
        assert np.sum(entry["confusion"]["matrix"]) == 36
        assert len(entry["per_fold"]) == 3 and entry["timing_s"]["total"] > 0
    (comparison,) = on_disk["comparisons"]
    assert {comparison["a"], comparison["b"]} == {"glcm-svm", "rf"}
    assert comparison["t_test"]["df"] == 2 and "p_adjusted" in comparison
    assert comparison["decided_by"] == "t_test" and comparison["mcnemar"]["p_value"] <= 1
    assert on_disk["config"]["seed"] == 0 and on_disk["config"]["preprocess"]["size"] == 48
    timing = on_disk["timing_s"]  # where this run's time went, up to the writing of the outputs
    assert list(timing) == ["reading", "features", "methods", "summary", "total"]
    assert timing["total"] >= timing["methods"] >= sum(e["timing_s"]["fit"] for e in on_disk["methods"].values())


def test_every_prediction_is_saved(cv_run):
    data, out, results = cv_run
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 36
    assert {r["fold"] for r in rows} == {"fold0", "fold1", "fold2"}
    # every item tested exactly once per method, paths relative to DATA
    assert len({(r["method"], r["path"]) for r in rows}) == 72
    assert all(not r["path"].startswith("/") for r in rows)
    probs = np.array([[float(r[f"p_{c}"]) for c in ("glioma", "meningioma", "notumor", "pituitary")] for r in rows])
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    # accuracy recomputed from the CSV equals the reported one
    rf = [r for r in rows if r["method"] == "rf"]
    acc = np.mean([r["label"] == r["predicted"] for r in rf])
    assert acc == pytest.approx(results["methods"]["rf"]["metrics"]["accuracy"]["value"])
    assert (out / "report.html").read_text().count("data:image/png;base64") >= 3
    figures = {p.name for p in (out / "figures").glob("*.png")}
    explained = {
        f"explanation_{m}_{k}.png" for m, e in results["methods"].items() for k in range(len(e["explanations"]))
    }
    assert (
        explained <= figures and len(figures - explained) == 1 + 4 * 2
    )  # comparison, confusion + ROC + reliability + risk-coverage each


def test_rerun_resumes_without_refitting(cv_run, monkeypatch):
    data, out, results = cv_run

    def refit(*args, **kwargs):
        raise AssertionError("a finished unit was trained again")

    monkeypatch.setattr(benchmark_module, "run_unit", refit)
    again = run_benchmark(config(data), out, n_jobs=1, cache_dir=out.parent / "cache")
    for name in results["methods"]:
        assert again["methods"][name]["metrics"] == results["methods"][name]["metrics"]


def test_interrupted_run_continues_from_finished_units(cv_run, tmp_path):
    import shutil

    data, out, results = cv_run
    partial = tmp_path / "partial"
    shutil.copytree(out, partial)
    shutil.rmtree(partial / "units" / "rf")  # as if interrupted before the rf units
    (partial / "results.json").unlink()
    again = run_benchmark(config(data), partial, n_jobs=1, cache_dir=out.parent / "cache")
    assert again["methods"]["rf"]["metrics"] == results["methods"]["rf"]["metrics"]


def test_other_arguments_in_the_same_folder_are_refused(cv_run):
    data, out, _ = cv_run
    with pytest.raises(
        ConfigError, match=r"holds a benchmark run with other arguments; choose another --out or add --restart"
    ):
        run_benchmark(config(data, seed=1), out, n_jobs=1)


def test_format_results_shows_every_method(cv_run):
    text = format_results(cv_run[2])
    assert "glcm-svm" in text and "rf" in text and "note: subject ids are absent" in text


def test_official_split_reports_deduplicated_accuracy(leaky_split, tmp_path):
    results = run_benchmark(config(leaky_split, split="official", methods=("rf",)), tmp_path / "o", n_jobs=1)
    entry = results["methods"]["rf"]
    assert entry["n_test"] == 10 and entry["n_test_deduplicated"] == 8
    assert set(entry["metrics_deduplicated"]) == METRIC_NAMES
    assert results["audit"]["cross_split_leaks"] == 2


def test_the_paired_test_is_repeated_without_the_test_duplicates(leaky_split, tmp_path):
    out = tmp_path / "o"
    results = run_benchmark(config(leaky_split, split="official", methods=("rf", "glcm-svm")), out, n_jobs=1)
    (full,), (dedup,) = results["comparisons"], results["comparisons_deduplicated"]
    assert (dedup["a"], dedup["b"]) == (full["a"], full["b"]) == ("rf", "glcm-svm")
    assert dedup["mcnemar"]["n01"] + dedup["mcnemar"]["n10"] <= full["mcnemar"]["n01"] + full["mcnemar"]["n10"]
    text = format_results(results)
    assert "on the test items that do not duplicate a training item (McNemar, Holm-adjusted): rf vs glcm-svm" in text
    assert "<h3>Without the test items that duplicate a training item</h3>" in (out / "report.html").read_text()


def test_a_paired_test_on_part_of_the_test_set_counts_only_its_items():
    predictions, methods = _two_methods([30])  # B wrong on items 0-5 and 29
    (row,) = summary_module.comparisons(predictions, methods, keep=np.arange(6, 30))
    assert (row["mcnemar"]["n01"], row["mcnemar"]["n10"]) == (1, 0) and row["significant"] is False
    (whole,) = summary_module.comparisons(predictions, methods)
    assert (whole["mcnemar"]["n01"], whole["mcnemar"]["n10"]) == (7, 0)


def test_drop_test_duplicates_counts_per_class(leaky_split, tmp_path):
    results = run_benchmark(
        config(leaky_split, split="official", methods=("rf",), drop_test_duplicates=True), tmp_path / "d", n_jobs=1
    )
    assert results["protocol"]["dropped_duplicates"] == {"glioma": 1, "notumor": 1}
    assert results["methods"]["rf"]["n_test"] == 8


def test_external_validation_with_label_map(leaky_split, demo_source, tmp_path):
    mapping = {"glioma": "tumor", "meningioma": "tumor", "pituitary": "tumor", "notumor": "normal"}
    results = run_benchmark(
        config(leaky_split, methods=("rf",), test_data=str(demo_source), label_map=mapping), tmp_path / "e", n_jobs=1
    )
    assert results["protocol"]["kind"] == "external"
    assert results["dataset"]["classes"] == ["normal", "tumor"]
    assert results["methods"]["rf"]["n_test"] == 24


def test_unseen_test_class_is_an_error(demo_source, tmp_path):
    # Train on two of the classes only, test on all four.
    import shutil

    train = tmp_path / "train"
    for name in ("glioma", "notumor"):
        shutil.copytree(demo_source / name, train / name)
    with pytest.raises(
        DataError,
        match=r"test classes meningioma, pituitary were never seen in training \(training classes: glioma, notumor\); "
        r"map them with --label-map",
    ):
        run_benchmark(config(train, methods=("rf",), test_data=str(demo_source)), tmp_path / "u", n_jobs=1)


def test_label_map_leaving_a_class_unmapped(demo_source, tmp_path):
    with pytest.raises(ConfigError, match=r"--label-map leaves DATA class\(es\) notumor, pituitary unmapped; add them"):
        run_benchmark(
            config(demo_source, label_map={"glioma": "tumor", "meningioma": "tumor"}), tmp_path / "x", n_jobs=1
        )


def test_fold_with_too_few_training_items(demo_source, tmp_path):
    # A 2-image class leaves a single glioma image (one group) in the training part of some fold.
    import shutil

    data = tmp_path / "data"
    shutil.copytree(demo_source, data)
    for extra in sorted((data / "glioma").glob("*.png"))[2:]:
        extra.unlink()
    with pytest.raises(
        DataError,
        match=r"fold\d: class\(es\) 'glioma' \(1\) have fewer than 2 independent groups of "
        r"training images \(subjects or duplicate clusters\), too few for grouped inner",
    ):
        run_benchmark(config(data, cv=2), tmp_path / "y", n_jobs=1)


@pytest.mark.parametrize(
    "text, expected",
    [("glioma=tumor, notumor=no", {"glioma": "tumor", "notumor": "no"}), (None, None)],
)
def test_parse_label_map_inline(text, expected):
    assert parse_label_map(text) == expected


def test_parse_label_map_file(tmp_path):
    path = tmp_path / "map.json"
    path.write_text('{"glioma": "tumor"}')
    assert parse_label_map(str(path)) == {"glioma": "tumor"}


@pytest.mark.parametrize(
    "text, message",
    [
        ("glioma:tumor", r"'glioma:tumor' is not of the form old=new"),
        ("glioma=", r"'glioma=' has an empty class name"),
        ("missing.json", r"--label-map missing.json: file not found"),
        # Issue 20: a class mapped twice silently took the last.
        (
            "glioma=tumor,glioma=normal",
            r"--label-map: class 'glioma' is mapped twice \(glioma=tumor and "
            r"glioma=normal\); map each class once$",
        ),
    ],
)
def test_parse_label_map_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_label_map(text)


def test_a_key_given_twice_in_a_json_map_or_settings_file_is_refused(tmp_path):
    from brainmri.runs.config import parse_params

    (tmp_path / "map.json").write_text('{"glioma": "tumor", "glioma": "normal"}')
    with pytest.raises(
        ConfigError, match=r"map\.json: key 'glioma' is given twice \('tumor' and 'normal'\); give each once"
    ):
        parse_label_map(str(tmp_path / "map.json"))
    (tmp_path / "p.json").write_text('{"rf": {"n_estimators": 5, "n_estimators": 9}}')
    with pytest.raises(ConfigError, match=r"p\.json: key 'n_estimators' is given twice"):
        parse_params(str(tmp_path / "p.json"))
    with pytest.raises(ConfigError, match=r"--params: rf.n_estimators is given twice; give each setting once"):
        parse_params("rf.n_estimators=5,rf.n_estimators=9")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"split": "random"}, r"--split must be one of cv, official, got 'random'"),
        ({"drop_test_duplicates": True}, r"--drop-test-duplicates only applies to --split official"),
        ({"split": "official", "test_data": "x"}, r"do not combine it with --split official"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        config("data", **kwargs)


def test_same_seed_same_numbers(cv_run, tmp_path):
    data, _, _ = cv_run
    a = run_benchmark(config(data, methods=("glcm-svm",), seed=7), tmp_path / "a", n_jobs=1)
    b = run_benchmark(config(data, methods=("glcm-svm",), seed=7), tmp_path / "b", n_jobs=2)
    for results in (a, b):
        del results["methods"]["glcm-svm"]["timing_s"]
        del results["methods"]["glcm-svm"]["cost"]["fit_s"], results["methods"]["glcm-svm"]["cost"]["inference"]
    assert a["methods"] == b["methods"] and a["comparisons"] == b["comparisons"]


def test_naive_grouping_is_flagged(cv_run, tmp_path):
    data, _, _ = cv_run
    results = run_benchmark(config(data, methods=("rf",), grouping="none"), tmp_path / "n", n_jobs=1)
    assert results["protocol"]["grouping"] == "none" and results["protocol"]["n_groups"] == 36
    assert any(n.startswith("grouping none: items are split one by one") for n in results["protocol"]["notes"])


# --- grouped inner validation -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def duplicated_run(tmp_path_factory):
    """A 3-fold benchmark of glcm-svm and rf on demo data where 16 images have a planted copy.

    Half of the copies are exact, half JPEG re-encodes; ``clusters`` maps each file name to the
    name of the image it copies. Every method built during the run is kept, with its training paths.
    """
    import dataclasses
    import shutil

    from PIL import Image

    from brainmri.data.synthetic import write_demo_data

    root = tmp_path_factory.mktemp("dups")
    data = write_demo_data(root / "data", n=9, seed=5, size=64)
    clusters = {p.name: p.name for p in data.rglob("*.png")}
    for cls_dir in sorted(p for p in data.iterdir() if p.is_dir()):
        for k, src in enumerate(sorted(cls_dir.glob("*.png"))[:4]):
            if k % 2:
                with Image.open(src) as im:
                    im.save(cls_dir / f"copy_{src.stem}.jpg", quality=90)
                clusters[f"copy_{src.stem}.jpg"] = src.name
            else:
                shutil.copy(src, cls_dir / f"copy_{src.name}")
                clusters[f"copy_{src.name}"] = src.name
    built = []
    real_get_method = unit_module.get_method

    def spying_get_method(name):
        spec = real_get_method(name)

        def builder(**kwargs):
            model = spec.builder(**kwargs)
            fit = model.fit

            def recording_fit(X, y, groups=None, sources=None):
                built.append((name, np.asarray(X), model))
                return fit(X, y, groups=groups, sources=sources)

            model.fit = recording_fit
            return model

        return dataclasses.replace(spec, builder=builder)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(unit_module, "get_method", spying_get_method)
        results = run_benchmark(config(data), root / "out", n_jobs=1, cache_dir=root / "cache")
    return data, root / "out", results, clusters, built


def _cluster_of(paths, clusters) -> np.ndarray:
    return np.array([clusters[str(p).rsplit("/", 1)[-1]] for p in paths])


def test_inner_validation_never_shares_a_cluster_with_inner_training(duplicated_run):
    _, _, results, clusters, built = duplicated_run
    assert {name for name, _, _ in built} == {"glcm-svm", "rf"} and len(built) == 6  # 2 methods x 3 folds
    for name, X, model in built:
        cluster = _cluster_of(X, clusters)
        assert len(cluster) - len(set(cluster)) >= 4  # copies and originals both in this training set
        used = [("calibration", model[-1].calibrated_.cv)]
        if name == "glcm-svm":
            used.append(("kernel search", model[-1].search_.cv))
        for what, splits in used:
            assert len(splits) == INNER_FOLDS
            for train, valid in splits:
                shared = set(cluster[train]) & set(cluster[valid])
                assert not shared, f"{name} {what}: validation items copy inner training items {sorted(shared)}"
        assert model.params_["inner_cv"] == f"StratifiedGroupKFold over {len(set(cluster))} groups"
    for entry in results["methods"].values():
        assert all(p["inner_cv"].startswith("StratifiedGroupKFold over") for p in entry["params"].values())


def test_benchmark_folds_keep_every_duplicate_cluster_on_one_side(duplicated_run):
    # Read the folds from the run's own outputs: predictions.csv and the saved units.
    data, out, results, clusters, _ = duplicated_run
    with open(out / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    for method in ("glcm-svm", "rf"):
        fold_of = {}
        for row in rows:
            if row["method"] == method:
                fold_of.setdefault(_cluster_of([row["path"]], clusters)[0], set()).add(row["fold"])
        assert len(fold_of) == 36 and sum(len(f) for f in fold_of.values()) == 36, fold_of
        tested = {}
        for unit_file in sorted((out / "units" / method).glob("*.json")):
            unit = json.loads(unit_file.read_text())
            for k in unit["test"]:
                tested.setdefault(k, []).append(unit["fold"])
        assert len(tested) == 52 and all(len(folds) == 1 for folds in tested.values())
    assert results["audit"]["exact_duplicate_clusters"] >= 8


# --- input formats and subject ids --------------------------------------------------------------------------------


def _demo_arrays(demo_source):
    from PIL import Image

    for cls_dir in sorted(p for p in demo_source.iterdir() if p.is_dir()):
        for src in sorted(cls_dir.glob("*.png")):
            with Image.open(src) as im:
                yield cls_dir.name, src.stem, np.asarray(im.convert("L"))


@pytest.mark.parametrize("fmt", ["dicom", "nifti"])
def test_benchmark_on_dicom_and_nifti_input(fmt, demo_source, tmp_path, write_dicom, write_nifti):
    data = tmp_path / fmt
    for label, stem, pixels in _demo_arrays(demo_source):
        if fmt == "dicom":
            write_dicom(data / label / f"{stem}.dcm", pixels.astype(np.uint16) * 16)  # 12 bits stored
        else:
            write_nifti(data / label / f"{stem}.nii.gz", pixels.astype(np.float32)[:, :, None])  # one 2D slice
    results = run_benchmark(config(data, methods=("rf",), cv=2), tmp_path / "out", n_jobs=1)
    entry = results["methods"]["rf"]
    assert results["dataset"]["n_items"] == entry["n_test"] == 24
    assert results["audit"]["n_unreadable"] == 0
    with open(tmp_path / "out" / "predictions.csv", newline="") as fh:
        paths = {row["path"] for row in csv.DictReader(fh)}
    assert len(paths) == 24 and all(p.endswith(".dcm" if fmt == "dicom" else ".nii.gz") for p in paths)
    assert entry["metrics"]["accuracy"]["value"] > 0.5  # 4 classes: chance is 0.25


def test_subject_csv_benchmark_keeps_each_subject_on_one_side(tmp_path):
    from brainmri.data.synthetic import write_demo_data

    data = write_demo_data(tmp_path / "images", n=12, seed=2, size=64)
    subject_of = {}
    lines = ["path,label,subject"]
    for path in sorted(data.rglob("*.png")):
        k = int(path.stem.rsplit("_", 1)[-1])
        subject_of[path.relative_to(data).as_posix()] = subject = f"{path.parent.name}-s{k // 2}"  # 2 slices each
        lines.append(f"{path.relative_to(data).as_posix()},{path.parent.name},{subject}")
    manifest = data / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    results = run_benchmark(config(manifest, methods=("rf",), cv=2), tmp_path / "out", n_jobs=1)
    assert results["protocol"]["grouping"] == "subject" and results["protocol"]["n_groups"] == 24
    with open(tmp_path / "out" / "predictions.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    folds_of_subject = {}
    for row in rows:
        folds_of_subject.setdefault(subject_of[row["path"]], set()).add(row["fold"])
    assert len(folds_of_subject) == 24 and all(len(folds) == 1 for folds in folds_of_subject.values())
    # The inner folds are grouped by the same subjects: one group per training subject.
    for fold in results["methods"]["rf"]["per_fold"]:
        n_subjects = fold["n_train"] // 2
        assert results["methods"]["rf"]["params"][fold["fold"]]["inner_cv"].startswith(
            f"StratifiedGroupKFold over {n_subjects} groups"
        )


# --- significance -------------------------------------------------------------------------------------------------


def _two_methods(fold_sizes):
    """A right on all 30 items; B wrong on 6, 0 and 1 items of three folds of 10 (accuracies .4, 1, .9)."""
    wrong_b = np.r_[np.arange(6), [29]]
    classes = ["x", "y"]
    proba_a = np.tile([1.0, 0.0], (30, 1))
    proba_b = proba_a.copy()
    proba_b[wrong_b] = [0.0, 1.0]
    folds = np.repeat([f"fold{f}" for f in range(len(fold_sizes))], fold_sizes)
    predictions = {
        m: {"index": np.arange(30), "fold": list(folds), "proba": p, "y_true": ["x"] * 30, "classes": classes}
        for m, p in (("a", proba_a), ("b", proba_b))
    }
    accuracy = {"a": [1.0] * 3, "b": [0.4, 1.0, 0.9]} if len(fold_sizes) == 3 else {"a": [1.0], "b": [23 / 30]}
    methods = {
        m: {
            "per_fold": [
                {"fold": f"fold{f}", "n_train": 30 - n, "n_test": n, "accuracy": acc}
                for f, (n, acc) in enumerate(zip(fold_sizes, accuracy[m], strict=True))
            ]
        }
        for m in ("a", "b")
    }
    return predictions, methods


def test_cv_significance_comes_from_the_corrected_t_test():
    # McNemar: 7 discordant items all going A's way, p = 2 / 2^7 = .0156: "significant".
    # Corrected t-test: d = [.6, 0, .1], mean .2333, variance .10333, r = 10/20: t = .2333 / sqrt((1/3 + 1/2) * .10333)
    # = .795 with 2 df, p = .51: not significant, and that decides in CV.
    (row,) = summary_module.comparisons(*_two_methods([10, 10, 10]))
    assert row["mcnemar"]["p_value"] == pytest.approx(2 / 128)
    assert row["t_test"]["statistic"] == pytest.approx(0.7951, abs=1e-4)
    assert row["decided_by"] == "t_test" and row["p_adjusted"] == pytest.approx(row["t_test"]["p_value"])
    assert row["p_adjusted"] == pytest.approx(0.5100, abs=1e-3) and row["significant"] is False
    text = format_results(
        {
            "methods": {},
            "comparisons": [row],
            "alpha": 0.05,
            "protocol": {"kind": "cv", "folds": 3, "grouping": "duplicates", "notes": []},
        }
    )
    assert "significant differences (corrected resampled t-test over folds, Holm-adjusted p < 0.05): none" in text


def test_single_test_set_significance_comes_from_mcnemar():
    (row,) = summary_module.comparisons(*_two_methods([30]))
    assert row["t_test"] is None and row["decided_by"] == "mcnemar"
    assert row["p_adjusted"] == pytest.approx(2 / 128) and row["significant"] is True
    text = format_results(
        {
            "methods": {},
            "comparisons": [row],
            "alpha": 0.05,
            "protocol": {"kind": "official", "folds": 1, "grouping": "official split", "notes": []},
        }
    )
    assert "significant differences (McNemar, Holm-adjusted p < 0.05): a vs b (p=0.0156)" in text
