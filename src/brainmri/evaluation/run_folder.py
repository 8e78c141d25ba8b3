"""A benchmark's output folder, and what brainmri may do in it.

``run.json`` marks a folder as a brainmri benchmark run: it names the tool,
the version and the fingerprint of the configuration. brainmri only
overwrites or deletes what a brainmri run of that folder wrote:

* a folder without ``run.json`` must be new or empty (hidden entries
  aside), so nobody's ``results.json`` or ``report.html`` is overwritten and
  ``--restart`` never deletes a ``units/`` that brainmri did not write;
* a ``run.json`` that is not brainmri's (not JSON, or another tool's) is
  refused, never replaced;
* the same configuration resumes from the finished units; another one is
  refused unless ``--restart``, which discards exactly :data:`RUN_OUTPUTS`.

:func:`check_run_folder` decides all of this without writing, so that a
refused command leaves nothing behind; :func:`start_run_folder` then
writes ``run.json``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Iterable

from brainmri import __version__
from brainmri.errors import ConfigError
from brainmri.files import check_output_folder, write_json

RUN_FILE = "run.json"
TOOL = "brainmri"
#: What a benchmark writes in its folder besides ``run.json``; ``--restart`` deletes these and nothing else.
RUN_OUTPUTS = ("units", "audit.json", "results.json", "predictions.csv", "figures", "report.html")


def read_run_file(out: str | Path) -> dict | None:
    """The ``run.json`` of a brainmri run folder, or None when there is none.

    Raises
    ------
    ConfigError
        ``run.json`` exists but is not one that brainmri wrote.
    """
    path = Path(out) / RUN_FILE
    if not path.exists():
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        doc = None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror}); choose a new or empty --out") from None
    if not isinstance(doc, dict) or doc.get("tool") != TOOL or not isinstance(doc.get("fingerprint"), str):
        raise ConfigError(f"{path}: not a run file written by brainmri, so the folder is not brainmri's to write in; "
                          "choose a new or empty --out")
    return doc


def check_run_folder(out: str | Path, config, *, restart: bool = False,
                     inputs: Iterable[str | Path] = ()) -> None:
    """Refuse an output folder that brainmri must not write in, without writing anything.

    Parameters
    ----------
    out : path
        The ``--out`` folder (it may not exist yet).
    config : BenchmarkConfig
        The run about to start (its fingerprint covers arguments and code versions).
    restart : bool
        The earlier run in ``out`` may have other arguments; its outputs will be discarded.
    inputs : iterable of path
        The datasets; ``out`` must not lie inside them.

    Raises
    ------
    ConfigError
        See the module docstring; the message names the folder and what to do.
    """
    out = check_output_folder(out, "--out", inputs=inputs)
    if not out.is_dir():
        return
    run = read_run_file(out)
    if run is None:
        entries = sorted(p.name for p in out.iterdir() if not p.name.startswith("."))
        if entries:
            shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
            action = "discards" if restart else "writes in"
            raise ConfigError(f"--out {out}: holds {shown} but no brainmri {RUN_FILE}; brainmri only {action} "
                              "folders of its own runs, so choose a new or empty folder")
    elif run["fingerprint"] != config.fingerprint() and not restart:
        raise ConfigError(f"{out} holds a benchmark run with {config.changes_since(run)}; "
                          "choose another --out or add --restart")


def start_run_folder(out: str | Path, record: dict, *, restart: bool = False) -> Path:
    """Create ``out``, discard an earlier run's outputs when ``restart``, and write ``run.json``.

    Call :func:`check_run_folder` first: this function trusts that ``out`` is brainmri's.
    ``record`` is :meth:`BenchmarkConfig.run_record` (fingerprint, settings, code versions).

    Returns
    -------
    Path
        The ``run.json`` written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if restart:
        for name in RUN_OUTPUTS:
            path = out / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    return write_json(out / RUN_FILE, {"tool": TOOL, "brainmri_version": __version__, "command": "benchmark", **record})
