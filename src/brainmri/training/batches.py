"""A network applied to arrays: items as tensor batches, the autocast dtype, logits in eval mode.

Torch is imported inside the functions: importing :mod:`brainmri.training` does not import it.
"""

from __future__ import annotations

from contextlib import nullcontext

import numpy as np

from brainmri.errors import ConfigError
from brainmri.training.device import computes_bf16


def autocast_dtype(precision: str, device):
    """The autocast dtype of ``precision`` on ``device`` (None: full float32).

    ``auto`` is bf16 on a CUDA GPU that supports it, float32 elsewhere.
    ``bf16`` on a CPU without native bfloat16 is float32 too
    (:func:`~brainmri.training.device.computes_bf16`).
    """
    import torch

    if precision == "bf16":
        return torch.bfloat16 if computes_bf16(precision, device.type) else None
    if precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported():
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


def last_linear(module, what: str = "the network"):
    """The last ``torch.nn.Linear`` of ``module``: its input is the embedding the logits are read from."""
    import torch

    linear = [m for m in module.modules() if isinstance(m, torch.nn.Linear)]
    if not linear:
        raise ConfigError(f"{what} has no linear layer whose input could serve as its embedding")
    return linear[-1]


def last_pool(module):
    """The last global average pool (``torch.nn.AdaptiveAvgPool1d/2d/3d``) of ``module``, or None: the feature map
    it reduces is where the spread of the embedding is read (:func:`capture_embedding`)."""
    import torch

    pools = (torch.nn.AdaptiveAvgPool1d, torch.nn.AdaptiveAvgPool2d, torch.nn.AdaptiveAvgPool3d)
    found = [m for m in module.modules() if isinstance(m, pools)]
    return found[-1] if found else None


def capture_embedding(module, seen: list, what: str = "the network") -> list:
    """Forward hooks that append to ``seen`` what the out-of-distribution score reads of one pass of ``module``:
    the input of its last linear layer (the embedding) and, when it has a global average pool, the standard
    deviation over positions of the map that pool reduces (the spread, which the pool throws away; on another
    publisher's gliomas it told them from the training source better than the embedding, docs/benchmarks.md).
    :func:`join_embedding` puts them side by side. Returns the hook handles, to remove."""
    hooks = [last_linear(module, what).register_forward_pre_hook(lambda m, args: seen.append(("mean", args[0])))]
    pool = last_pool(module)
    if pool is not None:
        hooks.append(
            pool.register_forward_pre_hook(
                lambda m, args: seen.append(("spread", args[0].float().flatten(2).std(2, correction=0)))
            )
        )
    return hooks


def join_embedding(seen: list):
    """The embedding of one pass from :func:`capture_embedding`'s records: ``(N, d)``, or ``(N, 2C)`` with the
    spread after the embedding (a torch tensor, float32)."""
    import torch

    parts = dict(seen)
    mean = parts["mean"].float().flatten(1)
    return mean if "spread" not in parts else torch.cat([mean, parts["spread"].flatten(1)], 1)


def logits_of_views(
    module, X: np.ndarray, views, *, embed: bool = False, what: str = "the network", **settings
) -> tuple[np.ndarray, np.ndarray | None]:
    """The mean logits of ``module`` over ``views`` of ``X`` (each a function of the array) and, with ``embed``,
    the embedding of the out-of-distribution score for the first view (:func:`capture_embedding`): float32
    ``(n, d)``, else None.

    The embedding is caught by forward hooks in the pass the logits need
    anyway, so it costs no pass of its own. ``settings`` go to
    :func:`predict_logits`; ``what`` names the network in the error.
    """
    captured: list[np.ndarray] = []
    hooks: list = []
    if embed:
        seen: list = []

        def batch_done(m, args, out):  # after each batch: that batch's embedding
            captured.append(join_embedding(seen).cpu().numpy())
            seen.clear()

        hooks = [*capture_embedding(module, seen, what), module.register_forward_hook(batch_done)]
    logits = []
    try:
        for view in views:
            logits.append(predict_logits(module, view(X), **settings))
            for hook in hooks:  # the first view only
                hook.remove()
            hooks = []
    finally:
        for hook in hooks:
            hook.remove()
    return sum(logits) / len(logits), (np.concatenate(captured).reshape(len(X), -1) if embed else None)
