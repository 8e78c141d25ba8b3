"""Speed of the deep-learning path on real images: data feeding, training and prediction throughput.

Usage: python bench/deep_speed.py DATA_FOLDER [--n 1000] [--size 128] [--threads 2] [--no-malloc]
Run each configuration in its own process (the glibc malloc settings are per process):
    nice -n 10 python bench/deep_speed.py ../shared/datasets/brain-tumor-mri/Training --n 1000
    nice -n 10 python bench/deep_speed.py ../shared/datasets/brain-tumor-mri/Training --n 1000 --no-malloc
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--no-malloc", action="store_true", help="keep glibc's default malloc thresholds")
    parser.add_argument("--steps", type=int, default=8, help="training steps timed per configuration")
    args = parser.parse_args()

    import torch
    from torch.fx.experimental.optimization import fuse

    from brainmri.nets.cnn import ayadi_cnn
    from brainmri.training import device as device_module
    from brainmri.training.arrays import ImageArrays
    from brainmri.training.augment import augment_batch
    from brainmri.training.batches import predict_logits, to_batch

    if args.no_malloc:
        device_module._malloc_tuned = False  # pretend it was already decided: tune_malloc() then does nothing
    print(f"malloc tuned: {device_module.tune_malloc()}")
    if args.threads:
        torch.set_num_threads(args.threads)
    paths = sorted(str(p) for p in args.data.rglob("*.jpg"))
    paths = [paths[k] for k in np.random.default_rng(0).permutation(len(paths))[: args.n]]
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        X = ImageArrays(size=args.size, cache_dir=cache, n_jobs=1).fit([]).transform(paths)
        print(f"decode + preprocess (first read): {len(X) / (time.perf_counter() - t):.0f} images/s")
        t = time.perf_counter()
        X = ImageArrays(size=args.size, cache_dir=cache, n_jobs=1).fit([]).transform(paths)
        print(f"read from the array cache: {len(X) / (time.perf_counter() - t):.0f} images/s")
    cpu = torch.device("cpu")
    for augment in (None, augment_batch):
        t = time.perf_counter()
        for s in range(0, len(X), 64):
            to_batch(X[s : s + 64], cpu, channels_last=True, augment=augment)
        what = "with augmentation" if augment else "no augmentation"
        print(f"batches fed to the model ({what}): {len(X) / (time.perf_counter() - t):.0f} images/s")
    y = torch.zeros(64, dtype=torch.long)
    for precision, channels_last in (("fp32", False), ("bf16", True)):
        torch.manual_seed(0)
        net = ayadi_cnn(num_classes=4)
        if channels_last:
            net = net.to(memory_format=torch.channels_last)
        opt = torch.optim.AdamW(net.parameters(), lr=2e-3)
        net.train()
        for step in range(args.steps + 1):
            if step == 1:
                t = time.perf_counter()
            x = to_batch(X[(step * 64) % (len(X) - 64) :][:64], cpu, channels_last=channels_last)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                loss = torch.nn.functional.cross_entropy(net(x).float(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        train = args.steps * 64 / (time.perf_counter() - t)
        speeds = []
        for module in (net, fuse(net.eval())):  # as trained; batch norm folded, as TorchClassifier predicts
            t = time.perf_counter()
            predict_logits(
                module, X[:512], device=cpu, batch_size=128, precision=precision, channels_last=channels_last
            )
            speeds.append(min(512, len(X)) / (time.perf_counter() - t))
        print(
            f"ayadi-cnn {args.size} px {precision}{' channels-last' if channels_last else ''}: "
            f"training {train:.0f} images/s, forward {speeds[0]:.0f} images/s, "
            f"with batch norm folded {speeds[1]:.0f} images/s"
        )


if __name__ == "__main__":
    main()
