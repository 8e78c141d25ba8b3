"""The training loop of the deep methods: one-cycle AdamW, EMA weights, best-validation selection, exact resume.

Why a plain loop rather than skorch. skorch (1.x) would give the
scikit-learn interface and callbacks for checkpoints, early stopping and
learning-rate schedules, but three requirements of brainmri fall outside
it: (1) exact resume - an interrupted run must end with the same weights as
an uninterrupted one, which needs the EMA weights, the best-validation
weights, the scheduler and the random state of every epoch in the
checkpoint, while skorch's ``Checkpoint``/``LoadInitState`` restore module,
optimizer and history only; (2) the validation part must be grouped like
the outer split, which skorch's ``train_split`` would receive as a custom
callable anyway; (3) EMA weights evaluated and checkpointed instead of the
raw weights, bf16 autocast and channels-last, each a custom callback or a
``NeuralNet`` subclass. The scikit-learn interface is
:class:`~brainmri.models.torch_classifier.TorchClassifier` (100 lines), so
a plain loop costs less code than the callbacks would.

Determinism and resume. Every epoch seeds torch's generator from ``(seed,
epoch)`` before it shuffles, augments and draws dropout masks, so an epoch
does the same work whether the run started at epoch 0 or resumed at it.
After every epoch the checkpoint (``work_dir/checkpoint.pt``: model,
optimizer, scheduler, EMA and best weights, history, epoch) and the CSV log
(``work_dir/training_log.csv``) are written atomically; a run that finds a
checkpoint of the same settings and data continues after its epoch. On the
CPU two runs with the same seed give identical weights.

Stability. At peak learning rate the accuracy of a CNN can swing between
epochs (0.97 -> 0.84 on brain-tumor-mri), mostly because the batch-norm
statistics trail the weights. Validation therefore uses an exponential
moving average of the weights and buffers (``torch.optim.swa_utils``,
Polyak averaging), and the weights kept are those of the epoch with the
best validation accuracy (ties: lower loss), not the last.

Pretrained backbones. A module with a ``backbone`` attribute (fine-tuning,
:class:`~brainmri.nets.finetune.FineTuneNet`) gets two parameter groups:
the backbone's learning rate is ``lr * backbone_lr_factor`` and the rest's
``lr``, both on the same one-cycle schedule (discriminative learning rates,
Howard and Ruder 2018). During the first ``unfreeze_after`` epochs the
backbone is frozen: no gradient (so AdamW neither steps nor decays it) and
eval-mode batch norm, so its weights and statistics stay exactly as loaded.
Whether an epoch is frozen depends on its number only, so resume is exact
across the unfreezing too. ``frozen_stages`` keeps the backbone's first
stages frozen in every epoch (same rules): autograd then stops before them,
so their backward pass, the most expensive per weight at full resolution,
is never run (Yosinski et al. 2014: the first layers' filters are the most
general and transfer as they are).

References
----------
L. N. Smith and N. Topin, "Super-convergence: very fast training of neural
networks using large learning rates", Proc. SPIE 11006, 2019.
DOI: 10.1117/12.2520589

I. Loshchilov and F. Hutter, "Decoupled weight decay regularization",
ICLR 2019 (AdamW).

B. T. Polyak and A. B. Juditsky, "Acceleration of stochastic approximation
by averaging", SIAM Journal on Control and Optimization 30(4):838-855, 1992.
DOI: 10.1137/0330046

J. Howard and S. Ruder, "Universal language model fine-tuning for text
classification", Proc. 56th ACL, 328-339, 2018. DOI: 10.18653/v1/P18-1031
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from brainmri.errors import ConfigError
from brainmri.files import atomic_path, write_text
from brainmri.training.augment import augmentation, parse_augment

logger = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
LOG = "training_log.csv"
#: Columns of :attr:`TrainResult.history` and of the CSV log.
HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "val_accuracy", "lr", "seconds", "images_per_s")
PRECISIONS = ("auto", "bf16", "fp32")

_listeners: ContextVar[tuple[Callable[[dict], None], ...]] = ContextVar("brainmri_epoch_listeners", default=())


@contextmanager
def epoch_listener(callback: Callable[[dict], None]) -> Iterator[None]:
    """Within the block, every training loop calls ``callback(record)`` after each epoch.

    ``record`` holds :data:`HISTORY_FIELDS` plus ``epochs`` (the planned
    number). The benchmark runner turns records into progress lines; a
    callback that raises stops training after that epoch's checkpoint.
    """
    token = _listeners.set(_listeners.get() + (callback,))
    try:
        yield
    finally:
        _listeners.reset(token)


@dataclass(frozen=True)
class TrainSettings:
    """Settings of :func:`train_module` (see :class:`~brainmri.models.torch_classifier.TorchClassifier`)."""

    epochs: int = 10
    lr: float = 2e-3
    weight_decay: float = 0.05
    batch_size: int = 64
    label_smoothing: float = 0.05
    class_weight: str | None = "balanced"
    augment: bool | str = False
    ema_decay: float | None = 0.99
    patience: int | None = None
    precision: str = "auto"
    channels_last: bool = False
    seed: int = 0
    backbone_lr_factor: float = 1.0
    unfreeze_after: int = 0
    frozen_stages: int = 0

    def __post_init__(self):
        checks = [
            ("epochs", isinstance(self.epochs, int) and self.epochs >= 1, "an integer >= 1"),
            ("lr", isinstance(self.lr, (int, float)) and self.lr > 0, "a number > 0"),
            ("weight_decay", isinstance(self.weight_decay, (int, float)) and self.weight_decay >= 0, "a number >= 0"),
            ("batch_size", isinstance(self.batch_size, int) and self.batch_size >= 2, "an integer >= 2"),
            (
                "label_smoothing",
                isinstance(self.label_smoothing, (int, float)) and 0 <= self.label_smoothing < 1,
                "a number in [0, 1)",
            ),
            ("class_weight", self.class_weight in (None, "balanced"), "'balanced' or null"),
            (
                "ema_decay",
                self.ema_decay is None or (isinstance(self.ema_decay, float) and 0 < self.ema_decay < 1),
                "a number in (0, 1) or null",
            ),
            (
                "patience",
                self.patience is None or (isinstance(self.patience, int) and self.patience >= 1),
                "an integer >= 1 or null",
            ),
            ("precision", self.precision in PRECISIONS, f"one of {', '.join(PRECISIONS)}"),
            (
                "backbone_lr_factor",
                isinstance(self.backbone_lr_factor, (int, float)) and self.backbone_lr_factor > 0,
                "a number > 0",
            ),
            (
                "unfreeze_after",
                isinstance(self.unfreeze_after, int)
                and not isinstance(self.unfreeze_after, bool)
                and self.unfreeze_after >= 0,
                "an integer >= 0",
            ),
            (
                "frozen_stages",
                isinstance(self.frozen_stages, int)
                and not isinstance(self.frozen_stages, bool)
                and self.frozen_stages >= 0,
                "an integer >= 0",
            ),
        ]
        for name, ok, allowed in checks:
            if not ok:
                raise ConfigError(f"training parameter {name} must be {allowed}, got {getattr(self, name)!r}")

        parse_augment(self.augment)


@dataclass
class TrainResult:
    """What :func:`train_module` returns.

    Attributes
    ----------
    state : dict of str to Tensor
        Weights and buffers of the best validation epoch (EMA weights when
        ``ema_decay`` is set), on the CPU.
    val_logits : ndarray of shape (n_val, n_classes)
        Validation logits of those weights.
    best_epoch : int
    history : list of dict
    resumed_from : int or None
        The epoch of the checkpoint the run continued from.
    """

    state: dict
    val_logits: np.ndarray
    best_epoch: int
    history: list[dict]
    resumed_from: int | None = None


def autocast_dtype(precision: str, device):
    """The autocast dtype of ``precision`` on ``device`` (None: full float32).

    ``auto`` is bf16 on a CUDA GPU that supports it, float32 elsewhere.
    """
    import torch

    if precision == "bf16" or (precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()):
        return torch.bfloat16
    return None


def to_batch(X: np.ndarray, device, *, channels_last: bool = False, augment=None):
    """Items of ``X`` as a float32 tensor on ``device``: (n, 1, H, W) for images, (n, 1, D, H, W) for volumes, (n, F) for vectors.

    ``augment`` (a function of a batch of images) is applied on ``device``.
    """
    import torch

    x = torch.from_numpy(np.asarray(X, dtype=np.float32)).to(device)
    if x.ndim in (3, 4):
        x = x.unsqueeze(1)
        if augment is not None:
            x = augment(x)
    return x.contiguous(memory_format=torch.channels_last) if channels_last and x.ndim == 4 else x


def predict_logits(
    module, X: np.ndarray, *, device, batch_size: int = 256, precision: str = "auto", channels_last: bool = False
) -> np.ndarray:
    """Logits of ``module`` (in eval mode) for every item of ``X``, float32 of shape (n, n_classes)."""
    import torch

    dtype = autocast_dtype(precision, device)
    module.eval()
    out = []
    with torch.inference_mode():
        for s in range(0, len(X), batch_size):
            x = to_batch(X[s : s + batch_size], device, channels_last=channels_last)
            with torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext():
                out.append(module(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


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
_LATER_SETTINGS = {"backbone_lr_factor": 1.0, "unfreeze_after": 0, "frozen_stages": 0}


def _fingerprint(module, X: np.ndarray, y: np.ndarray, X_val: np.ndarray, settings: TrainSettings) -> str:
    h = hashlib.blake2b(digest_size=12)
    fields = {k: v for k, v in asdict(settings).items() if k not in _LATER_SETTINGS or v != _LATER_SETTINGS[k]}
    h.update(
        json.dumps(
            {"module": type(module).__name__, "settings": fields, "shapes": [X.shape, X_val.shape]},
            sort_keys=True,
            default=str,
        ).encode()
    )
    for array in (X, y, X_val):
        h.update(np.ascontiguousarray(array).tobytes())
    h.update(str(sum(p.numel() for p in module.parameters())).encode())
    return h.hexdigest()


def _write_log(path: Path, history: list[dict]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=HISTORY_FIELDS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(history)
    write_text(path, buffer.getvalue())


def _optimizer(module, s: TrainSettings, steps: int):
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


def train_module(
    module,
    X: np.ndarray,
    y: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    settings: TrainSettings,
    device,
    work_dir: str | Path | None = None,
) -> TrainResult:
    """Train ``module`` on (X, y), choosing the epoch on (X_val, y_val).

    Parameters
    ----------
    module : torch.nn.Module
        Freshly built (its initial weights are part of the run).
    X, X_val : ndarray of shape (n, H, W), (n, D, H, W) or (n, F)
        Training and validation items (images or volumes with values in [0, 1], or vectors).
    y, y_val : ndarray of int
        Class indices, 0 .. n_classes - 1.
    settings : TrainSettings
    device : torch.device
    work_dir : path or None
        Folder of the checkpoint and CSV log; None keeps neither (no resume).

    Returns
    -------
    TrainResult
    """
    s = settings
    run = _Run.set_up(module, X, y, y_val, s, device)
    work = Path(work_dir) if work_dir else None
    fingerprint = _fingerprint(module, X, y, X_val, s)
    state, resumed_from = run.resume(work, fingerprint)
    evaluated = run.ema.module if run.ema is not None else module
    for epoch in range(state["epoch"] + 1, 0 if state["stopped"] else s.epochs):
        start = time.perf_counter()
        total, seen = run.train_epoch(X, y, epoch, s, device)
        train_s = time.perf_counter() - start
        val_logits, val_loss, val_acc = _validate(evaluated, X_val, y_val, s, device)
        record = {
            "epoch": epoch + 1,
            "train_loss": round(total / max(seen, 1), 6),
            "val_loss": round(val_loss, 6),
            "val_accuracy": round(val_acc, 6),
            "lr": float(run.optimizer.param_groups[0]["lr"]),
            "seconds": round(time.perf_counter() - start, 3),
            "images_per_s": round(seen / train_s, 1),
        }
        _keep_epoch(state, record, epoch, evaluated, val_logits, (val_acc, -val_loss), s.patience)
        if work is not None:
            run.save(work, fingerprint, state)
        logger.debug("epoch %d/%d: %s", epoch + 1, s.epochs, record)
        for listener in _listeners.get():
            listener({**record, "epochs": s.epochs})
        if state["stopped"]:
            logger.info("early stopping after epoch %d: no better validation for %d epochs", epoch + 1, s.patience)
            break
    return TrainResult(
        state["best_state"],
        state["best_logits"].numpy(),
        state["best_epoch"] + 1,
        state["history"],
        None if resumed_from is None else resumed_from + 1,
    )


@dataclass
class _Run:
    """What one training run updates: the network, its optimiser and schedule, the EMA copy, the loss, the batches."""

    module: object
    optimizer: object
    scheduler: object
    ema: object
    criterion: object
    dtype: object
    augment: Callable | None
    steps: int

    @classmethod
    def set_up(cls, module, X: np.ndarray, y: np.ndarray, y_val: np.ndarray, s: TrainSettings, device) -> _Run:
        import torch
        from torch.optim.swa_utils import AveragedModel

        n_classes = int(max(y.max(), y_val.max())) + 1
        module.to(device)
        if s.channels_last and X.ndim == 3:
            module.to(memory_format=torch.channels_last)
        steps = max(len(X) // s.batch_size, 1)
        optimizer, scheduler = _optimizer(module, s, steps)
        ema = AveragedModel(module, avg_fn=_ema_avg(s.ema_decay), use_buffers=True) if s.ema_decay else None
        weight = None
        if s.class_weight == "balanced":
            counts = np.bincount(y, minlength=n_classes).astype(np.float64)
            weight = torch.tensor(len(y) / (n_classes * np.maximum(counts, 1)), dtype=torch.float32, device=device)
        criterion = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=s.label_smoothing)
        augment = augmentation(s.augment) if X.ndim == 3 else None
        return cls(module, optimizer, scheduler, ema, criterion, autocast_dtype(s.precision, device), augment, steps)

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

    def train_epoch(self, X: np.ndarray, y: np.ndarray, epoch: int, s: TrainSettings, device) -> tuple[float, int]:
        """One pass over the shuffled training items; the summed loss and the items seen."""
        import torch

        torch.manual_seed(s.seed * 100_003 + epoch)  # shuffling, augmentation and dropout of this epoch
        order = torch.randperm(len(X)).numpy()
        set_train_mode(self.module, frozen=epoch < s.unfreeze_after, frozen_stages=s.frozen_stages)
        total, seen = 0.0, 0
        for b in range(self.steps):
            idx = np.sort(order[b * s.batch_size : (b + 1) * s.batch_size])
            xb = to_batch(X[idx], device, channels_last=s.channels_last, augment=self.augment)
            yb = torch.from_numpy(y[idx]).to(device)
            with torch.autocast(device.type, dtype=self.dtype) if self.dtype is not None else nullcontext():
                logits = self.module(xb)
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


def _validate(
    evaluated, X_val: np.ndarray, y_val: np.ndarray, s: TrainSettings, device
) -> tuple[np.ndarray, float, float]:
    """The validation logits of the network as it predicts, their loss and accuracy."""
    import torch

    val_logits = predict_logits(
        evaluated,
        X_val,
        device=device,
        batch_size=max(s.batch_size, 128),
        precision=s.precision,
        channels_last=s.channels_last,
    )
    log_p = torch.log_softmax(torch.from_numpy(val_logits).double(), dim=1).numpy()
    return val_logits, float(-log_p[np.arange(len(y_val)), y_val].mean()), float((val_logits.argmax(1) == y_val).mean())


def _keep_epoch(
    state: dict, record: dict, epoch: int, evaluated, val_logits: np.ndarray, key: tuple, patience: int | None
) -> None:
    """Record the epoch in ``state``; keep its weights and logits when its validation is the best so far."""
    import torch

    state["history"].append(record)
    if state["best_key"] is None or key > tuple(state["best_key"]):
        state.update(
            best_key=list(key),
            best_epoch=epoch,
            best_state={k: v.detach().cpu().clone() for k, v in evaluated.state_dict().items()},
            best_logits=torch.from_numpy(val_logits.copy()),
        )
    state["epoch"] = epoch
    state["stopped"] = bool(patience and epoch - state["best_epoch"] >= patience)
