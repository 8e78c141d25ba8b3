"""Time `brainmri audit` on a dataset and report its peak memory.

Usage: .venv/bin/python bench/audit_speed.py [DATA] [--repeat N]
Default DATA: ../shared/datasets/brain-tumor-mri. Runs the real CLI in a
subprocess (cold start included) and reads the peak resident memory of the
process tree from `resource.getrusage(RUSAGE_CHILDREN)`.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", nargs="?", default=str(ROOT.parent / "shared/datasets/brain-tumor-mri"))
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    brainmri = Path(sys.executable).with_name("brainmri")
    times = []
    for _ in range(args.repeat):
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            subprocess.run(
                [str(brainmri), "audit", args.data, "--out", out, "-q"], check=True, stdout=subprocess.DEVNULL
            )
            times.append(time.perf_counter() - start)
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print(f"audit of {args.data}: " + ", ".join(f"{t:.1f}s" for t in times) + f" (best {min(times):.1f}s)")
    print(f"peak memory of the largest process: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
