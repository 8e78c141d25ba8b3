"""Output files: complete or absent, never half-written, and never among the inputs.

Every result file is written atomically (:func:`atomic_path`). Before a
command writes anything, :func:`check_output_folder` refuses an output
folder that it could not create or write, or that lies inside one of the
command's input folders (a dataset must never receive figures or results).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np

from brainmri.errors import ConfigError

#: Called with the path of every file :func:`atomic_path` is about to write (see :func:`recording_writes`).
_BEFORE_WRITE: ContextVar[Callable[[Path], None] | None] = ContextVar("brainmri_before_write", default=None)


@contextmanager
def recording_writes(before_write: Callable[[Path], None]) -> Iterator[None]:
    """Within the block (in this thread), :func:`atomic_path` calls ``before_write(path)`` before it writes ``path``.

    ``before_write`` may raise to refuse the write; :class:`brainmri.outputs.OutputFolder`
    uses it to record what a command writes in its folder.
    """
    token = _BEFORE_WRITE.set(before_write)
    try:
        yield
    finally:
        _BEFORE_WRITE.reset(token)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` on success.

    On failure the temporary file is removed and ``path`` is left as it was;
    an ``OSError`` raised without a file name (a full disk in ``write``)
    is raised again naming ``path``.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.txt"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_text("done")
    >>> target.read_text()
    'done'
    """
    path = Path(path)
    before_write = _BEFORE_WRITE.get()
    if before_write is not None:
        before_write(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.touch(exist_ok=False)  # honours the umask, unlike tempfile.mkstemp (always 0600)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except OSError as exc:
        if exc.filename is None:  # a failed write() names no file: name the one that was being written
            raise OSError(exc.errno, exc.strerror, str(path)) from exc
        raise
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


def write_json(path: str | Path, data) -> Path:
    """Write ``data`` as indented JSON, atomically (numpy scalars and arrays allowed)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=_default) + "\n", encoding="utf-8")
    return Path(path)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def check_output_folder(path: str | Path, option: str, *, inputs: Iterable[str | Path] = ()) -> Path:
    """Refuse an output folder that cannot be used, without writing anything.

    Parameters
    ----------
    path : path
        The output folder; it may not exist yet.
    option : str
        The option that named it (``--out``), for the message.
    inputs : iterable of path
        Input files and folders; ``path`` must be none of the folders and lie
        below none of them (symbolic links resolved). The folder of a CSV
        manifest counts as an input folder: its images are there.

    Returns
    -------
    Path
        ``path`` as given.

    Raises
    ------
    ConfigError
        ``path`` is an existing file, lies under a file or a folder without
        write permission, or is equal to or inside an input folder.
    """
    path = Path(path)
    resolved = path.resolve()
    for source in input_folders(inputs):
        if resolved == source or source in resolved.parents:
            raise ConfigError(
                f"{option} {path}: lies inside the input folder {source}, which must stay unchanged; "
                "choose a folder outside it"
            )
    if path.exists() and not path.is_dir():
        raise ConfigError(f"{option} {path}: is an existing file, not a folder; choose a new or empty folder")
    existing = next(p for p in (path, *path.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(
            f"{option} {path}: {existing} is a file, so no folder can be created there; choose another folder"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(
            f"{option} {path}: no permission to write in {existing}; choose another folder or change its permissions"
        )
    problem = _cannot_create_in(existing) if existing != path else None
    if problem:
        raise ConfigError(f"{option} {path}: cannot write in {existing} ({problem}); choose another folder")
    return path


def input_folders(inputs: Iterable[str | Path]) -> list[Path]:
    """The folders that ``inputs`` name, resolved: each folder, and the folder of each CSV manifest.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp()).resolve()
    >>> input_folders([root / "m.csv", root / "scan.png"]) == [root]
    True
    """
    folders = []
    for source in inputs:
        source = Path(source).resolve()
        if source.is_dir():
            folders.append(source)
        elif source.suffix.lower() == ".csv":
            folders.append(source.parent)
    return folders


def _cannot_create_in(folder: Path) -> str | None:
    """Why nothing can be created in the existing ``folder`` (tried with a hidden folder, removed at once), or None.

    Permission bits do not tell it all: root may write anywhere they allow, yet
    not in ``/proc``. Tried only where the output folder is to be created;
    an existing one is judged by ``os.access``, which also sees a read-only
    mount.
    """
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".brainmri-probe-", dir=folder))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file's content."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
