"""Atomic result files: complete or absent, never half-written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from brainmri.files import atomic_path, write_json, write_text


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
