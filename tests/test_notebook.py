"""examples/quickstart.ipynb runs from start to end (audit, benchmark, reliability diagram, train, explain), as a user
would run it in Jupyter: executed here cell by cell in a fresh Python kernel."""

from __future__ import annotations

from pathlib import Path

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.system]  # a Jupyter kernel: skipped without nbclient, a failure in CI

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"


def test_the_quickstart_notebook_runs_and_shows_its_tables_and_figures(tmp_path):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    assert not any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")  # stored clean
    client = nbclient.NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, when a cell fails
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    shown = "\n".join(str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", "")) for o in outputs)
    assert "items: 48  readable: 48" in shown  # the audit
    assert "glcm-svm" in shown and "balanced_accuracy" in shown  # the metrics table
    assert "text/html" in str([o.get("data", {}).keys() for o in outputs])  # DataFrames shown as tables
    figures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(figures) == 2  # the reliability diagram and the explained image
