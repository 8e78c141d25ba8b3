"""Training-step and prediction throughput of transfer-finetune's network on the CPU, per input size and precision.

For every input size, fp32 (channels-first, then channels-last memory) vs
bf16 autocast with channels-last memory, and
frozen backbone (only the head learns, as in the first ``unfreeze_after``
epochs) vs the whole network vs the whole network but its first
``frozen_stages`` stages (``--frozen-stages 3,4``): images/s of AdamW training steps and of the
forward pass in eval mode (what prediction and every TTA view cost). The
images are random (the speed does not depend on their content). The
configurations of one size take turns step by step and every step is timed
on its own; the median is reported, the first (warm-up) step left out. On a
shared machine the mean of a few consecutive steps swings with the other
processes' load; taking turns exposes every configuration to the same load.

Usage: python bench/finetune_speed.py [--sizes 224,160,128] [--configs fp32,fp32-cl,bf16-cl] [--batch 32] [--steps 5]
                                     [--backbone efficientnet_lite0] [--frozen-stages 3,4]
    nice -n 10 python bench/finetune_speed.py
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="224,160,128")
    parser.add_argument("--configs", default="fp32,fp32-cl,bf16-cl", help="precision, '-cl' for channels-last memory")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=5, help="steps timed per configuration (median reported)")
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument(
        "--frozen-stages",
        default="",
        help="comma-separated numbers of first backbone stages kept frozen (e.g. 3,4), each timed",
    )
    args = parser.parse_args()

    import torch

    from brainmri.nets.finetune import finetune_net
    from brainmri.training.device import tune_malloc

    tune_malloc()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"{args.backbone}, batches of {args.batch}, {torch.get_num_threads()} torch threads")
    configs = [(c.removesuffix("-cl"), c.endswith("-cl")) for c in args.configs.split(",")]
    y = torch.zeros(args.batch, dtype=torch.long)
    for size in (int(s) for s in args.sizes.split(",")):
        x = torch.rand(args.batch, 1, size, size, generator=torch.Generator().manual_seed(0))
        stages = [int(k) for k in args.frozen_stages.split(",") if k]
        runs = [
            _Run(
                finetune_net(num_classes=4, input_shape=(size, size), backbone_name=args.backbone),
                x,
                y,
                precision,
                channels_last,
                stages,
            )
            for precision, channels_last in configs
        ]
        for _ in range(args.steps + 1):  # the configurations take turns, so that they share the machine's load
            for run in runs:
                run.round()
        for run in runs:
            print(
                f"{size} px {run.label}: training {run.speed('whole'):.1f} images/s (whole network), "
                f"{run.speed('frozen'):.1f} images/s (backbone frozen); forward {run.speed('forward'):.1f} "
                "images/s",
                flush=True,
            )
            for k in run.stages:
                print(
                    f"{size} px {run.label}: training {run.speed(k):.1f} images/s (first {k} backbone stages frozen)",
                    flush=True,
                )


class _Run:
    """One configuration: a network, its optimizer and the time of every step (whole, frozen, forward)."""

    def __init__(self, net, x, y, precision: str, channels_last: bool, stages=()):
        import torch

        self.label = f"{precision}{' channels-last' if channels_last else ''}"
        self.net = net.to(memory_format=torch.channels_last) if channels_last else net
        self.x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
        self.y = y
        self.bf16 = precision == "bf16"
        self.opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        self.stages = list(stages)
        self.times = {"whole": [], "frozen": [], "forward": [], **{k: [] for k in self.stages}}

    def round(self) -> None:
        """One training step each: whole network, backbone frozen, first stages frozen; then one forward pass."""
        import torch

        from brainmri.training.run import set_train_mode

        for what in ("whole", "frozen", *self.stages):
            set_train_mode(self.net, frozen=what == "frozen", frozen_stages=what if isinstance(what, int) else 0)
            t = time.perf_counter()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
                loss = torch.nn.functional.cross_entropy(self.net(self.x).float(), self.y)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            self.times[what].append(time.perf_counter() - t)
        self.net.eval()
        t = time.perf_counter()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            self.net(self.x)
        self.times["forward"].append(time.perf_counter() - t)

    def speed(self, what: str) -> float:
        """Images/s of the median step, the first (warm-up) left out."""
        return len(self.y) / statistics.median(self.times[what][1:])


if __name__ == "__main__":
    main()
