"""What one training run updates and keeps (:class:`TrainingRun`): the optimiser and its one-cycle schedule
(discriminative learning rates for a pretrained backbone), the EMA weights, the frozen parts, the checkpoint and
CSV log, and the fingerprint that decides whether a checkpoint belongs to the run.

:func:`brainmri.training.loop.train_module` drives it epoch by epoch. Torch is imported inside the functions:
importing :mod:`brainmri.training` does not import it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from brainmri.errors import ConfigError
from brainmri.files import atomic_path, write_text
from brainmri.training.augment import augmentation
from brainmri.training.batches import autocast_dtype, to_batch
from brainmri.training.sampling import expected_class_counts
from brainmri.training.settings import CHECKPOINT, HISTORY_FIELDS, LOG, TrainSettings
from brainmri.training.world import ONE_PROCESS, World

logger = logging.getLogger(__name__)


def _ema_avg(decay: float):
    """EMA update with a warm-up: the decay grows as (1 + n) / (10 + n) up to ``decay``.

    Without the warm-up a short run would validate weights that are mostly
    the random initialisation.
    """

    def avg(averaged, current, num_averaged):
        d = min(decay, (1.0 + float(num_averaged)) / (10.0 + float(num_averaged)))
        return d * averaged + (1.0 - d) * current

    return avg


#: Settings added after checkpoints were first written, with their defaults: left out of the fingerprint at those
#: defaults, so that the checkpoints of earlier runs (same training) still resume.
_LATER_SETTINGS = {
    "backbone_lr_factor": 1.0,
    "unfreeze_after": 0,
    "frozen_stages": 0,
    "style": None,
    "sampling": "shuffle",
}


def run_fingerprint(
    module,
    X: np.ndarray,
    y: np.ndarray,
    X_val: np.ndarray,
    settings: TrainSettings,
    weights: np.ndarray | None = None,
    processes: int = 1,
) -> str:
    h = hashlib.blake2b(digest_size=12)
    fields = {k: v for k, v in asdict(settings).items() if k not in _LATER_SETTINGS or v != _LATER_SETTINGS[k]}
    if processes > 1:  # another number of processes is another run (brainmri.training.distributed)
        fields["processes"] = processes
    h.update(
        json.dumps(
            {"module": type(module).__name__, "settings": fields, "shapes": [X.shape, X_val.shape]},
            sort_keys=True,
            default=str,
        ).encode()
    )
    for array in (X, y, X_val, *([] if weights is None else [weights])):
        h.update(np.ascontiguousarray(array).tobytes())
    h.update(str(sum(p.numel() for p in module.parameters())).encode())
    return h.hexdigest()


def _write_log(path: Path, history: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    write_text(path, buffer.getvalue())


def make_optimizer(module, s: TrainSettings, steps: int):
    """AdamW and its one-cycle schedule: one parameter group, or the head's and the backbone's.

    A module with a ``backbone`` attribute gets two groups, the backbone's
    peaking at ``lr * backbone_lr_factor`` (discriminative learning rates,
    Howard and Ruder 2018); any other module one group peaking at ``lr``.
    """
    import torch

    trunk = getattr(module, "backbone", None)
    if trunk is None:
        for name in ("backbone_lr_factor", "unfreeze_after", "frozen_stages"):
            if getattr(s, name) != _LATER_SETTINGS[name]:
                raise ConfigError(
                    f"training parameter {name}={getattr(s, name)!r} needs a network with a backbone, "
                    f"and {type(module).__name__} has none; leave it at {_LATER_SETTINGS[name]}"
                )
        params, max_lr = module.parameters(), s.lr
    else:
        stages = len(getattr(trunk, "stage_ends", ()))
        if s.frozen_stages >= max(stages, 1):
            raise ConfigError(
                f"training parameter frozen_stages={s.frozen_stages} leaves no stage of the backbone "
                f"to train: it has {stages} stages, use 0 to {max(stages - 1, 0)}"
            )
        in_trunk = {id(p) for p in trunk.parameters()}
        params = [
            {"params": [p for p in module.parameters() if id(p) not in in_trunk]},
            {"params": list(trunk.parameters())},
        ]
        max_lr = [s.lr, s.lr * s.backbone_lr_factor]
    optimizer = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=max_lr, total_steps=s.epochs * steps, anneal_strategy="cos"
    )
    return optimizer, scheduler


def frozen_blocks(trunk, stages: int) -> list:
    """The blocks of ``trunk``'s first ``stages`` stages (none for 0)."""
    return list(trunk.blocks[: trunk.stage_ends[stages - 1] + 1]) if stages else []


def set_train_mode(module, frozen: bool, frozen_stages: int = 0) -> None:
    """Training mode, with the module's ``backbone`` (if any) frozen, or only its first ``frozen_stages`` stages.

    A frozen part gets no gradient (hence no AdamW step or decay) and
    keeps its batch-norm statistics (eval mode): its weights and buffers
    stay exactly as they are.
    """
    module.train()
    trunk = getattr(module, "backbone", None)
    if trunk is not None:
        trunk.requires_grad_(True)
        parts = [trunk] if frozen else frozen_blocks(trunk, frozen_stages)
        for part in parts:
            part.requires_grad_(False)
            part.eval()


