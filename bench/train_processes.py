"""Training in 1 and 2 data-parallel processes (issue 24): ``brainmri train --nproc N`` on brain-tumor-mri.

Usage: .venv/bin/python bench/train_processes.py OUT [--epochs 2] [--nproc 1 2] [--method ayadi-cnn] [--data DIR]
       [--device cpu]

For each N: ``brainmri train Training --method M --params M.epochs=E --nproc N --no-validation --seed 0`` into
OUT/nproc-N (a bundle already there is measured, not trained again: delete it to retrain; features cached in
OUT/cache, filled by a first run that is not timed: every timed run reads the same
cached arrays), then ``brainmri predict --runtime torch`` of the official Testing folder (1,311 images). Reported per N: the
training images/s of each epoch (the loop's own figure: the items of the epoch over its seconds, process start not
included), the training stage's seconds (``timing_s.training``: process start, rendezvous and the validation of every
epoch included), the ratio of each to N = 1, and the official-test accuracy with its 95% Wilson interval. Results:
OUT/train_processes.json and a table on stdout. With ``--device cuda`` and N GPUs, process r trains on cuda:r.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

from scipy.stats import binomtest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--method", default="ayadi-cnn")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    root = args.data / "brain-tumor-mri"
    common = ["--method", args.method, "--no-validation", "--seed", "0", "--device", args.device, "-q"]
    common += ["--cache-dir", str(args.out / "cache")]
    params = ["--params", f"{args.method}.epochs={args.epochs}"]
    warm = args.out / "warm"
    if not (warm / "manifest.json").exists():  # fills the feature cache: every timed run then reads the same arrays
        brainmri("train", str(root / "Training"), *common, "--params", f"{args.method}.epochs=1", "--out", str(warm))
    report = {"method": args.method, "epochs": args.epochs, "device": args.device, "cores": os.cpu_count(), "runs": {}}
    for n in args.nproc:
        bundle = args.out / f"nproc-{n}"
        if not (bundle / "manifest.json").exists():  # a bundle already there is measured again, not retrained
            brainmri("train", str(root / "Training"), *common, *params, "--nproc", str(n), "--out", str(bundle))
        report["runs"][str(n)] = measure(bundle, root / "Testing", args.out / f"nproc-{n}.json")
    base = report["runs"].get("1")
    for run in report["runs"].values():
        if base:
            run["epoch_speed_ratio"] = round(run["images_per_s"] / base["images_per_s"], 2)
            run["training_stage_ratio"] = round(base["training_s"] / run["training_s"], 2)
    (args.out / "train_processes.json").write_text(json.dumps(report, indent=1))
    print_table(report)


def brainmri(*argv: str) -> None:
    subprocess.run([str(Path(sys.executable).with_name("brainmri")), *argv], check=True, stdout=subprocess.DEVNULL)


def measure(bundle: Path, testing: Path, predictions: Path) -> dict:
    """Training speed from the bundle, and the official-test accuracy of its predictions."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    state = json.loads((bundle / "model.classifier.state.json").read_text())
    speeds = [epoch["images_per_s"] for epoch in state["history"]]
    brainmri("predict", str(bundle), str(testing), "--runtime", "torch", "--out", str(predictions))
    doc = json.loads(predictions.read_text())
    right = sum(p["predicted"] == p["label"] for p in doc["predictions"])
    low, high = binomtest(right, len(doc["predictions"])).proportion_ci(method="wilson")
    return {
        "epoch_images_per_s": speeds,
        "images_per_s": round(sum(speeds) / len(speeds), 1),
        "training_s": manifest["training_data"]["timing_s"]["training"],
        "timing_s": manifest["training_data"]["timing_s"],
        "official_test_accuracy": round(right / len(doc["predictions"]), 4),
        "accuracy_95ci": [round(low, 4), round(high, 4)],
        "val_accuracy": manifest["method"]["fitted"]["val_accuracy"],
    }


def print_table(report: dict) -> None:
    print(f"{report['method']}, {report['epochs']} epochs on {report['device']}")
    print("| processes | epoch img/s | ratio | training stage s | ratio | official-test accuracy [95% CI] |")
    print("|---|---|---|---|---|---|")
    for n, run in report["runs"].items():
        low, high = run["accuracy_95ci"]
        print(
            f"| {n} | {run['images_per_s']} | {run.get('epoch_speed_ratio', '')} | {run['training_s']:.1f} | "
            f"{run.get('training_stage_ratio', '')} | {run['official_test_accuracy']:.3f} [{low:.3f}, {high:.3f}] |"
        )


if __name__ == "__main__":
    main()
