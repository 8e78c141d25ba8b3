"""A network applied to arrays: items as tensor batches, the autocast dtype, logits in eval mode.

Torch is imported inside the functions: importing :mod:`brainmri.training` does not import it.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np


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
