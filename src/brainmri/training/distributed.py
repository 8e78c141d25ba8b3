"""Data-parallel training over several processes: :func:`train_in_processes` and the :class:`World` of one process.

``brainmri train ... --nproc N`` (the training parameter ``processes``) trains a deep method's network in ``N``
processes with PyTorch's DistributedDataParallel: gloo between CPU processes, NCCL between GPUs (process ``r`` on
``cuda:r``). The processes are started by ``torch.distributed.launcher.elastic_launch``, the launcher behind
``torchrun``: it picks a free port for the rendezvous, starts the workers (spawned), and reports a worker that fails
with its traceback. brainmri reads the images, splits them and writes every output in the calling process; the
workers only train.

What each process does. Every epoch all processes draw the same order of items (the seed and the epoch number, as
in a single process) and cut it into the same global batches of ``batch_size`` items; process ``r`` takes items
``r, r + N, ...`` of each batch, and DDP averages the gradients, so one step moves the weights once for the whole
batch. Process 0 alone validates, keeps the best epoch, writes the checkpoint and the CSV log, and reports the epoch
to the caller's listeners (progress lines, pruning); it tells the others when to stop. A checkpoint records the
number of processes: a run resumes with the number it was started with. Same seed and same number of processes give
the same weights on the CPU; another number gives another run (each process's batch-norm statistics see its own part
of a batch, and the gradients are summed in another order).

Why a spawned worker rather than running all of brainmri under ``torchrun``: reading, auditing, features, the
out-of-distribution calibration and the bundle would be done ``N`` times, or guarded in every layer; here they are
done once, and the arrays reach the workers as memory-mapped ``.npy`` files.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from pathlib import Path

import numpy as np

from brainmri.errors import BrainMRIError, ConfigError
from brainmri.training.loop import epoch_listener, epoch_listeners, train_module
from brainmri.training.settings import TrainResult, TrainSettings
from brainmri.training.world import World

logger = logging.getLogger(__name__)


class Halted(Exception):
    """Raised in process 0 when the caller's epoch listener stopped the run (its own exception is raised there)."""


def check_processes(processes, device, batch_size: int) -> None:
    """Refuse a number of processes that cannot train on ``device`` (a resolved ``torch.device``)."""
    if not isinstance(processes, int) or isinstance(processes, bool) or processes < 1:
        raise ConfigError(f"training parameter processes (--nproc) must be an integer >= 1, got {processes!r}")
    if processes == 1:
        return
    if processes > batch_size:
        raise ConfigError(
            f"--nproc {processes}: each process needs items of every batch, and batch_size is {batch_size}; "
            f"use at most {batch_size} processes or a larger batch_size"
        )
    if device.type == "cuda":
        import torch

        if device.index not in (None, 0) or torch.cuda.device_count() < processes:
            raise ConfigError(
                f"--nproc {processes} on CUDA puts process r on cuda:r; this machine has "
                f"{torch.cuda.device_count()} GPU(s); use at most that many processes with --device cuda"
            )
    elif device.type != "cpu":
        raise ConfigError(f"--nproc {processes}: several processes train on the CPU or CUDA, not {device.type}")


