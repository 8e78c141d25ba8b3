"""The command line: exit codes 0/1/2, results on stdout, one-line errors on stderr."""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from brainmri.cli import data as cli_data
from brainmri.cli import main
from brainmri.cli import progress as cli_progress
from brainmri.data.audit import AUDIT_KEYS
from brainmri.errors import DataError
from brainmri.models.catalog import available_methods
from brainmri.version import __version__

#: Every registered method, as error messages and --help list them.
ALL_METHODS = ", ".join(available_methods())


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.strip() == f"brainmri {__version__}"


@pytest.mark.parametrize("argv", [[], ["frobnicate"], ["audit"], ["demo-data", "x", "--n", "many"]])
def test_usage_errors_exit_2(capsys, argv):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "usage: brainmri" in capsys.readouterr().err


# ---------------------------------------------------------------- demo-data and demo


def test_demo_data(tmp_path, capsys):
    assert main(["demo-data", str(tmp_path / "d"), "--n", "2", "--size", "32", "--seed", "3", "-q"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == (
        f"wrote 8 synthetic images (glioma, meningioma, notumor, pituitary) to {tmp_path / 'd'}, and "
        f"the lesion masks of the 6 tumour images to {tmp_path / 'd' / '.masks'} (for brainmri "
        "explain --masks)"
    )
    assert len(list((tmp_path / "d").glob("*/*.png"))) == 8
    assert len(list((tmp_path / "d" / ".masks").glob("*/*.png"))) == 6


@pytest.mark.parametrize(
    "args, taken, message",
    [
        (["--n", "0"], False, r"--n must be a positive integer \(images per class\), got 0$"),
        (["--size", "0"], False, r"--size must be an integer >= 8 \(pixels\), got 0$"),
        ([], True, r"/d: already exists and is not an empty folder; choose another output folder$"),
    ],
    ids=["n", "size", "taken"],
)
def test_demo_data_errors(tmp_path, capsys, args, taken, message, error_line):
    out = tmp_path / "d"
    if taken:
        out.mkdir()
        (out / "mine.txt").write_text("keep")
    assert main(["demo-data", str(out), "-q", *args]) == 2
    line = error_line("demo-data")
    assert re.search(message, line), line
    assert (out / "mine.txt").exists() if taken else not out.exists()


@pytest.mark.slow
def test_demo_runs_the_whole_flow(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--n", "8", "-q", "--jobs", "1"]) == 0
    stdout = capsys.readouterr().out
    assert "wrote 32 synthetic images" in stdout and "items: 32  readable: 32" in stdout
    assert json.loads((out / "audit" / "audit.json").read_text())["n_items"] == 32
    results = json.loads((out / "benchmark" / "results.json").read_text())
    assert list(results["methods"]) == ["glcm-svm", "multifeature-rf", "ovo-svm", "rf", "ayadi-cnn"]
    assert results["config"]["params"] == {"ayadi-cnn": cli_data.DEMO_DEEP_PARAMS}
    assert (out / "benchmark" / "figures" / "learning_ayadi-cnn.png").exists()
    assert f"report: {out / 'benchmark' / 'report.html'}" in stdout
    assert (out / "benchmark" / "report.html").exists()
    assert list(results["timing_s"]) == ["reading", "features", "methods", "summary", "total"]
    last = stdout.strip().splitlines()[-1]  # the run's time, stage by stage, writing included
    assert last.startswith("time: reading (waited for) ") and ", writing " in last
    assert main(["demo", "--out", str(out), "--n", "8", "-q", "--jobs", "1"]) == 0
    assert f"using existing demo data in {out / 'data'}" in capsys.readouterr().out


# ---------------------------------------------------------------- benchmark


def test_benchmark_prints_the_table_and_writes_the_report(demo_data, tmp_path, capsys):
    out = tmp_path / "b"
    argv = [
        "benchmark",
        str(demo_data),
        "--methods",
        "rf",
        "--cv",
        "3",
        "--out",
        str(out),
        "--size",
        "48",
        "--n-boot",
        "20",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--jobs",
        "1",
    ]
    assert main([*argv, "-q"]) == 0
    stdout = capsys.readouterr().out
    assert "protocol: cv, 3 fold(s), grouping: duplicates" in stdout
    assert re.search(r"^rf +\d\.\d{3} \[", stdout, re.M)
    assert (out / "results.json").exists() and (out / "predictions.csv").exists()
    # progress per method and fold goes to stderr
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "[1/1] rf fold0 (1/3): done earlier, reusing" in err


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--methods", "glcm-svm,cnn"], rf"unknown method 'cnn'; valid methods: {ALL_METHODS}$"),
        (
            ["--label-map", "glioma=tumor"],
            r"--label-map leaves DATA class\(es\) meningioma, notumor, pituitary unmapped",
        ),
        (["--split", "official"], r"--split official needs train and test folders"),
        (
            ["--drop-test-duplicates"],
            r"--drop-test-duplicates only applies to --split official or --test-data; "
            r"k-fold already keeps duplicates on one side$",
        ),
        (["--cv", "1"], r"--cv must be an integer >= 2, got 1$"),
    ],
)
@pytest.mark.parametrize("quiet", [["-q"], []], ids=["quiet", "verbose"])
def test_benchmark_errors_are_one_line_and_write_nothing(
    demo_data, tmp_path, capsys, extra, message, quiet, error_line
):
    assert main(["benchmark", str(demo_data), "--out", str(tmp_path / "b"), "--no-cache", *quiet, *extra]) == 2
    line = error_line("benchmark")
    assert re.search(message, line), line
    assert not (tmp_path / "b").exists()


def test_benchmark_help_lists_the_methods(capsys):
    with pytest.raises(SystemExit):
        main(["benchmark", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    # argparse may wrap a line at a hyphen inside a name (glcm-\nsvm): compare without whitespace
    assert f"valid methods: {ALL_METHODS}".replace(" ", "") in help_text.replace(" ", "")


@pytest.mark.parametrize(
    "out, message",
    [
        (
            "{data}/runs",
            r"--out .*/runs: lies inside the input folder .*/data, which must stay unchanged; choose a folder outside it$",
        ),
        ("{data}/glioma/glioma_0000.png", r"--out .*glioma_0000\.png: lies inside the input folder"),
        (
            "{tmp}/file/runs",
            r"--out .*/file/runs: .*/file is a file, so no folder can be created there; choose another folder$",
        ),
    ],
    ids=["inside-data", "an-image-of-data", "under-a-file"],
)
@pytest.mark.parametrize("command", ["benchmark", "audit"])
def test_unusable_out_is_one_line_and_writes_nothing(
    demo_data, tmp_path, capsys, listing, out, message, command, error_line
):
    (tmp_path / "file").write_text("keep")
    before = listing(tmp_path)
    assert main([command, str(demo_data), "--out", out.format(data=demo_data, tmp=tmp_path)]) == 2
    line = error_line(command)
    assert re.search(message, line), line
    assert listing(tmp_path) == before


def test_bad_run_file_is_one_line(demo_data, tmp_path, capsys, error_line):
    out = tmp_path / "b"
    out.mkdir()
    (out / "run.json").write_text("not json")
    assert main(["benchmark", str(demo_data), "--out", str(out), "--no-cache", "--restart"]) == 2
    line = error_line("benchmark")
    assert line.endswith(
        "b/run.json: not a run file written by brainmri, so the folder is not brainmri's to write in; "
        "choose a new or empty --out"
    )
    assert (out / "run.json").read_text() == "not json"


# ---------------------------------------------------------------- audit


def test_audit_writes_json_and_nothing_into_data(demo_data, tmp_path, capsys, listing):
    before = listing(demo_data)
    assert main(["audit", str(demo_data), "--out", str(tmp_path / "res"), "-q", "--jobs", "1"]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert "items: 24  readable: 24  unreadable: 0" in captured.out
    assert f"wrote {tmp_path / 'res' / 'audit.json'}" in captured.out
    report = json.loads((tmp_path / "res" / "audit.json").read_text())
    assert set(AUDIT_KEYS) <= set(report)
    assert report["n_items"] == 24 and report["classes"]["notumor"] == 6
    assert listing(demo_data) == before
    assert sorted(p.name for p in (tmp_path / "res").iterdir()) == [
        ".brainmri-files",
        "audit.json",
        "run.json",
    ]  # no temporary file


def test_audit_progress_goes_to_stderr(demo_data, capsys):
    assert main(["audit", str(demo_data), "--jobs", "1"]) == 0
    captured = capsys.readouterr()
    assert "reading" in captured.err
    assert "reading" not in captured.out


def test_audit_group_similar(demo_data, tmp_path, capsys):
    assert main(["audit", str(demo_data), "--group-similar", "--out", str(tmp_path / "audit"), "-q"]) == 0
    assert "look-alike groups (--group-similar): 24, largest 1" in capsys.readouterr().out
    assert json.loads((tmp_path / "audit/audit.json").read_text())["similar_groups"] == {"n_groups": 24, "largest": 1}


def test_audit_reports_leaks(leaky_split, tmp_path, capsys):
    assert main(["audit", str(leaky_split), "--out", str(tmp_path / "audit"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "cross-split leaks: 2 held-out items duplicate a training item" in out
    leaks = json.loads((tmp_path / "audit/audit.json").read_text())["cross_split_leaks"]
    assert [(x["test_path"], x["train_path"]) for x in leaks] == [
        ("Testing/glioma/copy_of_glioma_0000.png", "Training/glioma/glioma_0000.png"),
        ("Testing/notumor/reencoded_notumor_0001.jpg", "Training/notumor/notumor_0001.png"),
    ]
    assert all(set(x) >= {"test_path", "train_path", "distance"} for x in leaks)


def test_audit_skips_and_reports_bad_files(demo_data, tmp_path, capsys, write_dicom, write_nifti, load_gray, write_pil):
    cut = write_pil(demo_data / "glioma/cut.jpg", load_gray(demo_data / "glioma/glioma_0000.png"))
    cut.write_bytes(cut.read_bytes()[:200])
    write_dicom(demo_data / "glioma/report.dcm", None, pixel_data=False)
    volume = np.ones((4, 4, 4), np.float32)
    volume[1, 1, 1] = np.nan
    write_nifti(demo_data / "notumor/nan.nii.gz", volume)
    (demo_data / "notumor/notes.txt").write_text("n/a")
    (demo_data / "empty").mkdir()
    assert main(["audit", str(demo_data), "--out", str(tmp_path / "audit"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "items: 28  readable: 24  unreadable: 4" in out
    lines = [line for line in out.splitlines() if line.startswith(("unreadable:", "problem:"))]
    expected = [
        r"unreadable: glioma/cut\.jpg: cannot decode \(.+\); the file is truncated or corrupt, re-export or remove it",
        r"unreadable: glioma/report\.dcm: DICOM file has no pixel data \(a report or structured file\?\); "
        r"remove it from the dataset",
        r"unreadable: notumor/nan\.nii\.gz: contains NaN or infinite values; fix or remove the file",
        r"unreadable: notumor/notes\.txt: not a supported image type \(\.txt\); "
        r"use one of \.png, .*, \.nii\.gz or remove the file",
        r"problem: empty: empty class folder; add images or remove the folder",
    ]
    assert len(lines) == len(expected)
    for line, pattern in zip(lines, expected, strict=True):
        assert re.fullmatch(pattern, line), line
    report = json.loads((tmp_path / "audit/audit.json").read_text())
    assert report["unreadable"][2] == {
        "path": "notumor/nan.nii.gz",
        "reason": "contains NaN or infinite values; fix or remove the file",
    }


def test_audit_exits_1_when_nothing_is_readable(tmp_path, capsys):
    for name in ("a/1.png", "b/2.jpg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("not an image")
    assert main(["audit", str(tmp_path), "-q"]) == 1
    captured = capsys.readouterr()
    assert "unreadable: a/1.png: not a readable PNG image; re-export or remove it" in captured.out
    assert captured.err.strip() == f"ERROR: {tmp_path}: no readable image; see the unreadable list above"


def _missing_folder(tmp_path):
    return tmp_path / "nowhere"


def _csv_without_label(tmp_path):
    (tmp_path / "x.png").touch()
    (tmp_path / "m.csv").write_text("path,diagnosis\nx.png,a\n")
    return tmp_path / "m.csv"


def _csv_with_missing_file(tmp_path):
    (tmp_path / "m.csv").write_text("path,label\nscans/gone.png,a\n")
    return tmp_path / "m.csv"


def _only_empty_class_folders(tmp_path):
    (tmp_path / "data" / "glioma").mkdir(parents=True)
    return tmp_path / "data"


def _an_image_not_a_dataset(tmp_path):
    (tmp_path / "scan.png").write_bytes(b"")
    return tmp_path / "scan.png"


@pytest.mark.parametrize(
    "make, extra, message",
    [
        (_missing_folder, [], r"nowhere: no such file or folder; pass a dataset folder or a CSV manifest$"),
        (
            _csv_without_label,
            [],
            r"m\.csv: CSV manifest lacks column\(s\) label; found \['path', 'diagnosis'\], expected path,label",
        ),
        (
            _csv_with_missing_file,
            [],
            r"m\.csv: no usable images; scans/gone\.png: listed in m\.csv line 2 but the file does not exist; "
            r"fix the path \(relative to the CSV\)$",
        ),
        (
            _only_empty_class_folders,
            [],
            r"data: no usable images; glioma: empty class folder; add images or remove the folder$",
        ),
        (
            _an_image_not_a_dataset,
            [],
            r"scan\.png: a dataset is a folder of class sub-folders or a \.csv manifest, not a \.png file$",
        ),
        (
            _missing_folder,
            ["--hash-radius", "40"],
            r"hash_radius must be an integer in 0\.\.31 \(bits of a 64-bit hash\), got 40$",
        ),
        (
            _missing_folder,
            ["--near-threshold", "2"],
            r"near_threshold is a correlation and must lie in \[-1, 1\], got 2\.0$",
        ),
    ],
    ids=[
        "missing-folder",
        "csv-missing-column",
        "csv-missing-file",
        "empty-class-folder",
        "not-a-dataset",
        "bad-radius",
        "bad-threshold",
    ],
)
def test_audit_errors_are_one_line_and_exit_2(tmp_path, capsys, make, extra, message, error_line):
    source = make(tmp_path)
    assert main(["audit", str(source), "-q", *extra]) == 2
    line = error_line("audit")
    assert re.search(message, line), line
    assert capsys.readouterr().out == ""


def test_debug_shows_the_exception(tmp_path):
    with pytest.raises(DataError, match="no such file or folder"):
        main(["audit", str(tmp_path / "nowhere"), "--debug"])


def test_audit_of_a_csv_manifest(demo_source, tmp_path, capsys):
    data = shutil.copytree(demo_source, tmp_path / "data")
    rows = ["path,label,subject"] + [
        f"../data/{p.parent.name}/{p.name},{p.parent.name},s{k % 3}" for k, p in enumerate(sorted(data.rglob("*.png")))
    ]
    manifest = tmp_path / "lists" / "m.csv"
    manifest.parent.mkdir()
    manifest.write_text("\n".join(rows) + "\n")
    assert main(["audit", str(manifest), "--out", str(tmp_path / "res"), "-q", "--allow-outside-paths"]) == 0
    out = capsys.readouterr().out
    assert f"dataset: {manifest.parent} (csv)" in out and "subjects: 3" in out
    report = json.loads((tmp_path / "res" / "audit.json").read_text())
    assert report["n_items"] == 24 and report["subjects"] == 3


# ---------------------------------------------------------------- progress


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def test_benchmark_progress_off_a_terminal_is_plain_lines(demo_data, tmp_path, capsys):
    argv = [
        "benchmark",
        str(demo_data),
        "--methods",
        "rf",
        "--cv",
        "2",
        "--out",
        str(tmp_path / "b"),
        "--size",
        "48",
        "--n-boot",
        "20",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--jobs",
        "1",
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err  # captured: not a terminal
    assert "\r" not in err and "\x1b" not in err
    lines = err.splitlines()
    assert len(lines) <= 12, err
    for pattern in [
        r"reading: 24 images in \d+\.\d s",
        r"features: 24 images in \d+\.\d s",
        r"\[1/1\] rf fold0 \(1/2\): training on \d+ images, testing on \d+",
        r"\[1/1\] rf fold0 \(1/2\): fit \d+\.\ds, predict \d+\.\ds",
        r"\[1/1\] rf fold1 \(2/2\): fit \d+\.\ds, predict \d+\.\ds",
    ]:
        assert sum(bool(re.fullmatch(pattern, line)) for line in lines) == 1, (pattern, err)


def test_plain_progress_writes_a_line_every_ten_seconds(monkeypatch):
    clock = iter(0.06 * k for k in range(10_000))
    monkeypatch.setattr(cli_progress.time, "monotonic", lambda: next(clock))
    stream = io.StringIO()
    reporter = cli_progress.Reporter(stream)
    reading = reporter.stage("reading", total=1000)
    for _ in range(1000):
        reading(1)
    reporter.say("next step")
    lines = stream.getvalue().splitlines()
    assert lines[0] == "reading: 168/1000 images (10 s)"
    assert len(lines) == 7  # 5 progress lines in 60 s, the closing line, the message
    assert lines[-2:] == ["reading: 1000/1000 images in 60.0 s", "next step"]


def test_progress_on_a_terminal_closes_its_bar_at_the_next_step():
    stream = _Terminal()
    reporter = cli_progress.Reporter(stream)
    reading = reporter.stage("reading")
    reading(3)
    reading(2)
    assert "\r" in stream.getvalue()  # a live bar
    reporter.say("next step")
    for k in range(100):
        reporter.write(f"log line {k}")
    after = stream.getvalue().split("next step", 1)[1]
    assert "reading" not in after  # closed: later lines do not redraw it
    assert re.search(r"reading: 5 images in \d+\.\d s\n", stream.getvalue())


def test_quiet_shows_no_progress():
    stream = _Terminal()
    reporter = cli_progress.Reporter(stream, quiet=True)
    reporter.stage("reading")(5)
    reporter.say("step")
    reporter.close()
    assert stream.getvalue() == ""


# ---------------------------------------------------------------- stopping a benchmark

_STOPPABLE = """
import sys, time
import brainmri.runs.benchmark as benchmark
from brainmri.cli import main

real, started = benchmark.run_unit, []

def run_unit(*args, **kwargs):
    if started:  # the second unit waits until the test stops the process
        print("second unit started", file=sys.stderr, flush=True)
        time.sleep(300)
    started.append(1)
    return real(*args, **kwargs)

benchmark.run_unit = run_unit
raise SystemExit(main(sys.argv[1:]))
"""


def _children(pid: int) -> list[int]:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _benchmark_argv(demo_data, tmp_path) -> list[str]:
    return [
        "benchmark",
        str(demo_data),
        "--methods",
        "glcm-svm",
        "--cv",
        "2",
        "--out",
        str(tmp_path / "b"),
        "--size",
        "48",
        "--n-boot",
        "20",
        "--cache-dir",
        str(tmp_path / "cache"),
        "--jobs",
        "2",
    ]


def _env() -> dict:
    import brainmri

    return {**os.environ, "PYTHONPATH": str(Path(brainmri.__file__).parents[1])}


def _stop_mid_run(demo_data, tmp_path, sig: int) -> tuple[int, list[str], list[int]]:
    """Start a benchmark, stop it with ``sig`` during its second unit; exit status, stderr lines, worker pids."""
    script = tmp_path / "stoppable.py"
    script.write_text(_STOPPABLE)
    lines: list[str] = []
    with subprocess.Popen(
        [sys.executable, str(script), *_benchmark_argv(demo_data, tmp_path)],
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as proc:
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        reader.start()
        deadline = time.monotonic() + 120
        while "second unit started\n" not in lines and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        assert "second unit started\n" in lines, "".join(lines)
        workers = [pid for pid in _children(proc.pid) if b"loky" in Path(f"/proc/{pid}/cmdline").read_bytes()]
        assert workers, "the benchmark started no worker process; the test needs some"
        proc.send_signal(sig)
        status = proc.wait(timeout=60)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.2)
        left = [pid for pid in workers if _alive(pid)]
        for pid in left:  # after a failure, end them: they hold stderr open
            os.kill(pid, signal.SIGKILL)
        reader.join(timeout=10)
    return status, [line.rstrip("\n") for line in lines], left


needs_proc = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="lists processes through /proc (Linux)")


@needs_proc
@pytest.mark.slow
def test_sigterm_stops_cleanly_and_the_rerun_resumes(demo_data, tmp_path):
    status, lines, left = _stop_mid_run(demo_data, tmp_path, signal.SIGTERM)
    assert status == 143
    assert (
        lines[-1]
        == "brainmri benchmark: terminated (SIGTERM); rerun the same command to resume from the finished units"
    )
    assert left == []
    out = tmp_path / "b"
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == [
        ".brainmri-files",
        "audit.json",
        "run.json",
        "units",
        "units/glcm-svm",
        "units/glcm-svm/fold0.json",
    ]  # no partial output
    rerun = subprocess.run(
        [sys.executable, "-m", "brainmri", *_benchmark_argv(demo_data, tmp_path)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert "[1/1] glcm-svm fold0 (1/2): done earlier, reusing" in rerun.stderr.splitlines()
    assert (out / "results.json").exists() and (out / "units/glcm-svm/fold1.json").exists()


@needs_proc
@pytest.mark.slow
def test_workers_exit_soon_after_their_parent_is_killed(demo_data, tmp_path):
    status, lines, left = _stop_mid_run(demo_data, tmp_path, signal.SIGKILL)
    assert status == -signal.SIGKILL
    assert left == []
