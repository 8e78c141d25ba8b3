"""This process's place among data-parallel training processes (:class:`World`); one process is :data:`ONE_PROCESS`.

:mod:`brainmri.training.distributed` starts the processes; the training loop asks its :class:`World` which items of a
batch are its own, for sums over the processes and for process 0's decisions. Torch is imported only when there are
several processes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class World:
    """This process's place among the training processes (rank 0 of 1 when training in one process)."""

    rank: int = 0
    size: int = 1
    device: object = None  # where the collective operations' tensors live (NCCL needs them on the GPU)

    @property
    def main(self) -> bool:
        """Whether this process validates, writes and reports."""
        return self.rank == 0

    def part(self, idx: np.ndarray) -> np.ndarray:
        """This process's items of a global batch."""
        return idx[self.rank :: self.size]

    def total(self, *values: float) -> tuple[float, ...]:
        """The sums of ``values`` over the processes."""
        if self.size == 1:
            return values
        import torch
        import torch.distributed as dist

        summed = torch.tensor(values, dtype=torch.float64, device=self.device)
        dist.all_reduce(summed)
        return tuple(summed.cpu().tolist())

    def from_main(self, value):
        """Process 0's ``value``, in every process."""
        if self.size == 1:
            return value
        import torch.distributed as dist

        box = [value]
        dist.broadcast_object_list(box, src=0, device=self.device)
        return box[0]

    def wrap(self, module):
        """The module that computes the training step's gradients: ``module`` itself, or DDP around it."""
        if self.size == 1:
            return module
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device is not None and self.device.type == "cuda" else None
        # A pretrained backbone is frozen in some epochs (unfreeze_after, frozen_stages): its weights then get no
        # gradient, which DDP must be told to expect.
        unused = getattr(module, "backbone", None) is not None
        return DistributedDataParallel(module, device_ids=ids, find_unused_parameters=unused)


ONE_PROCESS = World()
