"""Print a benchmark's shift results as a Markdown table: accuracy per shift at each severity, per method.

Usage: python bench/shift_table.py RUN_FOLDER [RUN_FOLDER ...]
Each row is one method (``METHOD+adabn`` rows included) of one run; columns: clean accuracy on the shifted
sample, the mean over shifts per severity (points lost against clean) and each shift at each severity.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(folders: list[str]) -> None:
    rows, header = [], None
    for folder in folders:
        results = json.loads((Path(folder) / "results.json").read_text(encoding="utf-8"))
        severities = [str(s) for s in results["shift"]["severities"]]
        for method, entry in results["methods"].items():
            shift = entry["shift"]
            names = list(shift["shifts"])
            if header is None:
                header = (
                    ["run", "method", "clean"]
                    + [f"mean, severity {s}" for s in severities]
                    + [f"{n} {s}" for n in names for s in severities]
                )
            mean = shift["mean_over_shifts"]
            clean = mean["clean"]["accuracy"]
            cells = [Path(folder).name, method, f"{clean:.3f}"]
            cells += [f"**{mean[s]['accuracy']:.3f}** ({100 * (mean[s]['accuracy'] - clean):+.1f})" for s in severities]
            cells += [f"{shift['shifts'][n][s]['accuracy']['value']:.3f}" for n in names for s in severities]
            rows.append(cells)
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for cells in rows:
        print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
