"""Training-step and prediction throughput of transfer-finetune's network on the CPU, per input size and precision.

For every input size, fp32 (channels-first, then channels-last memory) vs
bf16 autocast with channels-last memory, and
frozen backbone (only the head learns, as in the first ``unfreeze_after``
epochs) vs the whole network: images/s of AdamW training steps and of the
forward pass in eval mode (what prediction and every TTA view cost). The
images are random (the speed does not depend on their content). Every step
is timed on its own and the median is reported, after one untimed step: on
a shared machine the mean of a few steps swings with the other processes.

Usage: python bench/finetune_speed.py [--sizes 224,160,128] [--configs fp32,fp32-cl,bf16-cl] [--batch 32] [--steps 5]
                                     [--backbone efficientnet_lite0]
    nice -n 10 python bench/finetune_speed.py
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="224,160,128")
    parser.add_argument("--configs", default="fp32,fp32-cl,bf16-cl",
                        help="precision, '-cl' for channels-last memory")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="steps timed per configuration (median reported)")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()

    import torch

    from brainmri.models.finetune import finetune_net
    from brainmri.training.device import tune_malloc

    tune_malloc()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{args.backbone}, batches of {args.batch}, {torch.get_num_threads()} torch threads")
    y = torch.zeros(args.batch, dtype=torch.long)
    for size in (int(s) for s in args.sizes.split(",")):
        x = torch.rand(args.batch, 1, size, size, generator=torch.Generator().manual_seed(0))
        for precision, channels_last in ((c.removesuffix("-cl"), c.endswith("-cl")) for c in args.configs.split(",")):
            net = finetune_net(num_classes=4, input_shape=(size, size), backbone_name=args.backbone)
            xb = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            if channels_last:
                net = net.to(memory_format=torch.channels_last)
            opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
            speeds = {}
            for frozen in (True, False):
                net.train()
                net.backbone.requires_grad_(not frozen)
                if frozen:
                    net.backbone.eval()
                times = []
                for _ in range(args.steps + 1):
                    t = time.perf_counter()
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                        loss = torch.nn.functional.cross_entropy(net(xb).float(), y)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    opt.step()
                    times.append(time.perf_counter() - t)
                speeds["frozen" if frozen else "whole"] = args.batch / statistics.median(times[1:])
            net.eval()
            times = []
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
                for _ in range(args.steps + 1):
                    t = time.perf_counter()
                    net(xb)
                    times.append(time.perf_counter() - t)
            forward = args.batch / statistics.median(times[1:])
            print(f"{size} px {precision}{' channels-last' if channels_last else ''}: training "
                  f"{speeds['whole']:.1f} images/s (whole network), {speeds['frozen']:.1f} images/s (backbone "
                  f"frozen); forward {forward:.1f} images/s", flush=True)


if __name__ == "__main__":
    main()
