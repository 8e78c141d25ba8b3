"""End-to-end speed of ``brainmri predict`` (issue 24): PyTorch, ONNX Runtime and OpenVINO, interpreter start included.

Usage: .venv/bin/python bench/predict_speed.py OUT [--bundle NAME=PATH ...] [--repeats 2] [--data DIR]

Each bundle (default: an ``ayadi-cnn`` trained for one epoch at its default size, 128 px, on brain-tumor-mri's
Training folder, made in OUT/ayadi-cnn when it is not there; add a ``transfer-finetune`` bundle with
``--bundle transfer-finetune=PATH``) predicts brain-tumor-mri's Testing folder (1,311 images) with
``brainmri predict BUNDLE Testing --runtime R --out x.json`` (R: torch, onnx, openvino, and auto, which takes the one
timed fastest at first use) as a new process, the wall-clock time measured
from its start to its exit. The runtimes take turns, ``--repeats`` times each; the ONNX export of the first use
(cached afterwards under OUT/cache) is made and timed before. Also timed: a fresh process that loads the bundle
and predicts one image. Reported per bundle and runtime: the median images/s, the stages of the command's own
``timing_s`` (of the median run), the largest difference of the probabilities from PyTorch's, the share of equal
calls, and the accuracy of each. Results: OUT/predict_speed.json and a table on stdout.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

RUNTIMES = ("torch", "onnx", "openvino", "auto")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--bundle", action="append", default=[], metavar="NAME=PATH")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "datasets")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    testing = args.data / "brain-tumor-mri" / "Testing"
    bundles = dict(item.split("=", 1) for item in args.bundle) or {"ayadi-cnn": str(args.out / "ayadi-cnn")}
    if "ayadi-cnn" in bundles and not (Path(bundles["ayadi-cnn"]) / "manifest.json").exists():
        train_cnn(args.data / "brain-tumor-mri" / "Training", Path(bundles["ayadi-cnn"]))
    report = {"images": str(testing), "bundles": {}}
    for name, bundle in bundles.items():
        report["bundles"][name] = measure(Path(bundle), testing, args.out, args.repeats)
    (args.out / "predict_speed.json").write_text(json.dumps(report, indent=1))
    print_table(report)


def brainmri(*argv: str) -> float:
    """Seconds from the start of ``brainmri ARGV`` as a new process to its exit."""
    start = time.perf_counter()
    subprocess.run([str(Path(sys.executable).with_name("brainmri")), *argv], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def train_cnn(training: Path, out: Path) -> None:
    """One epoch of ayadi-cnn at its defaults (its weights do not change the speed; its accuracy is reported)."""
    brainmri("train", str(training), "--method", "ayadi-cnn", "--params", "ayadi-cnn.epochs=1", "--out", str(out))


def measure(bundle: Path, testing: Path, out: Path, repeats: int) -> dict:
    cache = out / "cache"
    one = str(sorted(testing.glob("glioma/*.jpg"))[0])
    common = ["--cache-dir", str(cache), "-q"]
    result = {"export_first_use_s": round(brainmri("predict", str(bundle), one, "--runtime", "onnx", *common), 2)}
    runs = {r: [] for r in RUNTIMES}
    for k in range(repeats):
        for runtime in RUNTIMES:
            target = out / f"{bundle.name}-{runtime}-{k}.json"
            seconds = brainmri(
                "predict", str(bundle), str(testing), "--runtime", runtime, "--out", str(target), *common
            )
            runs[runtime].append((seconds, json.loads(target.read_text())))
    reference = {p["path"]: p for p in runs["torch"][0][1]["predictions"]}
    for runtime, done in runs.items():
        seconds = [s for s, _ in done]
        median = done[int(np.argsort(seconds)[len(seconds) // 2])][1]
        predictions = median["predictions"]
        diff = max(abs(p["proba"][c] - reference[p["path"]]["proba"][c]) for p in predictions for c in p["proba"])
        result[runtime] = {
            "runtime": median["runtime"],
            "seconds": [round(s, 2) for s in seconds],
            "images_per_s": round(len(predictions) / float(np.median(seconds)), 1),
            "timing_s": median["timing_s"],
            "max_abs_diff_from_torch": float(diff),
            "same_call_as_torch": float(
                np.mean([p["predicted"] == reference[p["path"]]["predicted"] for p in predictions])
            ),
            "accuracy": float(np.mean([p["predicted"] == p["label"] for p in predictions])),
            "load_and_first_prediction_s": round(
                brainmri("predict", str(bundle), one, "--runtime", runtime, *common), 2
            ),
        }
    for runtime in ("onnx", "openvino"):
        result[f"speed_up_{runtime}"] = round(result[runtime]["images_per_s"] / result["torch"]["images_per_s"], 2)
    return result


def print_table(report: dict) -> None:
    print(f"brainmri predict of {report['images']}, interpreter start included")
    print("bundle | runtime | images/s | stages (s) | max |p - p_torch| | same call | accuracy | load + 1 image (s)")
    for name, r in report["bundles"].items():
        for runtime in RUNTIMES:
            x = r[runtime]
            stages = ", ".join(f"{k} {v:.1f}" for k, v in x["timing_s"].items())
            print(
                f"{name} | {x['runtime']} | {x['images_per_s']:.0f} | {stages} | {x['max_abs_diff_from_torch']:.2g} | "
                f"{x['same_call_as_torch']:.4f} | {x['accuracy']:.4f} | {x['load_and_first_prediction_s']:.2f}"
            )
        print(
            f"{name}: ONNX Runtime / PyTorch = {r['speed_up_onnx']:.2f}x, OpenVINO / PyTorch = "
            f"{r['speed_up_openvino']:.2f}x; first use exports in {r['export_first_use_s']:.1f} s"
        )


if __name__ == "__main__":
    main()
