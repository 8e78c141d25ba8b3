import json
import re
import threading
import time

import numpy as np
import pytest

optuna = pytest.importorskip("optuna")

from brainmri.cli import main  # noqa: E402
from brainmri.models.base import GroupedPipeline
from brainmri.models.catalog import get_method
from brainmri.robust.ood import predict_with_ood  # noqa: E402
from brainmri.runs import unit as unit_module  # noqa: E402
from brainmri.runs.config import parse_params  # noqa: E402
from brainmri.tuning import search  # noqa: E402
from brainmri.tuning.results import UNCALIBRATED_NOTE  # noqa: E402

#: Inner folds of the official split's training part (4 independent images per class).
FOLDS = 4
#: Small images, few resamples, one process: each trial of glcm-svm takes a fraction of a second.
FAST = ["--size", "48", "--no-cache", "--n-boot", "20", "--jobs", "1", "-q"]


def tune(data, out, *extra):
    return main(["tune", str(data), "--method", "glcm-svm", "--split", "official", "--out", str(out), *FAST, *extra])


def complete(results, sampler="tpe", fold="official"):
    return [t for t in results["searches"][sampler][fold]["trials"] if t["state"] == "complete"]


@pytest.fixture(scope="module")
def compared(leaky_split_source, tmp_path_factory):
    """Two samplers, three trials each, on the official split of a small dataset with test duplicates."""
    out = tmp_path_factory.mktemp("tune") / "out"
    assert tune(leaky_split_source, out, "--compare", "random,tpe", "--trials", "3") == 0
    return leaky_split_source, out, json.loads((out / "results.json").read_text())


def test_each_sampler_finishes_its_trials_and_the_best_inner_score_is_chosen(compared):
    _, out, results = compared
    for sampler in ("random", "tpe"):
        trials = complete(results, sampler)
        assert [t["number"] for t in trials] == [0, 1, 2]
        best = results["searches"][sampler]["official"]["best"]
        assert best["value"] == max(t["value"] for t in trials)
        assert best["value"] == pytest.approx(np.mean(best["inner_scores"]))
        assert "StratifiedGroupKFold" in best["inner_cv"]
    curve = results["searches"]["tpe"]["official"]["best_so_far"]
    assert len(curve) == 3 and curve == sorted(curve)


def test_classical_trials_are_scored_uncalibrated_and_the_tested_configuration_is_calibrated(compared):
    _, _, results = compared
    assert all(t["uncalibrated"] for t in complete(results, "random") + complete(results, "tpe"))
    assert UNCALIBRATED_NOTE in results["test"]["protocol"]["notes"]
    tested = results["test"]["methods"]["glcm-svm tuned by tpe"]["params"]
    assert tested["calibration"].startswith("isotonic")


def test_the_best_configuration_is_a_params_file_for_train_and_benchmark(compared):
    _, out, results = compared
    params = parse_params(str(out / "best_params.json"))
    assert params == {"glcm-svm": results["searches"]["random"]["official"]["best"]["params"]}
    model = get_method("glcm-svm").build(params=params["glcm-svm"])
    assert model.steps[-1][1].svc_params["kernel"] == params["glcm-svm"]["kernel"]


def test_the_test_results_compare_the_samplers_like_a_benchmark(compared):
    _, out, results = compared
    test = results["test"]
    assert list(test["methods"]) == ["glcm-svm tuned by random", "glcm-svm tuned by tpe"]
    for entry in test["methods"].values():
        assert entry["n_test"] == 10 and entry["n_test_deduplicated"] == 8  # two test images copy training ones
        assert entry["metrics"]["accuracy"]["ci_low"] <= entry["metrics"]["accuracy"]["value"]
    (pair,) = test["comparisons"]
    assert pair["decided_by"] == "mcnemar" and 0 <= pair["p_adjusted"] <= 1
    assert any("no selection on the test set" in note for note in test["protocol"]["notes"])


def test_the_report_shows_the_search_and_the_test(compared):
    _, out, _ = compared
    html = (out / "report.html").read_text()
    for text in (
        "No selection on the test set",
        "best inner score so far",
        "Parameter importance",
        "glcm-svm tuned by tpe",
        "Duplicate inflation",
        "--params best_params.json",
    ):
        assert text in html
    assert (out / "figures" / "best_so_far.png").stat().st_size > 1000
    rows = (out / "trials.csv").read_text().splitlines()
    assert rows[0] == "sampler,fold,trial,state,score,seconds,C,degree,gamma,kernel" and len(rows) == 7