def place(module, s: TrainSettings, ndim: int, device) -> None:
    """Move ``module`` to ``device``, in channels-last memory format for images (``ndim`` 3) when ``s`` asks."""
    import torch

    module.to(device)
    if s.channels_last and ndim == 3:
        module.to(memory_format=torch.channels_last)


@dataclass
class TrainingRun:
    """What one training run updates: the network, its optimiser and schedule, the EMA copy, the loss, the batches."""

    module: object
    optimizer: object
    scheduler: object
    ema: object
    criterion: object
    dtype: object
    augment: Callable | None
    steps: int
    weights: np.ndarray | None = None  # probability of drawing each item (sampling), None: shuffle
    network: object = None  # what computes the training step: the module, or DistributedDataParallel around it

    @classmethod
    def set_up(
        cls,
        module,
        X: np.ndarray,
        y: np.ndarray,
        y_val: np.ndarray,
        s: TrainSettings,
        device,
        weights: np.ndarray | None = None,
        world: World = ONE_PROCESS,
    ) -> TrainingRun:
        import torch
        from torch.optim.swa_utils import AveragedModel

        n_classes = int(max(y.max(), y_val.max())) + 1
        place(module, s, X.ndim, device)
        steps = max(len(X) // s.batch_size, 1)
        optimizer, scheduler = make_optimizer(module, s, steps)
        ema = AveragedModel(module, avg_fn=_ema_avg(s.ema_decay), use_buffers=True) if s.ema_decay else None
        weight = None
        if s.class_weight == "balanced":
            counts = expected_class_counts(y, weights, n_classes)
            weight = torch.tensor(len(y) / (n_classes * np.maximum(counts, 1)), dtype=torch.float32, device=device)
        criterion = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=s.label_smoothing)
        augment = augmentation(s.augment) if X.ndim == 3 else None
        dtype = autocast_dtype(s.precision, device)
        network = world.wrap(module)
        return cls(module, optimizer, scheduler, ema, criterion, dtype, augment, steps, weights, network)

    def resume(self, work: Path | None, fingerprint: str) -> tuple[dict, int | None]:
        """The loop's state: from the checkpoint in ``work`` when it belongs to this run, else a fresh one."""
        import torch

        state = {
            "epoch": -1,
            "history": [],
            "best_key": None,
            "best_epoch": -1,
            "best_state": None,
            "best_logits": None,
            "stopped": False,
        }
        if work is None or not (work / CHECKPOINT).exists():
            return state, None
        saved = torch.load(work / CHECKPOINT, map_location="cpu", weights_only=True)
        if saved.get("fingerprint") != fingerprint:
            logger.warning("%s belongs to other settings or data; training from the start", work / CHECKPOINT)
            return state, None
        self.module.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.scheduler.load_state_dict(saved["scheduler"])
        if self.ema is not None:
            self.ema.load_state_dict(saved["ema"])
        state = saved["loop"]
        logger.info("resuming training from %s after epoch %d", work / CHECKPOINT, state["epoch"] + 1)
        return state, state["epoch"]

    def train_epoch(
        self, X: np.ndarray, y: np.ndarray, epoch: int, s: TrainSettings, device, world: World = ONE_PROCESS
    ) -> tuple[float, int]:
        """One pass over the shuffled (or, with ``sampling``, drawn) training items; the summed loss and the items seen
        (by this process: its part of every batch)."""
        import torch

        torch.manual_seed(s.seed * 100_003 + epoch)  # shuffling, augmentation and dropout of this epoch
        if self.weights is None:
            order = torch.randperm(len(X)).numpy()
        else:
            order = torch.multinomial(torch.from_numpy(self.weights), len(X), replacement=True).numpy()
        set_train_mode(self.module, frozen=epoch < s.unfreeze_after, frozen_stages=s.frozen_stages)
        total, seen = 0.0, 0
        for b in range(self.steps):
            idx = world.part(np.sort(order[b * s.batch_size : (b + 1) * s.batch_size]))
            xb = to_batch(X[idx], device, channels_last=s.channels_last, augment=self.augment)
            yb = torch.from_numpy(y[idx]).to(device)
            with torch.autocast(device.type, dtype=self.dtype) if self.dtype is not None else nullcontext():
                logits = self.network(xb)
            loss = self.criterion(logits.float(), yb)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update_parameters(self.module)
            total += float(loss.detach()) * len(idx)
            seen += len(idx)
        return total, seen

    def save(self, work: Path, fingerprint: str, state: dict) -> None:
        """The checkpoint (atomically) and the CSV log of the epochs so far."""
        import torch

        saved = {
            "fingerprint": fingerprint,
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else {},
            "loop": state,
        }
        with atomic_path(work / CHECKPOINT) as tmp:
            torch.save(saved, tmp)
        _write_log(work / LOG, state["history"])
