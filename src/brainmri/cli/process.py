"""How a command stops: SIGTERM as Ctrl-C, worker processes that end with their parent, one line for an OS error."""

from __future__ import annotations

import os
import signal
import threading
import time
from contextlib import contextmanager


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it stops the command like Ctrl-C."""


def _raise_terminated(signum, frame):
    raise Terminated


@contextmanager
def sigterm_as_interrupt():
    """Within the block, SIGTERM raises :class:`Terminated` (a ``KeyboardInterrupt``) in the main thread.

    Work then stops as on Ctrl-C: joblib aborts its workers, atomic writes
    remove their temporary files, and finished units stay for a resume.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_with_parent() -> None:
    """Worker initializer: end this worker within a second of its parent's death.

    A loky worker whose parent was killed (SIGKILL, or a crash) otherwise
    waits for its idle timeout (300 s) before it exits, holding its memory.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="brainmri-exit-with-parent", daemon=True).start()


def workers_exit_with_parent() -> None:
    """Make joblib's default process backend (loky) start workers that exit with this process.

    Registered as the default backend rather than set with
    ``joblib.parallel_config(backend=...)``, which would override the thread
    preference of scikit-learn's forests.
    """
    from functools import partial

    from joblib import register_parallel_backend
    from joblib.parallel import LokyBackend

    register_parallel_backend("brainmri-loky", partial(LokyBackend, initializer=_exit_with_parent), make_default=True)


def os_error_line(exc: OSError, resume_hint: str | None) -> str:
    """One line for an operating-system error that stopped a command: what, where, and what to do."""
    import errno

    where = f"{exc.filename}: " if exc.filename else ""
    what = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some space, or choose an output folder on another disk"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "check the permissions of that path, or choose another output folder"
    else:
        fix = "check that path and the disk it is on"
    rerun = f"; then {resume_hint}" if resume_hint else "; then run the command again"
    return f"{where}{what} (files written completely so far are kept, no half-written file is left); {fix}{rerun}"