def test_the_test_part_is_predicted_once_after_the_search(leaky_split_source, tmp_path, monkeypatch):
    calls = []  # (what, set of file paths) per prediction, in order
    original = GroupedPipeline.predict_proba

    def spy(self, X):  # the trials' inner validation parts (and the report's occluded arrays, which are no files)
        calls.append(("trial", {str(x) for x in X if not isinstance(x, np.ndarray)}))
        return original(self, X)

    def spy_test(predictor, ood, X):  # the final test: probabilities and out-of-distribution distances together
        calls.append(("test", {str(x) for x in X}))
        return predict_with_ood(predictor, ood, X)

    original_predict = GroupedPipeline.predict

    def spy_predict(self, X):  # trials of a classical method score its uncalibrated predictions
        calls.append(("trial", {str(x) for x in X}))
        return original_predict(self, X)

    monkeypatch.setattr(GroupedPipeline, "predict_proba", spy)
    monkeypatch.setattr(GroupedPipeline, "predict", spy_predict)
    monkeypatch.setattr(unit_module, "predict_with_ood", spy_test)
    assert tune(leaky_split_source, tmp_path / "out", "--trials", "2") == 0
    test_items = {str(p) for p in (leaky_split_source / "Testing").rglob("*.*")}
    touching = [k for k, (_, items) in enumerate(calls) if items & test_items]
    tests = [k for k, (what, _) in enumerate(calls) if what == "test"]
    assert len(tests) == 1 and touching[0] == tests[0]  # the final test is the first call on the test part...
    # ... and the only other ones come after it: the benchmark unit times the fitted model's inference on a sample
    # of the test items (brainmri.evaluation.cost), which the search can no longer see.
    assert all(k > tests[0] and calls[k][1] <= test_items for k in touching[1:])
    assert calls[tests[0]][1] == test_items
    trials = [k for k, (what, items) in enumerate(calls) if what == "trial" and items and not items & test_items]
    assert len(trials) > 2 and max(trials) < tests[0]  # the trials predicted their inner validation parts, before


def test_a_rerun_with_more_trials_continues_the_study(leaky_split_source, tmp_path):
    """With brainmri's ant colony sampler, whose archive comes from the study's trials (the first run's included)."""
    out = tmp_path / "out"
    assert tune(leaky_split_source, out, "--sampler", "aco", "--trials", "2") == 0
    first = complete(json.loads((out / "results.json").read_text()), "aco")
    assert tune(leaky_split_source, out, "--sampler", "aco", "--trials", "4") == 0
    after = complete(json.loads((out / "results.json").read_text()), "aco")
    assert [t["number"] for t in after] == [0, 1, 2, 3]
    assert [t["params"] for t in after[:2]] == [t["params"] for t in first]


