"""A bundle trained on brain-tumor-mri, tested on another source: TCGA lower-grade gliomas (issue 23).

Usage: .venv/bin/python bench/lgg_tcga.py BUNDLE LGG_DIR [--out DIR] [--predictions CSV] [--adapt none|adabn|tent]
       [--seed 0]

LGG_DIR is the lgg-tcga collection built by ``../shared/datasets/lgg-tcga-recipe/make_lgg_tcga.py`` (its
``manifest.csv``: case, institution, slice, sequence, class, mask_pixels, file). The script runs ``brainmri predict``
on its six folders (``glioma|nomask`` x ``t1pre|flair|t1post``; skipped with --predictions), joins the predictions
with the manifest and reports, per sequence and per institution:

* glioma recall: the share of glioma slices whose tumour mask covers >= 1% of the slice (``mask_pixels >= 655`` of
  256 x 256) that the model calls a tumour, any tumour class (the target of issue 23: >= 0.90 on every sequence),
  and of all glioma slices;
* the share of tumour-free slices (``nomask``: slices of the same glioma patients without visible abnormality, NOT
  healthy brains) called ``notumor``; no target;
* the out-of-distribution flag (``unlike_training``): the share of slices flagged, and of the wrong calls flagged.

Intervals: 95% percentile bootstrap over patients (cases), 1,000 resamples, seeded. Results go to
``DIR/lgg_tcga.json`` and a table on stdout.
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

MASK_MIN = 655  # 1% of a 256 x 256 slice
SEQUENCES = ("t1pre", "flair", "t1post")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path)
    parser.add_argument("lgg", type=Path)
    parser.add_argument("--out", type=Path, default=Path("/tmp/brainmri-lgg-tcga"))
    parser.add_argument("--predictions", type=Path, help="an earlier predictions CSV of these images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--adapt", default="none", help="test-time adaptation of predict (none, adabn, tent)")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    predictions = args.predictions or _predict(
        args.bundle, args.lgg, args.out / "predictions.csv", args.adapt, args.seed
    )
    rows = _join(args.lgg, predictions)
    report = {"bundle": str(args.bundle), "adapt": args.adapt, "n_images": len(rows), "by_sequence": {}}
    report["by_institution"] = {}
    for seq in SEQUENCES:
        report["by_sequence"][seq] = _scores([r for r in rows if r["sequence"] == seq], args.seed)
    for inst in sorted({r["institution"] for r in rows}):
        report["by_institution"][inst] = _scores([r for r in rows if r["institution"] == inst], args.seed)
    report["all"] = _scores(rows, args.seed)
    (args.out / "lgg_tcga.json").write_text(json.dumps(report, indent=1))
    _print(report)


def _predict(bundle: Path, lgg: Path, out: Path, adapt: str, seed: int) -> Path:
    folders = [lgg / cls / seq for cls in ("glioma", "nomask") for seq in SEQUENCES]
    if adapt != "none":
        # predict adapts to each batch of 64 images in reading order; a folder holds one class of one sequence, and
        # batches of one class would give AdaBN and Tent label information. A folder of links in a seeded random
        # order mixes classes and sequences in every batch, as a clinic's stream would.
        files = sorted(p for folder in folders for p in folder.glob("*.png"))
        mixed = out.parent / f"mixed-{seed}"
        if not mixed.exists():
            mixed.mkdir()
            for k, index in enumerate(np.random.default_rng(seed).permutation(len(files))):
                (mixed / f"{k:05d}.png").symlink_to(files[index].resolve())
        folders = [mixed]
    brainmri = Path(sys.executable).with_name("brainmri")
    command = [str(brainmri), "predict", str(bundle), *map(str, folders), "--out", str(out), "--force", "-q"]
    subprocess.run([*command, "--adapt", adapt], check=True)
    return out


def _join(lgg: Path, predictions: Path) -> list[dict]:
    manifest = {str((lgg / r["file"]).resolve()): r for r in csv.DictReader(open(lgg / "manifest.csv"))}
    rows = []
    with open(predictions) as f:
        for p in csv.DictReader(f):
            m = manifest.get(str(Path(p["path"]).resolve()))
            if m is None or m["status"] != "kept":
                continue
            rows.append(
                {
                    "case": m["case"],
                    "institution": m["institution"],
                    "sequence": m["sequence"],
                    "cls": m["class"],
                    "mask": int(m["mask_pixels"]),
                    "tumour": p["predicted"] != "notumor",
                    "predicted": p["predicted"],
                    "flagged": p.get("unlike_training") == "true",
                }
            )
    return rows


def _share(rows: list[dict], hit, seed: int) -> dict | None:
    """The share of ``rows`` where ``hit(row)``, with a 95% bootstrap interval over cases."""
    if not rows:
        return None
    cases = sorted({r["case"] for r in rows})
    index = {c: k for k, c in enumerate(cases)}
    hits = np.zeros(len(cases))
    counts = np.zeros(len(cases))
    for r in rows:
        hits[index[r["case"]]] += bool(hit(r))
        counts[index[r["case"]]] += 1
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(cases), size=(1000, len(cases)))
    boot = hits[draws].sum(axis=1) / np.maximum(counts[draws].sum(axis=1), 1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return {"value": round(hits.sum() / counts.sum(), 4), "ci": [round(low, 4), round(high, 4)], "n": len(rows)}


def _scores(rows: list[dict], seed: int) -> dict:
    large = [r for r in rows if r["cls"] == "glioma" and r["mask"] >= MASK_MIN]
    glioma = [r for r in rows if r["cls"] == "glioma"]
    free = [r for r in rows if r["cls"] == "nomask"]
    wrong = large + free
    return {
        "glioma_recall_mask_ge_1pct": _share(large, lambda r: r["tumour"], seed),
        "glioma_recall_all": _share(glioma, lambda r: r["tumour"], seed),
        "tumour_free_called_notumor": _share(free, lambda r: not r["tumour"], seed),
        "flagged_unlike_training": _share(rows, lambda r: r["flagged"], seed),
        "wrong_calls_flagged": _share(
            [r for r in wrong if r["tumour"] == (r["cls"] == "nomask")], lambda r: r["flagged"], seed
        ),
        "predicted": {c: sum(r["predicted"] == c for r in large) for c in sorted({r["predicted"] for r in rows})},
    }


def _print(report: dict) -> None:
    def cell(block):
        return (
            "-"
            if block is None
            else f"{block['value']:.3f} [{block['ci'][0]:.3f}, {block['ci'][1]:.3f}] n={block['n']}"
        )

    keys = ("glioma_recall_mask_ge_1pct", "glioma_recall_all", "tumour_free_called_notumor", "flagged_unlike_training")
    print(f"lgg-tcga, {report['n_images']} slices; bundle {report['bundle']}")
    print("part | " + " | ".join(keys))
    for name, part in [*report["by_sequence"].items(), *report["by_institution"].items(), ("all", report["all"])]:
        print(f"{name} | " + " | ".join(cell(part[k]) for k in keys) + f" | large gliomas called: {part['predicted']}")


if __name__ == "__main__":
    main()
