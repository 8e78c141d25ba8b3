"""Output folders that brainmri owns, and what it may overwrite or delete in them.

Every command that writes a folder (``audit``, ``benchmark``, ``explain``,
``regions``, ``tune``, ``serve --keep-uploads``) marks it with ``run.json``,
which names the tool and the command, and records every file it writes in a
hidden ledger, ``.brainmri-files`` (one path per line, relative to the
folder). brainmri then keeps to these rules:

* a folder without ``run.json`` must be new or empty (hidden entries
  aside): nobody's ``results.json`` or ``explain.json`` is overwritten
  because its name matches one of ours;
* a ``run.json`` that is not brainmri's, or that names another command, is
  refused, never replaced;
* the folder must not contain an input of the command (a dataset kept in an
  earlier run's folder would be at the mercy of every rerun);
* a file about to be written over must be one that brainmri wrote there
  (it is in the ledger), else the command stops and names it;
* ``--restart`` deletes exactly the files of the ledger, then the folders
  that held them if nothing else is left in them; a file a user put among
  them stays.

Within :meth:`OutputFolder.recording`, every file written through
:func:`brainmri.files.atomic_path` inside the folder is checked and recorded
before it is written (the report, figures, units, checkpoints); a file
written by another library (Optuna's journal) is recorded with
:meth:`OutputFolder.file`.

:meth:`OutputFolder.check` decides without writing anything, so that a
refused command leaves nothing behind; :meth:`OutputFolder.start` then
writes ``run.json``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from brainmri.errors import ConfigError
from brainmri.files import check_output_folder, recording_writes, write_json
from brainmri.version import __version__

RUN_FILE = "run.json"
TOOL = "brainmri"
#: The ledger of the files brainmri wrote in a folder (hidden, so an empty run folder stays "empty").
LEDGER = ".brainmri-files"
#: The temporary file of :func:`brainmri.files.atomic_path`, left behind only by a killed process.
_TEMPORARY = re.compile(r"^\.(?P<name>.+)\.[0-9a-f]{8}\.tmp$")


def record_written(folder: str | Path, *names: str) -> None:
    """Add ``names`` (paths relative to ``folder``, ``/``-separated) to its ledger.

    Appending lines is atomic enough for this purpose: each line is one
    short ``write`` to a file opened with ``O_APPEND``.
    """
    folder = Path(folder)
    known = written(folder)
    new = [name for name in names if name not in known]
    if new:
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / LEDGER, "a", encoding="utf-8") as fh:
            fh.write("".join(f"{name}\n" for name in new))


def written(folder: str | Path) -> set[str]:
    """The paths recorded in ``folder``'s ledger (none when it has no ledger)."""
    try:
        lines = (Path(folder) / LEDGER).read_text(encoding="utf-8").splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return set()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{Path(folder) / LEDGER}: cannot be read ({exc}); choose a new --out") from None
    return {line for line in lines if _safe(line)}


def _safe(name: str) -> bool:
    """A ledger line that names something inside the folder (never ``..``, never absolute)."""
    parts = name.rstrip("/").split("/")
    return bool(name) and not name.startswith("/") and all(p not in ("", ".", "..") for p in parts)


def discard_written(folder: str | Path) -> list[str]:
    """Delete the files that the ledger of ``folder`` lists, and nothing else; the names deleted.

    Folders that held deleted files are removed when nothing is left in
    them; the temporary files of interrupted atomic writes of listed files
    go too. A listed name that is now a folder (not what brainmri wrote) stays.
    """
    folder = Path(folder)
    real = folder.resolve()
    deleted = []
    for name in sorted(written(folder)):
        path = folder / name
        if path.parent.resolve() != real.joinpath(*name.split("/")[:-1]):
            continue  # a folder on the way was replaced by a link: what it leads to is not brainmri's
        if path.is_symlink() or path.is_file():
            path.unlink()
            deleted.append(name)
        _remove_temporaries(path)
    for name in sorted(written(folder), key=lambda n: -n.count("/")):
        for parent in (folder / name).parents:
            if parent == folder or folder not in parent.parents:
                break
            _remove_if_empty(parent)
    (folder / LEDGER).unlink(missing_ok=True)
    return deleted


def _remove_temporaries(path: Path) -> None:
    if path.parent.is_dir():
        for leftover in path.parent.glob(f".{path.name}.*.tmp"):
            match = _TEMPORARY.match(leftover.name)
            if match and match["name"] == path.name and leftover.is_file():
                leftover.unlink()


def _remove_if_empty(path: Path) -> None:
    try:
        path.rmdir()
    except OSError:  # not empty (a file brainmri did not write stays), or gone
        pass


def containing_inputs(out: Path, inputs: Iterable[str | Path]) -> list[Path]:
    """The ``inputs`` that are ``out`` itself or lie inside it (symbolic links resolved)."""
    resolved = out.resolve()
    return [Path(p) for p in inputs if resolved == Path(p).resolve() or resolved in Path(p).resolve().parents]


