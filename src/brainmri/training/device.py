"""Where and how fast torch runs: device choice, CPU threads, glibc malloc settings.

glibc returns freed memory to the system eagerly: every block above
``M_MMAP_THRESHOLD`` (128 KiB at start) is an ``mmap`` of its own, and the
heap is trimmed whenever ``M_TRIM_THRESHOLD`` bytes are free at its top.
A CNN allocates and frees tensors of a few MiB per layer and batch, so with
the defaults every step pays page faults for memory it had a moment ago;
on this project's 2-core machine EfficientNet embeddings ran at 31 images/s
with the defaults and 130 images/s with both thresholds raised (the
``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_`` environment
variables do the same at process start). :func:`tune_malloc` calls
``mallopt`` through ctypes once per process; elsewhere than glibc it does
nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import platform
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from brainmri.errors import ConfigError

logger = logging.getLogger(__name__)

#: ``mallopt`` parameters (glibc ``malloc.h``).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
#: Largest mmap threshold glibc accepts on 64-bit (``DEFAULT_MMAP_THRESHOLD_MAX``): 32 MiB.
MMAP_THRESHOLD = 32 * 1024 * 1024
#: Free memory kept at the top of the heap before trimming: 1 GiB.
TRIM_THRESHOLD = 1024 * 1024 * 1024

_malloc_tuned: bool | None = None


def tune_malloc() -> bool:
    """Raise glibc's mmap and trim thresholds for this process (once); True when applied.

    Returns False (and changes nothing) on a C library other than glibc.
    """
    global _malloc_tuned
    if _malloc_tuned is None:
        _malloc_tuned = False
        if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _malloc_tuned = bool(
                libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) and libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
            )
            logger.debug("glibc mallopt thresholds raised: %s", _malloc_tuned)
    return _malloc_tuned


DEVICES = ("auto", "cpu", "cuda", "mps")


#: x86 (AVX512-BF16, AMX) and Arm (BF16) /proc/cpuinfo flags of native bfloat16 arithmetic.
BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16", "bf16"})


@lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (AVX512-BF16 or AMX on x86, BF16 on Arm).

    Without it PyTorch emulates a bfloat16 autocast: a 3x3 convolution of 16 x 32 x 64 x 64 took 2.5 s against
    0.03 s in float32 (85x) on the AVX2 EPYC of a 2-core machine, so brainmri computes in float32 there
    (:func:`~brainmri.training.batches.autocast_dtype`). Read from ``/proc/cpuinfo`` (Linux); elsewhere from
    oneDNN through torch.
    """
    try:
        return bool(BF16_FLAGS & set(Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").split()))
    except OSError:
        pass
    try:
        import torch

        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:  # noqa: BLE001 - an old torch without the op, or no torch: assume emulation
        return False


def computes_bf16(precision: str, device_type: str) -> bool:
    """Whether ``precision`` (a network's or an extractor's setting) computes in bfloat16 on a ``device_type`` device.

    ``bf16`` does, except on a CPU without native bfloat16 (:func:`cpu_has_bf16`), where PyTorch would emulate it,
    about 85x slower for a convolution: float32 there, with a warning once.
    """
    if precision != "bf16":
        return False
    if device_type == "cpu" and not cpu_has_bf16():
        _warn_emulated_bf16()
        return False
    return True


@lru_cache(maxsize=1)
def _warn_emulated_bf16() -> None:
    logger.warning(
        "precision bf16: this CPU has no native bfloat16 (AVX512-BF16, AMX or Arm BF16), so PyTorch would emulate "
        "it, about 85x slower for a convolution; computing in float32 instead"
    )


def surely_cpu(device: str) -> bool:
    """Whether ``device`` resolves to the CPU, told without importing torch (False when unsure).

    ``cpu`` does; ``auto`` does on a Linux machine with no GPU device node
    (``/dev/nvidia*`` for CUDA, ``/dev/kfd`` for ROCm, ``/dev/dxg`` for WSL),
    where torch can see no GPU. Elsewhere (macOS and its MPS, Windows) only
    torch can tell.
    """
    if str(device) == "cpu":
        return True
    if str(device) != "auto" or not sys.platform.startswith("linux"):
        return False
    dev = Path("/dev")
    return not (any(dev.glob("nvidia[0-9]*")) or (dev / "kfd").exists() or (dev / "dxg").exists())


def resolve_device(device: str = "auto"):
    """The ``torch.device`` that ``device`` names.

    Parameters
    ----------
    device : {"auto", "cpu", "cuda", "cuda:N", "mps"}
        ``auto`` takes a CUDA GPU when torch sees one, else Apple's MPS when
        available, else the CPU.

    Returns
    -------
    torch.device

    Raises
    ------
    ConfigError
        An unknown name, or a GPU that torch cannot see.
    """
    import torch

    name = str(device)
    kind = name.split(":")[0]
    if kind not in DEVICES or (":" in name and kind != "cuda"):
        raise ConfigError(f"--device {name!r} is not a device; use one of {', '.join(DEVICES)} (or cuda:N)")
    if kind == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        return torch.device("mps" if mps is not None and mps.is_available() else "cpu")
    if kind == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"--device {name}: torch sees no CUDA GPU here (torch.cuda.is_available() is False); "
            "use --device cpu or --device auto"
        )
    if kind == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError(f"--device {name}: Apple MPS is not available here; use --device cpu or --device auto")
    return torch.device(name)


def check_threads(threads: int | None) -> None:
    """Refuse a thread count that is not a positive integer (None means torch's default)."""
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool) or threads < 1):
        raise ConfigError(f"--threads must be a positive integer, got {threads!r}")


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Within the block torch uses ``threads`` CPU threads (None: unchanged); the old count comes back after."""
    import torch

    check_threads(threads)
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)