def test_an_interrupted_tune_resumes_without_losing_a_trial(leaky_split_source, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    fit = GroupedPipeline.fit
    fits = []

    def interrupted_in_the_third_trial(self, *args, **kwargs):
        fits.append(1)
        if len(fits) == 2 * FOLDS + 1:  # the first inner fold of the third trial
            raise KeyboardInterrupt
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(GroupedPipeline, "fit", interrupted_in_the_third_trial)
    assert tune(leaky_split_source, out, "--trials", "4") == 130
    err = capsys.readouterr().err
    assert err.strip().splitlines() == [
        "brainmri tune: interrupted; rerun the same command to continue from the finished trials"
    ]
    monkeypatch.setattr(GroupedPipeline, "fit", fit)
    assert tune(leaky_split_source, out, "--trials", "4") == 0
    trials = json.loads((out / "results.json").read_text())["searches"]["tpe"]["official"]["trials"]
    assert [t["state"] for t in trials] == ["complete", "complete", "fail", "complete", "complete"]
    # The interrupted configuration ran again, once, and the two finished before the interruption were kept.
    assert [t["params"] for t in trials[3:]].count(trials[2]["params"]) == 1


def test_a_study_of_another_method_or_dataset_is_refused_before_reading(compared, tmp_path, capsys, monkeypatch):
    data, out, _ = compared
    monkeypatch.setattr(search, "plan_benchmark", lambda *a, **k: pytest.fail("the images were read"))
    journal = str(out / "study.journal")
    argv = [
        "tune",
        str(data),
        "--method",
        "rf",
        "--split",
        "official",
        "--storage",
        journal,
        "--study",
        "glcm-svm/random",
        "--trials",
        "1",
        "--out",
        str(tmp_path / "a"),
        *FAST,
    ]
    assert main(argv) == 2
    assert re.search(
        r"--study glcm-svm/random: this study was created for method 'glcm-svm', not 'rf'; give "
        r"another --study name",
        capsys.readouterr().err,
    )
    # the same method on other data
    other = tmp_path / "other"
    import shutil

    shutil.copytree(data, other)
    argv = [
        "tune",
        str(other),
        "--method",
        "glcm-svm",
        "--split",
        "official",
        "--storage",
        journal,
        "--study",
        "glcm-svm/random",
        "--trials",
        "1",
        "--out",
        str(tmp_path / "b"),
        *FAST,
    ]
    assert main(argv) == 2
    assert "this study was created for data" in capsys.readouterr().err


def _space(tmp_path, text):
    path = tmp_path / "space.json"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "extra, message",
    [
        (
            lambda t: ["--sampler", "annealing"],
            r"--sampler 'annealing' is not a sampler; choose one of aco, tpe, cmaes, gp, random, qmc, nsga2",
        ),
        (lambda t: ["--compare", "tpe"], r"--compare needs at least two different samplers"),
        (lambda t: ["--trials", "0"], r"--trials must be a positive integer, got 0"),
        (
            lambda t: ["--space", _space(t, '{"Cee": {"type": "float", "low": 1, "high": 2}}')],
            r"--space .*space.json: glcm-svm has no setting 'Cee'; its settings: kernel, C, gamma, degree",
        ),
        (
            lambda t: ["--space", _space(t, '{"C": {"type": "float", "low": 10, "high": 1}}')],
            r"--space .*: C has an empty range \(low 10 must be below high 1\)",
        ),
        (
            lambda t: ["--space", _space(t, '{"kernel": {"type": "categorical", "choices": []}}')],
            r"--space .*: kernel has no choices",
        ),
        (
            lambda t: ["--space", _space(t, '{"C": {"type": "float", "low": 0, "high": 1, "log": true}}')],
            r"--space .*: C with \"log\": true needs low > 0",
        ),
        (lambda t: ["--space", str(t / "missing.json")], r"--space .*missing.json: file not found"),
        (
            lambda t: ["--out", _space(t, "{}").rsplit("/", 1)[0]],
            r"--out .*: holds space.json but no brainmri run.json; brainmri only writes in folders of its own runs",
        ),
        (lambda t: ["--params", "glcm-svm.C=1"], r"--params glcm-svm.C fixes a setting that the search space varies"),
        (lambda t: ["--params", "rf.n_estimators=5"], r"--params names method 'rf', but --method is glcm-svm"),
        (
            lambda t: ["--storage", "postgresql://tuner:secret@127.0.0.1:1/studies"],
            r"--storage postgresql://tuner:\*\*\*@127.0.0.1:1/studies: cannot open the study storage \(.*\); check the URL",
        ),
    ],
)
def test_bad_input_is_one_line_and_quick(leaky_split_source, tmp_path, capsys, error_line, extra, message):
    started = time.monotonic()
    assert (
        main(
            [
                "tune",
                str(leaky_split_source),
                "--method",
                "glcm-svm",
                "--split",
                "official",
                "--out",
                str(tmp_path / "out"),
                *FAST,
                *extra(tmp_path),
            ]
        )
        == 2
    )
    assert time.monotonic() - started < 15
    line = error_line("tune")
    assert re.search(message, line), line
    assert "secret" not in line


def test_the_median_pruner_stops_trials_after_an_inner_fold(leaky_split_source, tmp_path, monkeypatch):
    import optuna

    fits = []
    fit = GroupedPipeline.fit
    monkeypatch.setattr(GroupedPipeline, "fit", lambda self, *a, **k: fits.append(1) or fit(self, *a, **k))
    monkeypatch.setattr(optuna.pruners.MedianPruner, "prune", lambda self, study, trial: trial.number >= 1)
    assert tune(leaky_split_source, tmp_path / "out", "--trials", "3", "--pruner", "median") == 0
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    search_ = results["searches"]["tpe"]["official"]
    assert [t["state"] for t in search_["trials"]] == ["complete", "pruned", "pruned"]
    assert search_["n_trials"] == 3 and search_["best"]["number"] == 0
    assert len(fits) == FOLDS + 1 + 1 + 1  # trial 0 on every inner fold, the pruned ones on one, the final fit


