"""A benchmark's output folder: brainmri's own (:class:`~brainmri.outputs.OutputFolder`), resumed or restarted.

``run.json`` marks a folder as a brainmri benchmark run: it names the tool,
the command, the version and the fingerprint of the configuration. The same
configuration resumes from the finished units; another one is refused
unless ``--restart``, which discards exactly the files the earlier run
recorded writing (:func:`~brainmri.outputs.discard_written`).

:func:`check_run_folder` decides all of this without writing, so that a
refused command leaves nothing behind; :func:`start_run_folder` then
writes ``run.json``.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from brainmri.errors import ConfigError
from brainmri.outputs import OutputFolder

COMMAND = "benchmark"


def run_folder(out: str | Path) -> OutputFolder:
    """The benchmark's ``--out`` folder."""
    return OutputFolder(out, COMMAND)


def read_run_file(out: str | Path) -> dict | None:
    """The ``run.json`` of a brainmri benchmark folder, or None when there is none.

    Raises
    ------
    ConfigError
        ``run.json`` exists but is not one that brainmri benchmark wrote.
    """
    run = run_folder(out).read_run()
    if run is not None and not isinstance(run.get("fingerprint"), str):
        raise ConfigError(
            f"{Path(out) / 'run.json'}: not a run file written by brainmri, so the folder is not "
            "brainmri's to write in; choose a new or empty --out"
        )
    return run


def check_run_folder(out: str | Path, config, *, restart: bool = False, inputs: Iterable[str | Path] = ()) -> None:
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
        The datasets; ``out`` must neither lie inside them nor contain them.

    Raises
    ------
    ConfigError
        See :mod:`brainmri.outputs`; the message names the folder and what to do.
    """
    run = run_folder(out).check(inputs=inputs, restart=restart)
    if run is not None:
        read_run_file(out)
        if run["fingerprint"] != config.fingerprint() and not restart:
            raise ConfigError(
                f"{out} holds a benchmark run with {config.changes_since(run)}; choose another --out or add --restart"
            )


def start_run_folder(out: str | Path, record: dict, *, restart: bool = False) -> Path:
    """Create ``out``, discard an earlier run's files when ``restart``, and write ``run.json``.

    Call :func:`check_run_folder` first: this function trusts that ``out`` is brainmri's.
    ``record`` is :meth:`BenchmarkConfig.run_record` (fingerprint, settings, code versions).

    Returns
    -------
    Path
        The ``run.json`` written.
    """
    folder = run_folder(out)
    with folder.recording():
        return folder.start(record, restart=restart)
