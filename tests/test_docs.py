"""The documentation site: its command-line reference is the parser's own help, and it builds strictly, offline."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_command_line_reference_is_the_parsers_help():
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_cli.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr  # stale: run .venv/bin/python docs/gen_cli.py
    page = (ROOT / "docs" / "reference" / "cli.md").read_text()
    assert "## brainmri train" in page and "--nproc N" in page and "openvino" in page


def test_every_method_has_its_page_from_the_registry():
    done = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "gen_methods.py"), "--check"], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr  # stale: run .venv/bin/python docs/gen_methods.py
    page = (ROOT / "docs" / "methods" / "fcm-dwt-dnn.md").read_text()
    assert "7-fold grouped cross-validation (its study's protocol)" in page and "Mohsen" in page
    assert "| `epochs` |" in (ROOT / "docs" / "methods" / "ayadi-cnn.md").read_text()
    site = (ROOT / "mkdocs.yml").read_text()
    assert all(f"methods/{page.name}" in site for page in (ROOT / "docs" / "methods").glob("*.md"))  # in the nav


@pytest.mark.system  # mkdocs-material: skipped without it, a failure in CI
def test_the_site_builds_strictly(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("material")
    mkdocs = shutil.which("mkdocs", path=str(Path(sys.executable).parent)) or "mkdocs"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    done = subprocess.run(
        [mkdocs, "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    api = (tmp_path / "site" / "reference" / "api" / "index.html").read_text()
    assert "BenchmarkResult" in api and "load_model" in api  # the docstrings, rendered by mkdocstrings
