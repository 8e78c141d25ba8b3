"""Atomic result files: complete or absent, never half-written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from brainmri.errors import ConfigError
from brainmri.files import atomic_path, check_output_folder, write_json, write_text


def test_write_json_converts_numpy_and_paths(tmp_path):
    data = {"n": np.int64(3), "x": np.float32(0.5), "a": np.arange(3), "p": Path("a/b")}
    path = write_json(tmp_path / "sub" / "r.json", data)
    assert json.loads(path.read_text()) == {"n": 3, "x": 0.5, "a": [0, 1, 2], "p": "a/b"}
    assert path.read_text().endswith("\n")


def test_write_json_refuses_unknown_types_and_keeps_the_old_file(tmp_path):
    target = write_text(tmp_path / "r.json", "old")
    with pytest.raises(TypeError, match="cannot write object to JSON"):
        write_json(target, {"bad": object()})
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_atomic_path_failure_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "x.txt") as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.name != "posix", reason="permission bits are POSIX")
def test_result_files_honour_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_text(tmp_path / "r.txt", "x")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    "out, message",
    [
        (
            "data",
            r"^--out .*data: lies inside the input folder .*data, which must stay unchanged; choose a folder outside it$",
        ),
        ("data/a/new", r"^--out .*data/a/new: lies inside the input folder"),
        ("alias/new", r"^--out .*alias/new: lies inside the input folder .*data, "),  # a symbolic link to data
        ("file", r"^--out .*file: is an existing file, not a folder; choose a new or empty folder$"),
        ("file/new", r"^--out .*file/new: .*file is a file, so no folder can be created there; choose another folder$"),
    ],
)
def test_check_output_folder_refuses(tmp_path, out, message):
    (tmp_path / "data" / "a").mkdir(parents=True)
    (tmp_path / "alias").symlink_to(tmp_path / "data")
    (tmp_path / "file").write_text("keep")
    with pytest.raises(ConfigError, match=message):
        check_output_folder(tmp_path / out, "--out", inputs=[tmp_path / "data"])
    assert (tmp_path / "file").read_text() == "keep" and not (tmp_path / "data" / "a" / "new").exists()


@pytest.mark.parametrize("out", ["results", "data-results/new", "lists-runs"])
def test_check_output_folder_accepts_and_writes_nothing(tmp_path, out):
    (tmp_path / "data").mkdir()
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "data.csv").write_text("path,label\n")
    inputs = [tmp_path / "data", tmp_path / "lists" / "data.csv"]
    assert check_output_folder(tmp_path / out, "--out", inputs=inputs) == tmp_path / out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "lists"]


def test_the_folder_of_a_csv_manifest_is_an_input_folder(tmp_path):
    # Issue 20: `benchmark DATA.csv --out CSV_DIR/out` wrote among the images the CSV lists.
    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "data.csv").write_text("path,label\n")
    with pytest.raises(
        ConfigError,
        match=r"^--out .*lists/out: lies inside the input folder .*lists, which must stay "
        "unchanged; choose a folder outside it$",
    ):
        check_output_folder(tmp_path / "lists" / "out", "--out", inputs=[tmp_path / "lists" / "data.csv"])


def test_a_folder_where_nothing_can_be_created_is_refused_at_once():
    # Issue 20: `--out /proc/x` passed the permission check (root may write anywhere the bits allow) and failed
    # after training.
    with pytest.raises(
        ConfigError,
        match=r"^--out /proc/brainmri-x: cannot write in /proc \(.+\); choose another "
        "folder$",
    ):
        check_output_folder("/proc/brainmri-x", "--out")