class OutputFolder:
    """The ``--out`` folder of one brainmri command.

    Parameters
    ----------
    path : path
        The folder; it may not exist yet.
    command : str
        The command that writes it (``"audit"``, ``"benchmark"``...), as
        its ``run.json`` records it.
    option : str
        The option that named the folder, for messages.
    """

    def __init__(self, path: str | Path, command: str, *, option: str = "--out"):
        self.path = Path(path)
        self.command = command
        self.option = option

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def read_run(self) -> dict | None:
        """The folder's ``run.json`` when brainmri's ``command`` wrote it; None when there is none.

        Raises
        ------
        ConfigError
            ``run.json`` exists but is not brainmri's, or names another command.
        """
        path = self.path / RUN_FILE
        if not path.exists():
            return None
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError):
            doc = None
        except OSError as exc:
            raise ConfigError(f"{path}: cannot be read ({exc.strerror}); choose a new or empty {self.option}") from None
        if not isinstance(doc, dict) or doc.get("tool") != TOOL:
            raise ConfigError(
                f"{path}: not a run file written by brainmri, so the folder is not brainmri's to write "
                f"in; choose a new or empty {self.option}"
            )
        command = doc.get("command")
        if command != self.command:
            raise ConfigError(
                f"{self.option} {self.path}: holds the output of brainmri {command}, not of brainmri "
                f"{self.command}; choose a new or empty folder"
            )
        return doc

    def check(self, *, inputs: Iterable[str | Path] = (), restart: bool = False) -> dict | None:
        """Refuse a folder that this command must not write in, without writing anything.

        Parameters
        ----------
        inputs : iterable of path
            The command's input files and folders: the folder may neither lie
            inside one nor contain one.
        restart : bool
            The earlier run's files will be discarded (the message says so).

        Returns
        -------
        dict or None
            The earlier run's ``run.json``, or None for a new or empty folder.

        Raises
        ------
        ConfigError
            See the module docstring; the message names the folder and what to do.
        """
        inputs = list(inputs)
        check_output_folder(self.path, self.option, inputs=inputs)
        if not self.path.is_dir():
            return None
        inside = containing_inputs(self.path, inputs)
        if inside:
            raise ConfigError(
                f"{self.option} {self.path}: holds the input {inside[0]}, which brainmri must never "
                "overwrite or delete; choose an output folder that holds no input"
            )
        run = self.read_run()
        if run is None:
            entries = sorted(p.name for p in self.path.iterdir() if not p.name.startswith("."))
            if entries:
                shown = ", ".join(entries[:3]) + (f" and {len(entries) - 3} more" if len(entries) > 3 else "")
                action = "discards" if restart else "writes in"
                raise ConfigError(
                    f"{self.option} {self.path}: holds {shown} but no brainmri {RUN_FILE}; brainmri only "
                    f"{action} folders of its own runs, so choose a new or empty folder"
                )
        elif not (self.path / LEDGER).is_file() and any(p.name != RUN_FILE for p in self.path.iterdir()):
            raise ConfigError(
                f"{self.option} {self.path}: written by an earlier brainmri that kept no record of its "
                "files, so none of them is overwritten or deleted; choose a new or empty folder"
            )
        return run

    def start(self, record: dict | None = None, *, restart: bool = False) -> Path:
        """Create the folder, discard an earlier run's files when ``restart``, and write ``run.json``.

        Call :meth:`check` first: this method trusts that the folder is brainmri's.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        if restart:
            discard_written(self.path)
        return write_json(
            self.file(RUN_FILE),
            {"tool": TOOL, "brainmri_version": __version__, "command": self.command, **(record or {})},
        )

    @contextmanager
    def recording(self) -> Iterator[None]:
        """Within the block, every file :func:`~brainmri.files.atomic_path` writes in the folder goes through
        :meth:`file` (refused when foreign, recorded otherwise)."""
        root = self.path.resolve()

        def note(path: Path) -> None:
            try:
                name = path.resolve().relative_to(root).as_posix()
            except ValueError:
                return  # not in this folder (a cache, another output)
            self.file(name)

        with recording_writes(note):
            yield

    def file(self, name: str) -> Path:
        """The path of the output ``name`` (relative, ``/``-separated), recorded in the ledger before it is written.

        Raises
        ------
        ConfigError
            A file of that name is there and brainmri did not write it.
        """
        path = self.path / name
        if (path.exists() or path.is_symlink()) and name not in written(self.path):
            raise ConfigError(
                f"{path}: exists and was not written by brainmri, so it is not overwritten; move it "
                f"away, or choose a new {self.option}"
            )
        record_written(self.path, name)
        return path


def check_output_file(
    path: str | Path, option: str, *, force: bool = False, ours=None, inputs: Iterable[str | Path] = ()
) -> Path:
    """Refuse an output file that exists and is not brainmri's, unless ``force``.

    Parameters
    ----------
    path : path
    option : str
        The option that named the file, for messages.
    force : bool
        Overwrite whatever is there (``--force``).
    ours : callable, optional
        ``ours(path) -> bool``: the existing file is one that brainmri wrote
        (an earlier prediction file), which may be replaced.
    inputs : iterable of path
        The file must not lie inside an input folder, nor be an input file.

    Raises
    ------
    ConfigError
    """
    path = Path(path)
    inputs = list(inputs)
    if path.is_dir():
        raise ConfigError(f"{option} {path}: is a folder; name a file")
    if any(Path(p).is_file() and path.resolve() == Path(p).resolve() for p in inputs):
        raise ConfigError(f"{option} {path}: is one of the inputs; name another file")
    check_output_folder(path.parent, option, inputs=[p for p in inputs if Path(p).is_dir()])
    if (path.exists() or path.is_symlink()) and not force and not (ours is not None and _is_ours(ours, path)):
        raise ConfigError(
            f"{option} {path}: exists and brainmri did not write it; choose another name, or add --force "
            "to overwrite it"
        )
    return path


def _is_ours(ours, path: Path) -> bool:
    try:
        return bool(ours(path))
    except (OSError, ValueError, UnicodeDecodeError):
        return False
