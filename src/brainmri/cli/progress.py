"""Progress and messages of a command on stderr: bars on a terminal, plain lines elsewhere, log records as lines."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from typing import TextIO

logger = logging.getLogger("brainmri")


#: Seconds between two plain progress lines of one stage when stderr is not a terminal.
PLAIN_EVERY_S = 10.0


class Reporter:
    """Messages and progress of one command on a stream (stderr).

    On a terminal a stage shows a tqdm bar, closed when the stage ends (at the
    next message, or when the command ends). Elsewhere (a log file, a pipe)
    there are no escape codes: a stage writes a plain line at most every
    :data:`PLAIN_EVERY_S` seconds. Either way a finished stage leaves one line
    with its count and time. With ``quiet`` only log records of level ERROR
    get through (see :func:`configure_logging`).

    Parameters
    ----------
    stream : file
    quiet : bool
        Show no messages and no progress.
    """

    def __init__(self, stream: TextIO, *, quiet: bool = False):
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty()
        self._stages: list[Stage] = []

    def stage(self, desc: str, total: int | None = None) -> Stage:
        """A progress callback: call it with the number of images just done."""
        stage = Stage(self, desc, total)
        self._stages.append(stage)
        return stage

    def say(self, message: str) -> None:
        """A message line; it ends the stages in progress (a new step has begun)."""
        if not self.quiet:
            self.close()
            self.write(message)

    def write(self, line: str) -> None:
        """A line, written so that an open bar stays intact."""
        if self.tty:
            from tqdm import tqdm

            tqdm.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        """End every stage in progress."""
        for stage in self._stages:
            stage.close()


class Stage:
    """One counted step of a :class:`Reporter` (``reading``, ``features``)."""

    def __init__(self, reporter: Reporter, desc: str, total: int | None):
        self.reporter, self.desc, self.total = reporter, desc, total
        self.count = 0
        self.started: float | None = None
        self.shown = 0.0
        self.bar = None

    def __call__(self, n: int) -> None:
        if self.reporter.quiet:
            return
        now = time.monotonic()
        if self.started is None:
            self.started = self.shown = now
            if self.reporter.tty:
                from tqdm import tqdm

                self.bar = tqdm(total=self.total, desc=self.desc, unit="img", file=self.reporter.stream, leave=False)
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
        elif now - self.shown >= PLAIN_EVERY_S:
            self.shown = now
            self.reporter.write(f"{self.desc}: {self._done()} images ({now - self.started:.0f} s)")

    def _done(self) -> str:
        return f"{self.count}/{self.total}" if self.total else str(self.count)

    def close(self) -> None:
        if self.started is None:
            return
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.reporter.write(f"{self.desc}: {self._done()} images in {time.monotonic() - self.started:.1f} s")
        self.started, self.count = None, 0


@contextmanager
def progress(args, total: int | None, desc: str):
    """A progress callback of ``args.reporter`` for the ``with`` block; the stage ends with it."""
    stage = args.reporter.stage(desc, total)
    try:
        yield stage
    finally:
        stage.close()


class ReporterHandler(logging.Handler):
    """Log records as lines of a :class:`Reporter`, so that they do not break its progress bars."""

    def __init__(self, reporter: Reporter):
        super().__init__()
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.reporter.write(self.format(record))
        except Exception:  # logging must never raise; the standard handlers do the same
            self.handleError(record)


def configure_logging(args) -> None:
    """Log brainmri's messages to stderr through ``args.reporter`` (the root logger is left to the host program)."""
    level = logging.ERROR if args.quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = ReporterHandler(args.reporter)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
