"""What a training run is asked for (:class:`TrainSettings`), what it gives back (:class:`TrainResult`), its files.

Torch is not imported here: the settings are checked before any network is built.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from brainmri.errors import ConfigError
from brainmri.training.augment import parse_augment
from brainmri.training.style import check_style

CHECKPOINT = "checkpoint.pt"

LOG = "training_log.csv"

#: Columns of :attr:`TrainResult.history` and of the CSV log.
HISTORY_FIELDS = ("epoch", "train_loss", "val_loss", "val_accuracy", "lr", "seconds", "images_per_s")

PRECISIONS = ("auto", "bf16", "fp32")

#: How a training epoch draws its items: each once in a new order; or n draws with replacement, each class (or each
#: source, and each class within it) equally likely.
SAMPLINGS = ("shuffle", "class", "source")


@dataclass(frozen=True)
class TrainSettings:
    """Settings of :func:`~brainmri.training.loop.train_module`.

    The estimator that fills them is :class:`~brainmri.models.torch_classifier.TorchClassifier`.
    """

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
    style: str | None = None
    sampling: str = "shuffle"

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
            ("sampling", self.sampling in SAMPLINGS, f"one of {', '.join(SAMPLINGS)}"),
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
        check_style(self.style)


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
