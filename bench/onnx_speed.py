"""Prediction speed of an ayadi-cnn bundle: ONNX Runtime against PyTorch, one slice and a batch.

Usage: python bench/onnx_speed.py [--size 224] [--threads 2] [--batch 64] [--repeats 30]

A bundle is trained for one epoch on a small synthetic dataset (its weights
do not change the speed), exported with ``brainmri export --onnx``, and
loaded three ways: as trained (PyTorch, the method's bf16 autocast and
channels-last), in PyTorch float32, and through ONNX Runtime (float32).
Each predicts the same preprocessed slices (``size x size``), so the
numbers are the network's alone; the configurations take turns call by
call, so that they share the machine's load. Printed: the median latency
of one slice and the median throughput of one batch, with the quartiles.
"""

from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=30, help="timed calls per configuration (batches: a fifth)")
    args = parser.parse_args()

    import torch

    from brainmri.data.preprocess import Preprocess
    from brainmri.data.synthetic import write_demo_data
    from brainmri.models.bundle import load_model
    from brainmri.models.onnx import export_onnx
    from brainmri.models.onnx_runtime import load_onnx
    from brainmri.runs.config import TrainConfig
    from brainmri.runs.train import train_bundle

    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        data = write_demo_data(Path(tmp) / "data", n=6, size=args.size + 32, seed=0)
        params = {"size": args.size, "epochs": 1, "batch_size": 8, "threads": args.threads}
        train_bundle(
            TrainConfig(
                data=str(data),
                method="ayadi-cnn",
                params=params,
                validate=False,
                device="cpu",
                preprocess=Preprocess(size=args.size),
            ),
            Path(tmp) / "model",
            n_jobs=1,
        )
        check = export_onnx(Path(tmp) / "model")["check"]
        bundle, onnx_bundle = (
            load_model(Path(tmp) / "model", device="cpu"),
            load_onnx(Path(tmp) / "model", threads=args.threads),
        )
        images = bundle.model.steps[0][1]
        X = images.transform(sorted(str(p) for p in data.rglob("*.png")))
        X = X[np.arange(args.batch) % len(X)]
        as_trained = bundle.model.steps[-1][1]
        fp32 = copy.copy(as_trained)
        fp32.precision, fp32.channels_last = "fp32", False
        fp32.__dict__.pop("_inference_module_", None)
        session = onnx_bundle.model

        def run_onnx(Z):
            return session.session.run(None, {"input": np.asarray(Z, dtype=np.float32)[:, None]})[0]

        configs = {
            "PyTorch as trained (bf16 autocast, channels-last)": as_trained.predict_proba,
            "PyTorch float32": fp32.predict_proba,
            "ONNX Runtime float32": run_onnx,
        }
        for predict in configs.values():  # warm-up: first calls build kernels and caches
            predict(X[:1]), predict(X)
        single = {name: [] for name in configs}
        batch = {name: [] for name in configs}
        for r in range(args.repeats):
            for name, predict in configs.items():
                t = time.perf_counter()
                predict(X[r % len(X) : r % len(X) + 1])
                single[name].append(1000 * (time.perf_counter() - t))
            if r % 5 == 0:
                for name, predict in configs.items():
                    t = time.perf_counter()
                    predict(X)
                    batch[name].append(len(X) / (time.perf_counter() - t))
    print(
        f"ayadi-cnn at {args.size}x{args.size}, {args.threads} threads, torch {torch.__version__}; export check: "
        f"max |ONNX Runtime - PyTorch float32| {check['max_abs_diff']:.2g}, against bf16 "
        f"{check['max_abs_diff_bundle_precision']:.2g}"
    )
    for name in configs:
        s, b = np.percentile(single[name], [25, 50, 75]), np.percentile(batch[name], [25, 50, 75])
        print(
            f"{name}: one slice {s[1]:.1f} ms (quartiles {s[0]:.1f}-{s[2]:.1f}); batch of {len(X)} "
            f"{b[1]:.0f} images/s ({b[0]:.0f}-{b[2]:.0f})"
        )


if __name__ == "__main__":
    main()