def train_in_processes(
    module,
    X: np.ndarray,
    y: np.ndarray,
    X_val: np.ndarray,
    y_val: np.ndarray,
    *,
    settings: TrainSettings,
    device,
    processes: int,
    threads: int | None = None,
    work_dir: str | Path | None = None,
    sources: np.ndarray | None = None,
) -> TrainResult:
    """:func:`~brainmri.training.loop.train_module` in ``processes`` data-parallel processes; process 0's result.

    ``threads`` is each process's number of torch CPU threads (default: the
    machine's cores shared out). The caller's epoch listeners
    (:func:`~brainmri.training.loop.epoch_listener`) hear every epoch, in
    this process, and may stop the run as in one process.
    """
    import multiprocessing

    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    listeners = epoch_listeners()
    folder = Path(tempfile.mkdtemp(prefix="brainmri-processes-"))
    context = multiprocessing.get_context("spawn")
    try:
        for name, array in {"X": X, "y": y, "X_val": X_val, "y_val": y_val, "sources": sources}.items():
            if array is not None:  # sources as text: an array of Python objects cannot be memory-mapped
                np.save(folder / f"{name}.npy", np.asarray(array).astype(str) if name == "sources" else array)
        config = LaunchConfig(
            min_nodes=1,
            max_nodes=1,
            nproc_per_node=processes,
            run_id=uuid.uuid4().hex,
            rdzv_backend="c10d",
            rdzv_endpoint="127.0.0.1:0",  # a free port, as torchrun --standalone
            max_restarts=0,
            monitor_interval=0.1,
            start_method="spawn",
        )
        threads = threads or max(1, (os.cpu_count() or 1) // processes)
        records, replies = context.Queue(), context.Queue()
        with ThreadPoolExecutor(1) as pool:
            # The launcher runs in this thread (it handles signals there); the listeners hear the epochs in another.
            relayed = pool.submit(_relay, listeners, records, replies)
            try:
                with _quiet_launcher(), _one_line_failure(processes):
                    results = elastic_launch(config, _worker)(
                        module,
                        str(folder),
                        settings,
                        device.type,
                        threads,
                        None if work_dir is None else str(work_dir),
                        records,
                        replies,
                    )
            finally:
                records.put(None)
            halted = relayed.result()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    if halted is not None:
        raise halted
    outcome = results[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome


def _relay(listeners, records, replies) -> BaseException | None:
    """Hand each epoch's record from process 0 to ``listeners`` until the workers end (a None record); the exception
    that stopped them, if one did (process 0 waits for the reply, so a listener stops the run after that epoch, as
    in one process).
    """
    halted = None
    while (record := records.get()) is not None:
        try:
            for listener in listeners:
                listener(record)
        except BaseException as exc:  # noqa: BLE001 - raised again once the workers have stopped
            halted = exc
        replies.put(halted is not None)
    return halted


def _worker(module, folder: str, settings: TrainSettings, device_type: str, threads: int, work_dir, records, replies):
    """One training process (started by ``elastic_launch``, which sets RANK, WORLD_SIZE and the rendezvous)."""
    import torch
    import torch.distributed as dist

    from brainmri.training.device import tune_malloc

    rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    module = copy.deepcopy(module)  # the launcher hands the tensors over in shared memory: each process its own copy
    logging.getLogger("torch.distributed").setLevel(logging.ERROR)
    tune_malloc()
    torch.set_num_threads(threads)
    if device_type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
        dist.init_process_group("nccl")
    else:
        device = torch.device("cpu")
        dist.init_process_group("gloo")
    world = World(rank, size, device if device_type == "cuda" else None)
    arrays = {
        name: np.load(Path(folder) / f"{name}.npy", mmap_mode="c")
        for name in ("X", "y", "X_val", "y_val", "sources")
        if (Path(folder) / f"{name}.npy").exists()
    }

    def tell(record: dict) -> None:
        records.put(record)
        if replies.get():
            raise Halted

    try:
        with epoch_listener(tell) if world.main else nullcontext():
            return train_module(
                module,
                arrays["X"],
                np.asarray(arrays["y"]),
                arrays["X_val"],
                np.asarray(arrays["y_val"]),
                settings=settings,
                device=device,
                work_dir=work_dir,
                sources=arrays.get("sources"),
                world=world,
            )
    except Halted:
        return None
    except BrainMRIError as exc:  # a clear error of the settings: raised as it is in the caller
        return exc
    finally:
        dist.destroy_process_group()


@contextmanager
def _one_line_failure(processes: int) -> Iterator[None]:
    """A worker's exception as this process's RuntimeError naming the worker (its traceback is in the log above)."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError

    try:
        yield
    except ChildFailedError as exc:
        rank, failure = exc.get_first_failure()
        text = failure.message.get("message", failure.message) if isinstance(failure.message, dict) else failure.message
        raise RuntimeError(f"training process {rank} of {processes} failed: {text}") from None


@contextmanager
def _quiet_launcher() -> Iterator[None]:
    """The launcher's own log lines (rendezvous, worker start) left out, its errors kept."""
    launcher = logging.getLogger("torch.distributed.elastic")
    level = launcher.level
    launcher.setLevel(logging.ERROR)
    try:
        yield
    finally:
        launcher.setLevel(level)
