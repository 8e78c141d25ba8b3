"""The benchmark's --out folder: refused before anything is written, and brainmri's alone."""

from __future__ import annotations

import json
import os
import re
import shutil

import pytest

from brainmri.data.preprocess import Preprocess
from brainmri.errors import ConfigError, DataError
from brainmri.models.catalog import available_methods
from brainmri.runs import benchmark as benchmark_module
from brainmri.runs.benchmark import run_benchmark
from brainmri.runs.config import BenchmarkConfig
from brainmri.runs.run_folder import read_run_file

#: Every registered method, as error messages and --help list them.
ALL_METHODS = ", ".join(available_methods())


BASE = dict(methods=("rf",), cv=2, n_boot=20, preprocess=Preprocess(size=48))


def config(data, **kw):
    return BenchmarkConfig(**{**BASE, "data": str(data), **kw})


@pytest.fixture
def no_reading(monkeypatch):
    """Fail the test if the benchmark starts reading every image (the audit)."""

    def audit(*args, **kwargs):
        raise AssertionError("the audit started reading the images before the run was refused")

    monkeypatch.setattr(benchmark_module, "plan_benchmark", audit)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A finished rf run (2 folds) on the demo data; copy ``out`` before changing it."""
    from brainmri.data.synthetic import write_demo_data

    root = tmp_path_factory.mktemp("run")
    data = write_demo_data(root / "data", n=6, seed=0, size=64)
    run_benchmark(config(data), root / "out", n_jobs=1, cache_dir=root / "cache")
    return data, root / "out", root / "cache"


def _copy_run(finished_run, tmp_path):
    data, out, cache = finished_run
    return data, shutil.copytree(out, tmp_path / "out"), cache


def _subjectless_csv(data):
    rows = ["path,label"] + [f"{p.relative_to(data).as_posix()},{p.parent.name}" for p in sorted(data.rglob("*.png"))]
    (data / "m.csv").write_text("\n".join(rows) + "\n")
    return {"data": str(data / "m.csv"), "grouping": "subject"}


def _unseen_test_class(data):
    other = data.parent / "other"
    for name in ("glioma", "unknown"):
        (other / name).mkdir(parents=True)
        shutil.copy(data / "glioma" / "glioma_0000.png", other / name)
    return {"test_data": str(other)}


@pytest.mark.parametrize(
    "make, error, message",
    [
        (lambda data: {"cv": 1}, ConfigError, r"^--cv must be an integer >= 2, got 1$"),
        (
            lambda data: {"split": "official"},
            DataError,
            r"--split official needs train and test folders .*; use --cv K instead$",
        ),
        (
            lambda data: {"methods": ("rf", "cnn")},
            ConfigError,
            rf"^unknown method 'cnn'; valid methods: {ALL_METHODS}$",
        ),
        (
            lambda data: {"label_map": {"glioma": "tumor"}},
            ConfigError,
            r"--label-map leaves DATA class\(es\) meningioma, notumor, pituitary unmapped",
        ),
        (_subjectless_csv, ConfigError, r"grouping 'subject' needs a subject id for every item"),
        (_unseen_test_class, DataError, r"test classes unknown were never seen in training"),
        (lambda data: {"test_data": str(data.parent / "absent")}, DataError, r"absent: no such file or folder"),
        (lambda data: {"data": str(data / "nowhere")}, DataError, r"nowhere: no such file or folder"),
    ],
    ids=[
        "cv-1",
        "official-without-split-folders",
        "unknown-method",
        "label-map",
        "subject-without-subjects",
        "unseen-test-class",
        "missing-test-data",
        "missing-data",
    ],
)
def test_refused_run_writes_nothing_and_reads_no_image(demo_data, tmp_path, no_reading, make, error, message):
    out = tmp_path / "out"
    with pytest.raises(error, match=message):
        run_benchmark(
            BenchmarkConfig(**{**BASE, "data": str(demo_data), **make(demo_data)}),
            out,
            n_jobs=1,
            cache_dir=tmp_path / "cache",
        )
    assert not out.exists() and not (tmp_path / "cache").exists()


def test_refusal_after_a_refusal_is_not_about_the_first(demo_data, tmp_path, no_reading):
    # The first-run snag: a refused --cv 1 left run.json, and the corrected command was then
    # refused for "other arguments".
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match="--cv must be"):
        run_benchmark(config(demo_data, cv=1), out, n_jobs=1)
    with pytest.raises(AssertionError, match="the audit started"):  # got past every check
        run_benchmark(config(demo_data), out, n_jobs=1)
    assert read_run_file(out)["config"]["cv"] == 2


@pytest.mark.parametrize("where", ["data", "class-folder", "new-sub-folder", "symlink-into-data"])
@pytest.mark.parametrize("option", ["out", "cache_dir", "out-in-test-data"])
def test_outputs_inside_the_data_are_refused(demo_data, demo_source, tmp_path, listing, no_reading, where, option):
    data = shutil.copytree(demo_source, tmp_path / "train") if option == "out-in-test-data" else demo_data
    inside = {
        "data": demo_data,
        "class-folder": demo_data / "glioma",
        "new-sub-folder": demo_data / "runs" / "a",
        "symlink-into-data": tmp_path / "link" / "runs",
    }[where]
    (tmp_path / "link").symlink_to(demo_data)
    before = listing(demo_data)
    test_data = str(demo_data) if option == "out-in-test-data" else None
    out, cache = (tmp_path / "out", inside) if option == "cache_dir" else (inside, tmp_path / "cache")
    name = "--cache-dir" if option == "cache_dir" else "--out"
    with pytest.raises(
        ConfigError,
        match=rf"^{name} .*: lies inside the input folder {re.escape(str(demo_data.resolve()))}, "
        "which must stay unchanged; choose a folder outside it$",
    ):
        run_benchmark(config(data, test_data=test_data), out, n_jobs=1, cache_dir=cache)
    assert listing(demo_data) == before


def test_out_that_is_a_file_is_refused(demo_data, tmp_path, no_reading):
    mine = tmp_path / "results.txt"
    mine.write_text("keep")
    with pytest.raises(
        ConfigError, match=r"^--out .*results\.txt: is an existing file, not a folder; choose a new or empty folder$"
    ):
        run_benchmark(config(demo_data), mine, n_jobs=1)
    assert mine.read_text() == "keep"


def test_restart_never_deletes_data_kept_in_the_run_folder(finished_run, tmp_path, listing):
    # Issue 20: `benchmark X2/figures ... --out X2 --restart` deleted the data.
    data, out, cache = _copy_run(finished_run, tmp_path)
    moved = shutil.copytree(data, out / "figures" / "data")
    before = listing(tmp_path)
    with pytest.raises(
        ConfigError,
        match=r"^--out .*out: holds the input .*out/figures/data, which brainmri must never "
        "overwrite or delete; choose an output folder that holds no input$",
    ):
        run_benchmark(config(moved), out, n_jobs=1, cache_dir=cache, restart=True)
    assert listing(tmp_path) == before


def test_restart_deletes_exactly_what_the_run_recorded(finished_run, tmp_path):
    from brainmri.outputs import LEDGER, written

    data, out, cache = _copy_run(finished_run, tmp_path)
    recorded = written(out)
    assert {
        "run.json",
        "audit.json",
        "results.json",
        "predictions.csv",
        "report.html",
        "units/rf/fold0.json",
        "units/rf/fold1.json",
    } <= recorded and any(name.startswith("figures/") for name in recorded)
    files = {p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()} - {LEDGER}
    assert files == recorded  # everything the run wrote is on the list, and nothing else is


def test_a_run_folder_of_another_command_is_refused(demo_data, tmp_path, listing, no_reading):
    out = tmp_path / "out"
    out.mkdir()
    (out / "run.json").write_text('{"tool": "brainmri", "command": "explain"}')
    (out / "explain.json").write_text("{}")
    before = listing(out)
    with pytest.raises(
        ConfigError,
        match=r"^--out .*out: holds the output of brainmri explain, not of brainmri "
        "benchmark; choose a new or empty folder$",
    ):
        run_benchmark(config(demo_data), out, n_jobs=1, restart=True)
    assert listing(out) == before


def test_an_output_inside_the_folder_of_a_csv_manifest_is_refused(demo_data, tmp_path, listing, no_reading):
    # Issue 20: `benchmark DATA.csv --out CSV_DIR/out` wrote beside the images the CSV lists.
    rows = ["path,label"] + [
        f"{p.relative_to(demo_data).as_posix()},{p.parent.name}" for p in sorted(demo_data.rglob("*.png"))
    ]
    (demo_data / "m.csv").write_text("\n".join(rows) + "\n")
    before = listing(demo_data)
    with pytest.raises(ConfigError, match=r"^--out .*/out: lies inside the input folder .*, which must stay unchanged"):
        run_benchmark(config(demo_data / "m.csv"), demo_data / "out", n_jobs=1)
    assert listing(demo_data) == before


@pytest.mark.parametrize("option", ["out", "cache_dir"])
def test_out_under_a_file_is_refused(demo_data, tmp_path, no_reading, option):
    blocker = tmp_path / "file"
    blocker.write_text("keep")
    target = blocker / "runs"
    out, cache = (target, tmp_path / "cache") if option == "out" else (tmp_path / "out", target)
    with pytest.raises(
        ConfigError, match=r"file/runs: .*/file is a file, so no folder can be created there; choose another folder$"
    ):
        run_benchmark(config(demo_data), out, n_jobs=1, cache_dir=cache)
    assert blocker.read_text() == "keep" and not (tmp_path / "out").exists()


@pytest.mark.system
def test_out_without_write_permission_is_refused(demo_data, tmp_path, no_reading, tmpfs):
    # Permission bits do not bind root: as root the folder is a read-only mount instead (issue 20).
    if os.geteuid() == 0:
        locked = tmpfs("locked", read_only=True)
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
    try:
        with pytest.raises(
            ConfigError, match=r"^--out .*locked/out: no permission to write in .*locked; choose another folder"
        ):
            run_benchmark(config(demo_data), locked / "out", n_jobs=1)
    finally:
        if os.geteuid() != 0:
            locked.chmod(0o755)


@pytest.mark.parametrize("restart", [False, True], ids=["run", "restart"])
@pytest.mark.parametrize(
    "theirs", ["results.json", "report.html", "predictions.csv", "figures/roc.png", "units/rf/fold0.json", "notes.txt"]
)
def test_folder_of_someone_else_is_refused_and_kept(demo_data, tmp_path, listing, no_reading, theirs, restart):
    out = tmp_path / "out"
    (out / theirs).parent.mkdir(parents=True, exist_ok=True)
    (out / theirs).write_text("someone's file")
    before = listing(out)
    action = "discards" if restart else "writes in"
    with pytest.raises(
        ConfigError,
        match=rf"^--out .*out: holds {theirs.split('/')[0]} but no brainmri run\.json; brainmri only "
        rf"{action} folders of its own runs, so choose a new or empty folder$",
    ):
        run_benchmark(config(demo_data), out, n_jobs=1, restart=restart)
    assert listing(out) == before


@pytest.mark.parametrize(
    "content",
    [
        '{"fingerprint": "x"',
        "fingerprint: x\n",
        '["brainmri"]',
        '{"tool": "other", "fingerprint": "x"}',
        b"\xff\xfe\x00garbage",
    ],
    ids=["truncated-json", "not-json", "json-list", "other-tool", "binary"],
)
@pytest.mark.parametrize("restart", [False, True], ids=["run", "restart"])
def test_run_file_not_written_by_brainmri_is_refused(demo_data, tmp_path, listing, no_reading, content, restart):
    out = tmp_path / "out"
    out.mkdir()
    (out / "units").mkdir()
    (out / "units" / "theirs.json").write_text("{}")
    write = (out / "run.json").write_bytes if isinstance(content, bytes) else (out / "run.json").write_text
    write(content)
    before = listing(out)
    with pytest.raises(
        ConfigError,
        match=r"^.*out/run\.json: not a run file written by brainmri, so the folder is not "
        r"brainmri's to write in; choose a new or empty --out$",
    ):
        run_benchmark(config(demo_data), out, n_jobs=1, restart=restart)
    assert listing(out) == before


def test_empty_or_hidden_only_folder_is_taken(demo_data, tmp_path, no_reading):
    out = tmp_path / "out"
    out.mkdir()
    (out / ".DS_Store").write_text("")
    with pytest.raises(AssertionError, match="the audit started"):
        run_benchmark(config(demo_data), out, n_jobs=1)
    run = json.loads((out / "run.json").read_text())
    assert run["tool"] == "brainmri" and run["command"] == "benchmark"
    assert run["fingerprint"] == config(demo_data).fingerprint() and run["config"]["methods"] == ["rf"]


def test_other_arguments_are_refused_before_reading(finished_run, tmp_path, listing, no_reading):
    data, out, _ = _copy_run(finished_run, tmp_path)
    before = listing(out)
    with pytest.raises(
        ConfigError, match=r"holds a benchmark run with other arguments; choose another --out or add --restart$"
    ):
        run_benchmark(config(data, seed=1), out, n_jobs=1)
    assert listing(out) == before


@pytest.mark.parametrize("same_arguments", [True, False], ids=["same-arguments", "other-arguments"])
def test_restart_discards_the_old_run_and_nothing_else(finished_run, tmp_path, monkeypatch, same_arguments):
    data, out, cache = _copy_run(finished_run, tmp_path)
    (out / "units" / "rf" / "fold0.json").write_text('{"stale": true}')  # would break a resume
    (out / "figures" / "mine.png").write_bytes(b"a figure of the user's")  # issue 20: --restart deleted it
    (out / "my-notes.txt").write_text("keep")
    fitted = []
    real = benchmark_module.run_unit
    monkeypatch.setattr(benchmark_module, "run_unit", lambda *a, **k: fitted.append(1) or real(*a, **k))
    new = config(data) if same_arguments else config(data, seed=1)
    results = run_benchmark(new, out, n_jobs=1, cache_dir=cache, restart=True)
    assert len(fitted) == 2  # both units trained again
    assert json.loads((out / "units" / "rf" / "fold0.json").read_text())["fold"] == "fold0"
    assert (out / "figures" / "mine.png").read_bytes() == b"a figure of the user's"
    assert (out / "my-notes.txt").read_text() == "keep"
    assert read_run_file(out)["fingerprint"] == new.fingerprint()
    assert json.loads((out / "results.json").read_text())["config"]["seed"] == results["config"]["seed"] == new.seed