@pytest.mark.slow
def test_a_deep_method_is_pruned_after_an_epoch(leaky_split_source, tmp_path, monkeypatch, one_torch_thread):
    import optuna

    space = tmp_path / "space.json"
    space.write_text('{"lr": {"type": "float", "low": 0.001, "high": 0.01, "log": true}}')
    monkeypatch.setattr(optuna.pruners.MedianPruner, "prune", lambda self, study, trial: trial.number >= 1)
    out = tmp_path / "out"
    assert (
        main(
            [
                "tune",
                str(leaky_split_source),
                "--method",
                "mlp",
                "--split",
                "official",
                "--out",
                str(out),
                *FAST,
                "--trials",
                "2",
                "--pruner",
                "median",
                "--space",
                str(space),
                "--params",
                "mlp.epochs=3,mlp.hidden=[8],mlp.batch_size=8",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    study = optuna.load_study(
        study_name="mlp",
        storage=optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(out / "study.journal"))),
    )
    complete_, pruned = study.trials
    assert pruned.state.name == "PRUNED" and list(pruned.intermediate_values) == [1]  # after epoch 1 of fold 1
    assert [s for s in complete_.intermediate_values if s < search.FOLD_STEP] == [1, 2, 3]
    assert json.loads((out / "best_params.json").read_text())["mlp"]["epochs"] == 3


def test_a_study_whose_trials_were_all_pruned_has_nothing_to_test(
    leaky_split_source, tmp_path, monkeypatch, error_line
):
    import optuna

    monkeypatch.setattr(optuna.pruners.MedianPruner, "prune", lambda self, study, trial: True)
    assert tune(leaky_split_source, tmp_path / "out", "--trials", "2", "--pruner", "median") == 2
    assert "study glcm-svm: none of its 2 trials ran to the end (all pruned or failed)" in error_line("tune")


def test_k_fold_is_nested_a_search_per_outer_fold(demo_source, tmp_path):
    out = tmp_path / "out"
    assert (
        main(["tune", str(demo_source), "--method", "glcm-svm", "--cv", "2", "--trials", "2", "--out", str(out), *FAST])
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    folds = list(results["searches"]["tpe"])
    assert len(folds) == 2
    assert [s["study"] for s in results["searches"]["tpe"].values()] == [f"glcm-svm/{f}" for f in folds]
    entry = results["test"]["methods"]["glcm-svm tuned by tpe"]
    assert [f["fold"] for f in entry["per_fold"]] == folds
    assert entry["n_test"] == 24  # every item tested once, by the configuration chosen on the other fold


@pytest.mark.slow
def test_inner_folds_in_parallel_score_as_one_after_the_other(leaky_split_source, tmp_path):
    runs = []
    for jobs in ("1", "2"):
        out = tmp_path / f"jobs{jobs}"
        assert (
            main(
                [
                    "tune",
                    str(leaky_split_source),
                    "--method",
                    "glcm-svm",
                    "--split",
                    "official",
                    "--out",
                    str(out),
                    *FAST,
                    "--jobs",
                    jobs,
                    "--sampler",
                    "random",
                    "--trials",
                    "2",
                ]
            )
            == 0
        )
        trials = json.loads((out / "results.json").read_text())["searches"]["random"]["official"]["trials"]
        runs.append([(t["params"], t["inner_scores"]) for t in trials])
    assert runs[0] == runs[1]


# ------------------------------------------------------------------------------------------------ issue 20: storages


def _journal(tmp_path, content: bytes):
    path = tmp_path / "study.journal"
    path.write_bytes(content)
    return path


RECORD = b'{"op_code":0,"worker_id":"w","study_name":"glcm-svm","directions":[1]}\n'


@pytest.mark.parametrize(
    "content, message",
    [
        (
            RECORD + RECORD[:30],
            r"its last record \(line 2\) is cut short, as when a disk fills or a copy is interrupted; "
            r"restore the journal from a copy, or delete that line to continue from the trials before it$",
        ),
        (
            RECORD + b"\xff\xfe garbage \x00\n",
            r"is not an Optuna journal of brainmri tune \(line 2 is not a JSON record\), "
            r"so it is left as it is; name a new journal file",
        ),
        (bytes(range(256)) * 4 + b"\n", r"is not an Optuna journal of brainmri tune \(line 1 is not a JSON record\)"),
        (b"Meeting notes\nbuy milk\n", r"is not an Optuna journal of brainmri tune \(line 1 is not a JSON record\)"),
        (b'{"a": 1}\n', r"is not an Optuna journal of brainmri tune \(line 1 is not an Optuna journal record\)"),
    ],
    ids=["truncated", "garbage-appended", "all-garbage", "a-text-file", "other-json"],
)
def test_a_damaged_or_foreign_journal_is_refused_and_left_as_it_is(
    leaky_split_source, tmp_path, capsys, error_line, content, message
):
    # Issue 20: these gave JSONDecodeError or UnicodeDecodeError tracebacks, and Optuna appended to the file.
    journal = _journal(tmp_path, content)
    assert tune(leaky_split_source, tmp_path / "out", "--storage", str(journal), "--trials", "1") == 2
    line = error_line("tune")
    assert re.search(rf"--storage .*study\.journal: {message}", line), line
    assert journal.read_bytes() == content
    assert not (tmp_path / "out").exists()


def test_a_sqlite_storage_that_is_not_a_database_is_refused_and_left_as_it_is(
    leaky_split_source, tmp_path, capsys, error_line
):
    notes = tmp_path / "notes.db"
    notes.write_text("not a database")
    assert tune(leaky_split_source, tmp_path / "out", "--storage", f"sqlite:///{notes}", "--trials", "1") == 2
    assert "is not a SQLite database, so it is left as it is" in error_line("tune")
    assert notes.read_text() == "not a database"


@pytest.mark.parametrize("url", ["{data}/study.journal", "sqlite:///{data}/study.db", "{data}/sub/study.journal"])
def test_a_storage_inside_the_data_is_refused(leaky_split, tmp_path, capsys, error_line, listing, url):
    # Issue 20: `tune --storage DATA/study.journal` created files inside DATA.
    before = listing(leaky_split)
    assert tune(leaky_split, tmp_path / "out", "--storage", url.format(data=leaky_split), "--trials", "1") == 2
    assert re.search(r"--storage .*: lies inside the input folder .*, which must stay unchanged", error_line("tune"))
    assert listing(leaky_split) == before


def test_a_foreign_results_json_is_never_overwritten(leaky_split_source, tmp_path, capsys, error_line, listing):
    # Issue 20: one marker file was enough for tune --out to overwrite results.json and trials.csv.
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text('{"mine": true}')
    (out / "trials.csv").write_text("a,b\n")
    before = listing(out)
    assert tune(leaky_split_source, out, "--trials", "1") == 2
    assert "holds results.json, trials.csv but no brainmri run.json" in error_line("tune")
    assert listing(out) == before


def test_a_tune_continues_in_its_own_folder(leaky_split_source, tmp_path, capsys):
    out = tmp_path / "out"
    assert tune(leaky_split_source, out, "--trials", "1") == 0
    assert tune(leaky_split_source, out, "--trials", "2") == 0
    assert len(complete(json.loads((out / "results.json").read_text()))) == 2
    assert json.loads((out / "run.json").read_text())["command"] == "tune"


def test_a_study_another_worker_is_still_describing_is_waited_for_not_refused(tmp_path):
    from brainmri.errors import ConfigError
    from brainmri.tuning.study import open_study

    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'tune.db'}")
    attrs = {"method": "glcm-svm", "seed": 0}
    first = optuna.create_study(storage=storage, study_name="shared", direction="maximize")
    first.set_user_attr("method", "glcm-svm")  # the creating worker has written one attribute of two so far

    def finish():
        time.sleep(1.0)
        first.set_user_attr("seed", 0)

    writer = threading.Thread(target=finish)
    writer.start()
    study = open_study(storage, "shared", attrs, sampler=None, pruner=None)
    writer.join()
    assert study.user_attrs == attrs

    with pytest.raises(ConfigError, match="created for seed 0, not 1"):
        open_study(storage, "shared", {**attrs, "seed": 1}, sampler=None, pruner=None)


def test_a_second_worker_on_a_sqlite_study_is_refused_without_failing_the_first_ones_trial(
    leaky_split_source, tmp_path, error_line
):
    url = f"sqlite:///{tmp_path / 'tune.db'}"
    assert tune(leaky_split_source, tmp_path / "one", "--storage", url, "--study", "s", "--trials", "1") == 0
    with pytest.warns(optuna.exceptions.ExperimentalWarning):  # Optuna's heartbeat arguments
        storage = optuna.storages.RDBStorage(url, heartbeat_interval=60, grace_period=180)
    study = optuna.load_study(study_name="s", storage=storage)
    with pytest.warns(UserWarning, match="Heartbeat of storage is supposed to be used with Study.optimize"):
        running = study.ask()  # another worker's trial, its heartbeat fresh
    storage.record_heartbeat(running._trial_id)

    assert tune(leaky_split_source, tmp_path / "two", "--storage", url, "--study", "s", "--trials", "3") == 2

    assert error_line("tune").endswith(
        f"--storage {url}: trial {running.number} of study s is running in another worker now (or in a run killed "
        "less than 3 minutes ago); a SQLite file serves one worker at a time: run this one when it is done, or "
        "share the study through a database server (--storage postgresql://USER@HOST/DB)"
    )
    state = optuna.load_study(study_name="s", storage=storage).trials[running.number].state
    assert state == optuna.trial.TrialState.RUNNING  # the other worker's trial is left to it
