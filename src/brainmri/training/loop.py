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

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

import numpy as np

from brainmri.training.batches import predict_logits
from brainmri.training.run import TrainingRun, run_fingerprint
from brainmri.training.sampling import sampling_weights
from brainmri.training.settings import TrainResult, TrainSettings
from brainmri.training.style import style_hooks
from brainmri.training.world import ONE_PROCESS, World

logger = logging.getLogger(__name__)


_listeners: ContextVar[tuple[Callable[[dict], None], ...]] = ContextVar("brainmri_epoch_listeners", default=())


@contextmanager
def epoch_listener(callback: Callable[[dict], None]) -> Iterator[None]:
    """Within the block, every training loop calls ``callback(record)`` after each epoch.

    ``record`` holds :data:`~brainmri.training.settings.HISTORY_FIELDS` plus ``epochs`` (the planned
    number). The benchmark runner turns records into progress lines; a
    callback that raises stops training after that epoch's checkpoint.
    """
    token = _listeners.set(_listeners.get() + (callback,))
    try:
        yield
    finally:
        _listeners.reset(token)


def epoch_listeners() -> tuple[Callable[[dict], None], ...]:
    """The callbacks :func:`epoch_listener` set in this context (to hand them to another thread)."""
    return _listeners.get()


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
    sources: np.ndarray | None = None,
    world: World = ONE_PROCESS,
) -> TrainResult | None:
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
    sources : ndarray or None
        Source of every training item, for ``settings.sampling="source"``
        (:mod:`brainmri.training.sampling`).
    world : World
        This process's place among data-parallel training processes
        (:mod:`brainmri.training.distributed`); process 0 alone validates,
        writes the checkpoint and tells the epoch listeners.

    Returns
    -------
    TrainResult
        None in a process other than process 0.
    """
    s = settings
    weights = sampling_weights(y, sources, s.sampling)
    run = TrainingRun.set_up(module, X, y, y_val, s, device, weights, world)
    work = Path(work_dir) if work_dir else None
    fingerprint = run_fingerprint(module, X, y, X_val, s, weights, processes=world.size)
    state, resumed_from = run.resume(work, fingerprint)
    evaluated = run.ema.module if run.ema is not None else module
    with style_hooks(module, s.style):
        for epoch in range(state["epoch"] + 1, 0 if state["stopped"] else s.epochs):
            start = time.perf_counter()
            total, seen = world.total(*run.train_epoch(X, y, epoch, s, device, world))
            train_s = time.perf_counter() - start
            halted = None
            if world.main:
                val_logits, val_loss, val_acc = _validate(evaluated, X_val, y_val, s, device)
                record = _record(epoch, total, seen, val_loss, val_acc, run, time.perf_counter() - start, train_s)
                _keep_epoch(state, record, epoch, evaluated, val_logits, (val_acc, -val_loss), s.patience)
                if work is not None:
                    run.save(work, fingerprint, state)
                logger.debug("epoch %d/%d: %s", epoch + 1, s.epochs, record)
                halted = _tell_listeners({**record, "epochs": s.epochs})
            stop = world.from_main(state["stopped"] or halted is not None)
            if halted is not None:  # after the other processes know to stop
                raise halted
            if stop:
                logger.info("early stopping after epoch %d: no better validation for %d epochs", epoch + 1, s.patience)
                break
    if not world.main:
        return None
    return TrainResult(
        state["best_state"],
        state["best_logits"].numpy(),
        state["best_epoch"] + 1,
        state["history"],
        None if resumed_from is None else resumed_from + 1,
    )


def _record(
    epoch: int, total: float, seen: int, val_loss: float, val_acc: float, run, seconds: float, train_s: float
) -> dict:
    """The epoch's line of the history (:data:`~brainmri.training.settings.HISTORY_FIELDS`)."""
    return {
        "epoch": epoch + 1,
        "train_loss": round(total / max(seen, 1), 6),
        "val_loss": round(val_loss, 6),
        "val_accuracy": round(val_acc, 6),
        "lr": float(run.optimizer.param_groups[0]["lr"]),
        "seconds": round(seconds, 3),
        "images_per_s": round(seen / train_s, 1),
    }


def _tell_listeners(record: dict) -> Exception | None:
    """Call the epoch listeners; the exception one raised (which stops the run), if any."""
    try:
        for listener in _listeners.get():
            listener(record)
    except Exception as exc:  # noqa: BLE001 - raised by the caller once every process knows to stop
        return exc
    return None


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
