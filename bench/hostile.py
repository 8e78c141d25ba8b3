"""Replay the hostile cases of issue 20 on scratch copies and count the outcomes.

Each case does what a careful, hostile user did to brainmri (an output
folder that holds someone's files, a FIFO named .png, a damaged journal, a
full disk, a flood of uploads...), runs the real command in a subprocess
(its peak memory watched, a time limit set) and checks what a user would
notice: protected files intact, nothing written into DATA, no traceback, no
hang, no run-away memory, no confident answer for a blank image, no 5xx.
The outcome of a case is its worst finding, in the order of :data:`OUTCOMES`.

    python bench/hostile.py [--out DIR] [--src SRC] [--only TEXT]

``--src`` runs another brainmri source tree (``git worktree add /tmp/old
<commit>`` then ``--src /tmp/old/src``) to count the outcomes before a fix.
Cases that need root (a full disk is a small tmpfs) are ``not run``
elsewhere. Results: a table on stdout and ``OUT/hostile.json``.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import re
import shutil
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: Outcomes from worst to best; a case takes the worst of its findings.
OUTCOMES = (
    "data loss",
    "writes into DATA",
    "OOM",
    "hang",
    "5xx",
    "silent wrong",
    "traceback",
    "late refusal",
    "misleading",
    "unbounded",
    "clean",
    "not run",
)
#: A command whose processes hold more than this is killed and counted as OOM (the reported cases took 16-20 GB).
MEMORY_LIMIT = 6 * 2**30
PYTHON = sys.executable


@dataclass
class Run:
    code: int | None
    out: str
    err: str
    seconds: float
    peak_bytes: int
    killed: str | None = None


@dataclass
class Case:
    name: str
    section: str
    run: Callable
    findings: list[tuple[str, str]] = field(default_factory=list)


CASES: list[Case] = []


def case(section: str):
    def register(fn):
        CASES.append(Case(fn.__name__.replace("_", "-"), section, fn))
        return fn

    return register


class Bench:
    """What every case shares: the brainmri to run, scratch folders, prepared data and bundles."""

    def __init__(self, root: Path, src: Path):
        self.root, self.src = root, src
        self.env = {**os.environ, "PYTHONPATH": str(src), "BRAINMRI_CACHE": str(root / "default-cache")}
        self.findings: list[tuple[str, str]] = []

    # -- running commands ---------------------------------------------------------------------------------------

    def brainmri(
        self, *args, timeout: float = 180, cwd: Path | None = None, expect: tuple[int, ...] | None = None
    ) -> Run:
        """Run ``brainmri ARGS``; a traceback, a hang or run-away memory becomes a finding."""
        run = watch([PYTHON, "-m", "brainmri", *map(str, args)], env=self.env, cwd=cwd, timeout=timeout)
        self.check_run(run, " ".join(map(str, args[:2])))
        if expect is not None and run.code not in expect and not run.killed:
            self.note("misleading", f"exit {run.code}, expected {expect}: {last_line(run.err)}")
        return run

    def check_run(self, run: Run, what: str) -> None:
        if run.killed == "timeout":
            self.note("hang", f"{what}: still running after {run.seconds:.0f} s")
        elif run.killed == "memory":
            self.note("OOM", f"{what}: killed at {run.peak_bytes / 2**30:.1f} GB")
        if "Traceback (most recent call last)" in run.err or "Exception ignored" in run.err:
            self.note("traceback", f"{what}: {traceback_line(run.err)}")

    def note(self, outcome: str, detail: str) -> None:
        self.findings.append((outcome, detail))

    # -- scratch data -------------------------------------------------------------------------------------------

    def data(self, where: Path, name: str = "data") -> Path:
        """A fresh copy of the demo dataset (4 classes x 10 images of 64 px)."""
        return Path(shutil.copytree(self.root / "prepared" / "demo", where / name))

    def bundle(self, kind: str, where: Path, name: str | None = None) -> Path:
        return Path(shutil.copytree(self.root / "prepared" / kind, where / (name or kind)))

    def prepare(self) -> None:
        prepared = self.root / "prepared"
        if (prepared / "done").exists():
            return
        shutil.rmtree(prepared, ignore_errors=True)
        prepared.mkdir(parents=True)
        steps = [
            ["demo-data", prepared / "demo", "--n", "10", "--size", "64"],
            ["demo-data", prepared / "volumes", "--3d", "--n", "6", "--size", "16", "--regions", "8"],
            [
                "train",
                prepared / "demo",
                "--method",
                "glcm-svm",
                "--size",
                "64",
                "--no-validation",
                "--no-cache",
                "--out",
                prepared / "glcm",
            ],
            [
                "train",
                prepared / "demo",
                "--method",
                "ayadi-cnn",
                "--params",
                "ayadi-cnn.size=32,ayadi-cnn.width=4,ayadi-cnn.epochs=1,ayadi-cnn.threads=1",
                "--size",
                "32",
                "--no-validation",
                "--no-cache",
                "--device",
                "cpu",
                "--out",
                prepared / "cnn",
            ],
            [
                "benchmark",
                prepared / "demo",
                "--methods",
                "glcm-svm",
                "--cv",
                "2",
                "--size",
                "64",
                "--n-boot",
                "20",
                "--no-cache",
                "--out",
                prepared / "run",
            ],
        ]
        for step in steps:
            run = watch([PYTHON, "-m", "brainmri", *map(str, step), "-q"], env=self.env, timeout=600)
            if run.code != 0:
                raise SystemExit(f"preparing failed: brainmri {' '.join(map(str, step))}\n{run.err}")
        (prepared / "done").touch()


def watch(argv: list[str], *, env: dict, cwd: Path | None = None, timeout: float = 180, stdin=None) -> Run:
    """Run ``argv``, polling the memory of its process tree; kill it past :data:`MEMORY_LIMIT` or ``timeout``."""
    import psutil

    start = time.monotonic()
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        stdin=stdin or subprocess.DEVNULL,
        start_new_session=True,
    )
    out_err: dict[str, str] = {}
    reader = threading.Thread(
        target=lambda: out_err.update(zip(("out", "err"), proc.communicate(), strict=True)), daemon=True
    )
    reader.start()
    peak, killed = 0, None
    parent = psutil.Process(proc.pid)
    while reader.is_alive():
        try:
            rss = sum(p.memory_info().rss for p in [parent, *parent.children(recursive=True)])
        except psutil.Error:
            rss = 0
        peak = max(peak, rss)
        if rss > MEMORY_LIMIT:
            killed = "memory"
        elif time.monotonic() - start > timeout:
            killed = "timeout"
        if killed:
            os.killpg(proc.pid, 9)
            break
        reader.join(0.1)
    reader.join(30)
    return Run(proc.returncode, out_err.get("out", ""), out_err.get("err", ""), time.monotonic() - start, peak, killed)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def traceback_line(text: str) -> str:
    lines = text.strip().splitlines()
    errors = [line for line in lines if re.match(r"^[A-Za-z_.]+(Error|Exception|Warning)\b", line)]
    return (errors[-1] if errors else last_line(text))[:200]


def snapshot(root: Path) -> dict[str, str]:
    """``{relative path: sha256 or "folder"}`` of everything below ``root`` (and root itself)."""
    if not root.exists():
        return {}
    if root.is_file():
        return {".": hashlib.sha256(root.read_bytes()).hexdigest()}
    found = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            found[rel] = "link"
        elif path.is_dir():
            found[rel] = "folder"
        elif path.is_file():
            found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            found[rel] = "special"
    return found


def kept(b: Bench, before: dict, root: Path, outcome: str, what: str) -> None:
    """A finding when files of ``before`` (a :func:`snapshot` of ``root``) were deleted or changed."""
    after = snapshot(root)
    lost = [k for k in before if k not in after]
    changed = [k for k in before if k in after and after[k] != before[k]]
    if lost or changed:
        b.note(
            outcome,
            f"{what}: {len(lost)} lost ({', '.join(lost[:3])}), {len(changed)} changed ({', '.join(changed[:3])})",
        )


def untouched(b: Bench, data: Path, run: Callable[[], Run]) -> Run:
    """Run ``run()``; a finding 'writes into DATA' when anything below ``data`` appeared, changed or went."""
    before = snapshot(data)
    result = run()
    if snapshot(data) != before:
        added = sorted(set(snapshot(data)) - set(before))
        b.note("writes into DATA", f"{data.name} changed (added {', '.join(added[:3]) or 'nothing'})")
    return result


def refused_early(b: Bench, run: Run, what: str) -> None:
    """A command that should refuse at once: exit 2 with one line, and no image read before it."""
    if run.killed:
        return
    if run.code == 0:
        b.note("silent wrong", f"{what}: accepted (exit 0)")
    elif "reading and auditing" in run.err or "training" in run.err:
        b.note("late refusal", f"{what}: refused only after reading: {last_line(run.err)}")


def write_png(path: Path, array: np.ndarray) -> Path:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def write_nifti(path: Path, array: np.ndarray) -> Path:
    import nibabel as nib

    path.parent.mkdir(parents=True, exist_ok=True)
    nib.Nifti1Image(np.asarray(array), np.eye(4)).to_filename(path)
    return path


def nifti_bomb(path: Path, shape=(30000, 30000, 1)) -> Path:
    """A ~900 KB .nii.gz of a 30000 x 30000 slice of zeros (900 MP: 3.6 GB once read as float32)."""
    import nibabel as nib

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    header["vox_offset"] = 352
    zeros = bytes(2**24)
    with gzip.open(path, "wb", compresslevel=9) as fh:
        fh.write(header.binaryblock + b"\0" * 4)
        left = int(np.prod(shape))
        while left:
            fh.write(zeros[: min(left, len(zeros))])
            left -= min(left, len(zeros))
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    return (
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], capture_output=True
        ).returncode
        == 0
    )


def umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


# ============================================================================================ data loss


@case("data loss")
def train_out_with_a_web_manifest(b: Bench, w: Path):
    out = w / "F"
    out.mkdir()
    (out / "manifest.json").write_text('{"name": "my web app"}')
    (out / "thesis.tex").write_text("chapter 1")
    (out / "sub").mkdir()
    (out / "sub" / "data.csv").write_text("a,b\n")
    before = snapshot(out)
    b.brainmri("train", b.data(w), "--method", "glcm-svm", "--no-validation", "--size", "64", "--out", out, "-q")
    kept(b, before, out, "data loss", "F")


@case("data loss")
def train_out_that_holds_the_data(b: Bench, w: Path):
    out = w / "X1"
    out.mkdir()
    (out / "manifest.json").write_text('{"name": "my web app"}')
    data = b.data(out)
    before = snapshot(data)
    b.brainmri("train", data, "--method", "glcm-svm", "--no-validation", "--size", "64", "--out", out, "-q")
    kept(b, before, data, "data loss", "X1/data")


@case("data loss")
def train_out_an_earlier_bundle_with_notes(b: Bench, w: Path):
    out = b.bundle("glcm", w)
    (out / "NOTES.md").write_text("my notes on this model")
    before = {"NOTES.md": snapshot(out)["NOTES.md"]}
    b.brainmri("train", b.data(w), "--method", "glcm-svm", "--no-validation", "--size", "64", "--out", out, "-q")
    kept(b, before, out, "data loss", "bundle folder")


def _run_copy(b: Bench, w: Path, name: str) -> Path:
    return Path(shutil.copytree(b.root / "prepared" / "run", w / name))


BENCH = ["--methods", "glcm-svm", "--cv", "2", "--size", "64", "--n-boot", "20", "--no-cache"]


@case("data loss")
def restart_with_a_user_file_in_figures(b: Bench, w: Path):
    out = _run_copy(b, w, "O")
    (out / "figures" / "mine.png").write_bytes(b"a figure of the user's")
    before = {"figures/mine.png": snapshot(out)["figures/mine.png"]}
    b.brainmri("benchmark", b.root / "prepared" / "demo", *BENCH, "--seed", "1", "--out", out, "--restart", "-q")
    kept(b, before, out, "data loss", "run folder")


@case("data loss")
def restart_with_the_data_in_figures(b: Bench, w: Path):
    out = _run_copy(b, w, "X2")
    data = out / "figures"
    for cls in (b.root / "prepared" / "demo").iterdir():
        if cls.is_dir() and not cls.name.startswith("."):
            shutil.copytree(cls, data / cls.name)
    before = snapshot(data)
    b.brainmri("benchmark", data, *BENCH, "--out", out, "--restart", "-q")
    kept(b, before, data, "data loss", "DATA in X2/figures")


def _foreign(out: Path, files: dict[str, str]) -> dict:
    for name, text in files.items():
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text(text)
    return snapshot(out)


@case("data loss")
def explain_out_with_a_foreign_explain_json(b: Bench, w: Path):
    out = w / "O"
    before = _foreign(out, {"explain.json": '{"my": "results"}', "overlays/glioma/glioma_0000.png": "mine"})
    b.brainmri(
        "explain",
        b.root / "prepared" / "cnn",
        b.root / "prepared" / "demo" / "glioma",
        "--out",
        out,
        "--no-checks",
        "--device",
        "cpu",
        "-q",
    )
    kept(b, before, out, "data loss", "explain folder")


@case("data loss")
def audit_out_with_a_foreign_audit_json(b: Bench, w: Path):
    out = w / "O"
    before = _foreign(out, {"audit.json": '{"my": "audit"}'})
    b.brainmri("audit", b.root / "prepared" / "demo", "--out", out, "-q")
    kept(b, before, out, "data loss", "audit folder")


@case("data loss")
def regions_out_with_a_foreign_results_json(b: Bench, w: Path):
    out = w / "O"
    before = _foreign(out, {"results.json": '{"mine": true}', "regions.csv": "a,b\n"})
    b.brainmri(
        "regions",
        b.root / "prepared" / "volumes",
        "--out",
        out,
        "--regions",
        "8",
        "--population",
        "8",
        "--generations",
        "2",
        "-q",
    )
    kept(b, before, out, "data loss", "regions folder")


@case("data loss")
def tune_out_with_a_foreign_marker(b: Bench, w: Path):
    out = w / "O"
    before = _foreign(out, {"tune.json": "{}", "results.json": '{"mine": true}', "trials.csv": "a,b\n"})
    b.brainmri(
        "tune",
        b.root / "prepared" / "demo",
        "--method",
        "glcm-svm",
        "--trials",
        "1",
        "--cv",
        "2",
        "--size",
        "48",
        "--no-cache",
        "--n-boot",
        "20",
        "--out",
        out,
        "-q",
        timeout=300,
    )
    kept(b, before, out, "data loss", "tune folder")


@case("data loss")
def predict_out_over_a_users_spreadsheet(b: Bench, w: Path):
    sheet = w / "sheet.csv"
    sheet.write_text("patient,score\n1,2\n")
    before = snapshot(sheet)
    b.brainmri("predict", b.root / "prepared" / "glcm", b.root / "prepared" / "demo" / "glioma", "--out", sheet, "-q")
    kept(b, before, sheet, "data loss", "sheet.csv")


@case("data loss")
def predict_out_over_an_earlier_prediction_file(b: Bench, w: Path):
    sheet = w / "p.csv"
    args = ["predict", b.root / "prepared" / "glcm", b.root / "prepared" / "demo" / "glioma", "--out", sheet, "-q"]
    b.brainmri(*args, expect=(0,))
    b.brainmri(*args, expect=(0,))  # its own earlier file is replaced without --force


# ============================================================================================ writes into DATA


@case("writes into DATA")
def tune_journal_storage_inside_data(b: Bench, w: Path):
    data = b.data(w)
    untouched(
        b,
        data,
        lambda: b.brainmri(
            "tune",
            data,
            "--method",
            "glcm-svm",
            "--trials",
            "1",
            "--cv",
            "2",
            "--size",
            "48",
            "--no-cache",
            "--out",
            w / "o",
            "--storage",
            data / "study.journal",
            "-q",
            timeout=300,
        ),
    )


@case("writes into DATA")
def tune_sqlite_storage_inside_data(b: Bench, w: Path):
    data = b.data(w)
    untouched(
        b,
        data,
        lambda: b.brainmri(
            "tune",
            data,
            "--method",
            "glcm-svm",
            "--trials",
            "1",
            "--cv",
            "2",
            "--size",
            "48",
            "--no-cache",
            "--out",
            w / "o",
            "--storage",
            f"sqlite:///{data / 'study.db'}",
            "-q",
            timeout=300,
        ),
    )


@case("writes into DATA")
def benchmark_out_beside_the_images_of_a_csv(b: Bench, w: Path):
    data = b.data(w)
    rows = ["path,label"] + [f"{p.relative_to(data).as_posix()},{p.parent.name}" for p in sorted(data.rglob("*.png"))]
    (data / "m.csv").write_text("\n".join(rows) + "\n")
    untouched(b, data, lambda: b.brainmri("benchmark", data / "m.csv", *BENCH, "--out", data / "out", "-q"))


# ============================================================================================ tracebacks


@case("traceback")
def blank_black_image_in_benchmark_data(b: Bench, w: Path):
    data = b.data(w)
    write_png(data / "glioma" / "black.png", np.zeros((64, 64)))
    b.brainmri("benchmark", data, *BENCH, "--out", w / "o", "-q", expect=(0,))


@case("traceback")
def blank_white_image_in_train_data(b: Bench, w: Path):
    data = b.data(w)
    write_png(data / "notumor" / "white.png", np.full((64, 64), 255))
    b.brainmri(
        "train", data, "--method", "glcm-svm", "--no-validation", "--size", "64", "--out", w / "m", "-q", expect=(0,)
    )


RECORD = b'{"op_code":0,"worker_id":"w","study_name":"glcm-svm","directions":[1]}\n'


def _journal_case(b: Bench, w: Path, content: bytes, name: str = "study.journal"):
    journal = w / name
    journal.write_bytes(content)
    before = snapshot(journal)
    b.brainmri(
        "tune",
        b.root / "prepared" / "demo",
        "--method",
        "glcm-svm",
        "--trials",
        "1",
        "--cv",
        "2",
        "--size",
        "48",
        "--no-cache",
        "--out",
        w / "o",
        "--storage",
        journal,
        "-q",
        timeout=300,
    )
    kept(b, before, journal, "data loss", journal.name)


@case("traceback")
def tune_truncated_journal(b: Bench, w: Path):
    _journal_case(b, w, RECORD + RECORD[:30])


@case("traceback")
def tune_journal_with_garbage_appended(b: Bench, w: Path):
    _journal_case(b, w, RECORD + b"\xff\xfe garbage \x00\n")


@case("traceback")
def tune_journal_all_garbage(b: Bench, w: Path):
    _journal_case(b, w, bytes(range(256)) * 8)


@case("traceback")
def tune_storage_an_existing_text_file(b: Bench, w: Path):
    _journal_case(b, w, b"meeting notes\nbuy milk\n", name="mynotes.txt")


def _full_disk(b: Bench, w: Path, argv: Callable[[Path], list]) -> None:
    disk = w / "disk"
    if not mount_tmpfs(disk, "120k"):
        b.note("not run", "cannot mount a tmpfs (needs root)")
        return
    try:
        run = b.brainmri(*argv(disk))
        left = [p for p in disk.rglob("*") if p.is_file() and p.name.endswith((".tmp", ".old"))]
        broken = []
        for path in disk.rglob("*.json"):
            try:
                json.loads(path.read_text())
            except (ValueError, UnicodeDecodeError):
                broken.append(path.name)
        if left or broken:
            b.note("silent wrong", f"half-written files left: {[p.name for p in left] + broken}")
        if run.code == 0:
            b.note("silent wrong", "exit 0 on a full disk")
        subprocess.run(["mount", "-o", "remount,size=200m", str(disk)], capture_output=True)
        again = b.brainmri(*argv(disk))
        if again.code != 0:
            b.note("misleading", f"the rerun after freeing space failed: {last_line(again.err)}")
    finally:
        umount(disk)


@case("traceback")
def full_disk_under_benchmark_out(b: Bench, w: Path):
    _full_disk(b, w, lambda disk: ["benchmark", b.root / "prepared" / "demo", *BENCH, "--out", disk / "b", "-q"])


@case("traceback")
def full_disk_while_train_saves(b: Bench, w: Path):
    _full_disk(
        b,
        w,
        lambda disk: [
            "train",
            b.root / "prepared" / "demo",
            "--method",
            "glcm-svm",
            "--no-validation",
            "--size",
            "64",
            "--no-cache",
            "--out",
            disk / "m",
            "-q",
        ],
    )


@case("traceback")
def benchmark_out_in_proc(b: Bench, w: Path):
    run = b.brainmri("benchmark", b.root / "prepared" / "demo", *BENCH, "--out", "/proc/brainmri-x")
    refused_early(b, run, "--out /proc/x")


@case("traceback")
def train_out_in_proc(b: Bench, w: Path):
    run = b.brainmri(
        "train",
        b.root / "prepared" / "demo",
        "--method",
        "glcm-svm",
        "--no-validation",
        "--size",
        "64",
        "--out",
        "/proc/brainmri-x",
    )
    refused_early(b, run, "--out /proc/x")


def _cache_case(b: Bench, w: Path, spoil: str) -> None:
    cache = w / "cache"
    b.brainmri(
        "benchmark",
        b.root / "prepared" / "demo",
        *BENCH[:-1],
        "--cache-dir",
        cache,
        "--out",
        w / "a",
        "-q",
        expect=(0,),
    )
    with sqlite3.connect(cache / "features.sqlite") as con:
        con.execute(f"UPDATE features SET value = {spoil}")
    b.brainmri(
        "benchmark",
        b.root / "prepared" / "demo",
        *BENCH[:-1],
        "--cache-dir",
        cache,
        "--out",
        w / "b",
        "-q",
        expect=(0,),
    )


@case("traceback")
def cache_blobs_of_the_wrong_length(b: Bench, w: Path):
    _cache_case(b, w, "substr(value, 1, length(value) - 3)")


@case("traceback")
def cache_rows_with_nan(b: Bench, w: Path):
    _cache_case(b, w, "CAST(x'000000000000f87f' || substr(value, 9) AS BLOB)")


def _option_case(b: Bench, w: Path, *option: str, method: str = "glcm-svm") -> None:
    run = b.brainmri(
        "benchmark",
        b.root / "prepared" / "demo",
        "--methods",
        method,
        "--no-cache",
        "--out",
        w / "o",
        *option,
        timeout=300,
    )
    refused_early(b, run, " ".join(option))


@case("traceback")
def option_cv_1000(b: Bench, w: Path):
    _option_case(b, w, "--cv", "1000")


@case("traceback")
def option_jobs_0(b: Bench, w: Path):
    _option_case(b, w, "--jobs", "0")


@case("traceback")
def option_seed_minus_1(b: Bench, w: Path):
    _option_case(b, w, "--seed", "-1")


@case("traceback")
def option_cnn_size_100000(b: Bench, w: Path):
    _option_case(b, w, "--params", "ayadi-cnn.size=100000", method="ayadi-cnn")


@case("traceback")
def option_cnn_width_0(b: Bench, w: Path):
    _option_case(b, w, "--params", "ayadi-cnn.width=0,ayadi-cnn.epochs=1", method="ayadi-cnn")


@case("traceback")
def option_cnn_dropout_2(b: Bench, w: Path):
    _option_case(b, w, "--params", "ayadi-cnn.dropout=2,ayadi-cnn.epochs=1", method="ayadi-cnn")


@case("traceback")
def option_svm_c_minus_1(b: Bench, w: Path):
    _option_case(b, w, "--params", "glcm-svm.C=-1")


@case("traceback")
def option_rf_trees_minus_1(b: Bench, w: Path):
    _option_case(b, w, "--params", "rf.n_estimators=-1", method="rf")


@case("traceback")
def option_mlp_hidden_0(b: Bench, w: Path):
    _option_case(b, w, "--params", "mlp.hidden=0", method="mlp")


@case("traceback")
def regions_atlas_with_nan_labels(b: Bench, w: Path):
    import nibabel as nib

    atlas = nib.load(b.root / "prepared" / "volumes" / ".regions" / "atlas.nii.gz")
    labels = np.asarray(atlas.dataobj).astype(np.float32)
    labels[0, 0, :] = np.nan
    nib.save(nib.Nifti1Image(labels, atlas.affine), w / "nan.nii.gz")
    b.brainmri(
        "regions",
        b.root / "prepared" / "volumes",
        "--atlas",
        w / "nan.nii.gz",
        "--out",
        w / "o",
        "--population",
        "8",
        "--generations",
        "2",
        "-q",
    )


@case("traceback")
def predict_with_a_manifest_naming_another_method(b: Bench, w: Path):
    bundle = b.bundle("glcm", w)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["method"]["name"] = "rf"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    run = b.brainmri("predict", bundle, b.root / "prepared" / "demo" / "glioma", "-q")
    if run.code == 0:
        b.note("silent wrong", "predicted with a model its manifest misnames")


class Peer:
    """A TCP server that is not a Dask scheduler: a silent web server, or a peer that sends garbage."""

    def __init__(self, http: bool):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.address = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.http, self.held = http, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            if not self.http:
                conn.sendall(b"hello, not dask\n" * 20)

    def close(self):
        for conn in self.held:
            conn.close()
        self.sock.close()


@case("traceback")
def cluster_a_peer_that_is_not_dask(b: Bench, w: Path):
    peer = Peer(http=False)
    try:
        b.brainmri(
            "benchmark", b.root / "prepared" / "demo", *BENCH, "--out", w / "o", "--cluster", peer.address, expect=(2,)
        )
    finally:
        peer.close()


class Server:
    """``brainmri serve BUNDLE`` in a subprocess, its stderr collected."""

    def __init__(self, b: Bench, bundle: Path, *extra):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [
                PYTHON,
                "-m",
                "brainmri",
                "serve",
                str(bundle),
                "--port",
                str(self.port),
                "--device",
                "cpu",
                *map(str, extra),
            ],
            env=b.env,
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
        )
        self.err: list[str] = []
        threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True).start()
        import httpx

        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                if (
                    httpx.get(f"{self.url}/health", timeout=2, headers={"Authorization": f"Bearer {TOKEN}"}).status_code
                    == 200
                ):
                    return
            except httpx.TransportError:
                time.sleep(0.2)
        raise RuntimeError("brainmri serve did not start: " + "".join(self.err))

    def rss(self) -> int:
        import psutil

        return psutil.Process(self.proc.pid).memory_info().rss

    def stop(self) -> str:
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        time.sleep(0.2)
        return "".join(self.err)


TOKEN = "hostile-token-123"


def _post(url: str, files: list, **kw):
    import httpx

    return httpx.post(f"{url}/predict", files=files, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120, **kw)


def _png_bytes(array: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@case("traceback")
def server_client_drops_mid_upload(b: Bench, w: Path):
    server = Server(b, b.root / "prepared" / "cnn", "--token", TOKEN)
    try:
        for _ in range(3):
            with socket.create_connection(("127.0.0.1", server.port)) as sock:
                sock.sendall(
                    b"POST /predict HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                    + TOKEN.encode()
                    + b"\r\nContent-Type: multipart/form-data; boundary=b\r\nContent-Length: 100000\r\n\r\n--b"
                )
                time.sleep(0.3)
        time.sleep(1)
    finally:
        err = server.stop()
    if "Traceback" in err:
        b.note("traceback", f"server log: {traceback_line(err)}")


# ============================================================================================ hangs and OOM


@case("hang")
def fifo_in_the_data(b: Bench, w: Path):
    data = b.data(w)
    os.mkfifo(data / "glioma" / "pipe.png")
    b.brainmri("audit", data, "-q", timeout=60)


@case("hang")
def fifo_on_the_predict_command_line(b: Bench, w: Path):
    os.mkfifo(w / "pipe.png")
    b.brainmri(
        "predict",
        b.root / "prepared" / "glcm",
        w / "pipe.png",
        b.root / "prepared" / "demo" / "glioma",
        "-q",
        timeout=60,
    )


@case("hang")
def cluster_pointed_at_a_web_server(b: Bench, w: Path):
    peer = Peer(http=True)
    try:
        run = b.brainmri(
            "benchmark", b.root / "prepared" / "demo", *BENCH, "--out", w / "o", "--cluster", peer.address, timeout=60
        )
    finally:
        peer.close()
    if not run.killed and run.seconds > 20:
        b.note("hang", f"refused only after {run.seconds:.0f} s (documented: 5 s)")


@case("OOM")
def predict_a_nifti_declaring_a_30000_px_slice(b: Bench, w: Path):
    bomb = nifti_bomb(w / "bomb.nii.gz")
    b.brainmri("predict", b.root / "prepared" / "glcm", bomb, "-q", timeout=120)


@case("OOM")
def audit_a_900_megapixel_nifti_slice(b: Bench, w: Path):
    data = b.data(w)
    nifti_bomb(data / "glioma" / "bomb.nii.gz")
    run = b.brainmri("audit", data, "--out", w / "a", "-q", timeout=120)
    report = w / "a" / "audit.json"
    if run.code == 0 and report.exists():
        if not any(u["path"].endswith("bomb.nii.gz") for u in json.loads(report.read_text())["unreadable"]):
            b.note("silent wrong", "a 900-MP slice was read without a warning")


@case("OOM")
def benchmark_size_100000(b: Bench, w: Path):
    run = b.brainmri(
        "benchmark",
        b.root / "prepared" / "demo",
        *BENCH[:6],
        "--size",
        "100000",
        "--no-cache",
        "--out",
        w / "o",
        timeout=300,
    )
    refused_early(b, run, "--size 100000")


# ============================================================================================ silent wrong


def _predict_one(b: Bench, w: Path, path: Path) -> None:
    out = w / "p.json"
    run = b.brainmri("predict", b.root / "prepared" / "glcm", path, "--out", out, "-q")
    if run.code == 0 and out.exists():
        for row in json.loads(out.read_text())["predictions"]:
            if not (row["unlike_training"] is True and np.isfinite(row["ood_score"])):
                b.note(
                    "silent wrong",
                    f"{path.name}: called {row['predicted']} (ood_score {row['ood_score']}, "
                    f"unlike_training {row['unlike_training']})",
                )


@case("silent wrong")
def predict_an_all_black_image(b: Bench, w: Path):
    _predict_one(b, w, write_png(w / "black.png", np.zeros((64, 64))))


@case("silent wrong")
def predict_an_all_white_image(b: Bench, w: Path):
    _predict_one(b, w, write_png(w / "white.png", np.full((64, 64), 255)))


@case("silent wrong")
def predict_a_1x1_image(b: Bench, w: Path):
    _predict_one(b, w, write_png(w / "dot.png", np.full((1, 1), 90)))


@case("silent wrong")
def predict_a_1x200_image(b: Bench, w: Path):
    _predict_one(b, w, write_png(w / "line.png", (np.arange(200) % 250)[None, :]))


@case("silent wrong")
def predict_an_all_zero_nifti_slice(b: Bench, w: Path):
    _predict_one(b, w, write_nifti(w / "zero.nii.gz", np.zeros((64, 64, 1), np.float32)))


def _serve_one(b: Bench, data: bytes, name: str) -> None:
    server = Server(b, b.root / "prepared" / "glcm", "--token", TOKEN)
    try:
        answer = _post(server.url, [("files", (name, data, "image/png"))])
    finally:
        err = server.stop()
    if answer.status_code >= 500:
        b.note("5xx", f"{answer.status_code}: {answer.text[:120]}")
    elif answer.status_code == 200:
        b.note("silent wrong", f"{name}: answered 200, called {answer.json()['predictions'][0]['predicted']}")
    if "Traceback" in err:
        b.note("traceback", f"server log: {traceback_line(err)}")


@case("5xx")
def serve_a_bundle_whose_manifest_names_another_method(b: Bench, w: Path):
    bundle = b.bundle("glcm", w)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["method"]["name"] = "rf"
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    try:
        server = Server(b, bundle, "--token", TOKEN)
    except RuntimeError as exc:  # refused at start, with its reason: what it should do
        if "Traceback" in str(exc):
            b.note("traceback", traceback_line(str(exc)))
        return
    try:
        image = (np.arange(64 * 64) % 251).reshape(64, 64)
        answer = _post(server.url, [("files", ("a.png", _png_bytes(image), "image/png"))])
    finally:
        err = server.stop()
    if answer.status_code >= 500:
        b.note("5xx", f"{answer.status_code}: {answer.text[:120]}")
    elif answer.status_code == 200:
        b.note("silent wrong", "served predictions of a model its manifest misnames")
    if "Traceback" in err:
        b.note("traceback", f"server log: {traceback_line(err)}")


@case("silent wrong")
def serve_an_all_black_image(b: Bench, w: Path):
    _serve_one(b, _png_bytes(np.zeros((64, 64))), "black.png")


@case("silent wrong")
def serve_a_1x1_image(b: Bench, w: Path):
    _serve_one(b, _png_bytes(np.full((1, 1), 90)), "dot.png")


@case("silent wrong")
def label_map_with_a_class_twice(b: Bench, w: Path):
    run = b.brainmri(
        "benchmark",
        b.root / "prepared" / "demo",
        *BENCH,
        "--out",
        w / "o",
        "--label-map",
        "glioma=tumor,glioma=normal,meningioma=tumor,pituitary=tumor,notumor=normal",
        "-q",
    )
    refused_early(b, run, "--label-map glioma twice")


@case("silent wrong")
def bundle_with_temperature_0(b: Bench, w: Path):
    bundle = b.bundle("cnn", w)
    state = bundle / "model.classifier.state.json"
    state.write_text(re.sub(r'"temperature": [^,}]+', '"temperature": 0', state.read_text()))
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["files"][state.name] = hashlib.sha256(state.read_bytes()).hexdigest()
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    out = w / "p.json"
    run = b.brainmri("predict", bundle, b.root / "prepared" / "demo" / "glioma", "--out", out, "--device", "cpu", "-q")
    if run.code == 0:
        rows = json.loads(out.read_text())["predictions"]
        bad = sum(not all(np.isfinite(list(r["proba"].values()))) for r in rows)
        b.note("silent wrong", f"exit 0; {bad} of {len(rows)} predictions with non-finite probabilities")


# ============================================================================================ server limits


@case("server limits")
def serve_60_concurrent_19_mb_uploads(b: Bench, w: Path):
    server = Server(b, b.root / "prepared" / "glcm", "--token", TOKEN)
    body = np.random.default_rng(0).integers(0, 256, 19 * 2**20, dtype=np.uint8).tobytes()
    files = [("files", ("big.png", body, "image/png"))]
    peak, statuses = server.rss(), []
    try:
        with ThreadPoolExecutor(60) as pool:
            futures = [pool.submit(_post, server.url, files) for _ in range(60)]
            while not all(f.done() for f in futures):
                peak = max(peak, server.rss())
                time.sleep(0.05)
            for f in futures:
                try:
                    statuses.append(f.result().status_code)
                except Exception as exc:  # a connection the server closed
                    statuses.append(type(exc).__name__)
    finally:
        err = server.stop()
    counts = {s: statuses.count(s) for s in set(statuses)}
    b.note("info", f"server peak RSS {peak / 2**30:.2f} GB; answers {counts}")
    if peak > 1.5 * 2**30:
        b.note("unbounded", f"server RSS reached {peak / 2**30:.1f} GB")
    if any(isinstance(s, int) and s >= 500 and s != 503 for s in statuses):
        b.note("5xx", f"answers {counts}")
    if "Traceback" in err:
        b.note("traceback", f"server log: {traceback_line(err)}")


@case("server limits")
def serve_450_slow_connections(b: Bench, w: Path):
    server = Server(b, b.root / "prepared" / "glcm")
    held = []
    try:
        for _ in range(450):
            sock = socket.create_connection(("127.0.0.1", server.port))
            sock.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")
            held.append(sock)
        time.sleep(20)
        still = 0
        for sock in held:
            sock.setblocking(False)
            try:
                still += sock.recv(1) != b""
            except BlockingIOError:
                still += 1
            except OSError:
                pass
        b.note("info", f"{still} of 450 slow connections still open after 20 s")
        if still:
            b.note("unbounded", f"{still} of 450 slow connections held after 20 s")
    finally:
        for sock in held:
            sock.close()
        server.stop()


# ============================================================================================ misleading messages


@case("misleading")
def predict_takes_the_max_pixels_it_suggests(b: Bench, w: Path):
    run = b.brainmri(
        "predict",
        b.root / "prepared" / "glcm",
        b.root / "prepared" / "demo" / "glioma",
        "--max-pixels",
        "100000000",
        "-q",
    )
    if run.code == 2 and "unrecognized arguments" in run.err:
        b.note("misleading", "predict has no --max-pixels")


@case("misleading")
def regions_an_atlas_of_one_region(b: Bench, w: Path):
    import nibabel as nib

    atlas = nib.load(b.root / "prepared" / "volumes" / ".regions" / "atlas.nii.gz")
    nib.save(nib.Nifti1Image((np.asarray(atlas.dataobj) > 0).astype(np.int16), atlas.affine), w / "one.nii.gz")
    run = b.brainmri("regions", b.root / "prepared" / "volumes", "--atlas", w / "one.nii.gz", "--out", w / "o", "-q")
    if "--mutation" in run.err:
        b.note("misleading", last_line(run.err))


@case("misleading")
def a_csv_row_naming_a_folder(b: Bench, w: Path):
    data = b.data(w)
    rows = ["path,label", "glioma,glioma"] + [
        f"{p.relative_to(data).as_posix()},{p.parent.name}" for p in sorted(data.rglob("*.png"))
    ]
    (data / "m.csv").write_text("\n".join(rows) + "\n")
    run = b.brainmri("audit", data / "m.csv")
    if "does not exist" in run.out + run.err:
        b.note("misleading", "a folder is reported as a file that does not exist")


# ============================================================================================ the run


def run_cases(bench: Bench, only: str | None, work: Path) -> list[dict]:
    results = []
    for number, item in enumerate(CASES, start=1):
        if only and only not in item.name and only != item.section:
            continue
        scratch = work / f"{number:02d}-{item.name}"
        shutil.rmtree(scratch, ignore_errors=True)
        scratch.mkdir(parents=True)
        bench.findings = []
        start = time.monotonic()
        try:
            item.run(bench, scratch)
        except Exception as exc:  # the bench itself failed on this case: report it, go on
            bench.note("not run", f"the bench failed: {type(exc).__name__}: {exc}")
        findings = [f for f in bench.findings if f[0] != "info"]
        outcome = min((f[0] for f in findings), key=OUTCOMES.index, default="clean")
        results.append(
            {
                "case": item.name,
                "section": item.section,
                "outcome": outcome,
                "findings": [f"{o}: {d}" for o, d in bench.findings],
                "seconds": round(time.monotonic() - start, 1),
            }
        )
        print(f"{number:2d} {item.section:17s} {item.name:50s} {outcome}", flush=True)
        for o, d in bench.findings:
            print(f"     {o}: {d}", flush=True)
        shutil.rmtree(scratch, ignore_errors=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("bench-output/hostile"))
    parser.add_argument(
        "--src",
        type=Path,
        default=Path(__file__).resolve().parents[1] / "src",
        help="the brainmri source tree to run (default: this checkout's)",
    )
    parser.add_argument("--only", help="run the cases whose name contains TEXT, or a section")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    bench = Bench(args.out.resolve(), args.src.resolve())
    bench.prepare()
    results = run_cases(bench, args.only, args.out.resolve() / "cases")
    counts = {outcome: sum(r["outcome"] == outcome for r in results) for outcome in OUTCOMES}
    print(f"\n{len(results)} cases on {args.src}:")
    for outcome, n in counts.items():
        if n or outcome in ("data loss", "writes into DATA", "hang", "OOM", "traceback", "silent wrong", "5xx"):
            print(f"  {outcome:17s} {n}")
    doc = {"src": str(args.src), "cases": results, "counts": counts}
    (args.out / "hostile.json").write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
