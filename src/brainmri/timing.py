"""Where a command's time goes: seconds per stage, for its last line and its JSON output (``timing_s``).

>>> watch = Stopwatch()
>>> with watch("reading"):
...     pass
>>> sorted(watch.seconds)
['reading']
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

#: The stages of prediction, training and benchmarks, in the order the terminal names them, with their words.
STAGES = {
    "starting": "starting (interpreter, command line)",
    "loading": "loading (imports, bundle)",
    "reading": "reading (waited for)",
    "preprocessing": "preprocessing",
    "features": "preprocessing and features",
    "network": "network",
    "training": "training",
    "methods": "methods (fit, calibrate, test)",
    "ood": "out-of-distribution score",
    "validation": "internal validation",
    "summary": "metrics and tests",
    "explaining": "explaining",
    "writing": "writing",
}


class Stopwatch:
    """Seconds spent per stage, summed over every time a stage runs (``with watch("network"): ...``)."""

    def __init__(self, *, since_process_start: bool = False) -> None:
        """``since_process_start``: the time from the process's start to now is the stage ``starting`` (where the
        operating system says when the process started: Linux), so that ``total`` is the whole command's."""
        self.seconds: dict[str, float] = {}
        self._start = time.perf_counter()
        age = process_age() if since_process_start else None
        if age is not None:
            self.seconds["starting"] = age
            self._start -= age

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

    def report(self) -> dict[str, float]:
        """The seconds of every stage that ran, and ``total`` since the watch was made, rounded to milliseconds."""
        known = [s for s in STAGES if s in self.seconds] + sorted(set(self.seconds) - set(STAGES))
        return {**{s: round(self.seconds[s], 3) for s in known}, "total": round(time.perf_counter() - self._start, 3)}


def process_age() -> float | None:
    """Seconds since this process started, from ``/proc`` (Linux; 10 ms resolution), or None where unknown."""
    import os

    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            started = int(fh.read().rsplit(")", 1)[1].split()[19])  # field 22, starttime: clock ticks after boot
        with open("/proc/uptime", encoding="ascii") as fh:
            uptime = float(fh.read().split()[0])
        return max(0.0, uptime - started / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def timing_line(timing: dict[str, float], n_images: int | None = None) -> str:
    """The terminal's line of :meth:`Stopwatch.report`.

    >>> timing_line({"network": 1.5, "writing": 0.25, "total": 2.0}, 100)
    'time: network 1.50 s, writing 0.25 s; total 2.00 s (50 images/s)'
    """
    parts = ", ".join(f"{STAGES.get(k, k)} {v:.2f} s" for k, v in timing.items() if k != "total")
    rate = f" ({n_images / timing['total']:.0f} images/s)" if n_images and timing["total"] > 0 else ""
    return f"time: {parts}; total {timing['total']:.2f} s{rate}"
