"""Test-time adaptation: a trained network adjusted, without labels, to the images it is asked about.

A network trained on one collection meets another scanner, sequence or
export at test time. Two unsupervised adaptations use the test images
themselves, never their labels:

``adabn``
    Adaptive batch normalisation (Li et al. 2016): every batch-norm layer's
    running mean and variance are re-estimated on the test images (a
    cumulative average over their batches); the learned weights stay as
    trained. Needs batch-norm layers.
``tent``
    Test entropy minimisation (Wang et al. 2021): the affine parameters of
    the normalisation layers (batch, group, layer or instance norm), and only
    they, take :data:`TENT_STEPS` passes of Adam (learning rate
    :data:`TENT_LR`) over the test images that lower the entropy of the
    predictions, batch norm using each batch's statistics as in the paper.
    Predictions are then made with batch-norm statistics re-estimated on the
    test images (as ``adabn``), so that an image's prediction does not depend
    on which images share its batch.

Both work on a copy of the module: the fitted model, and the bundle on disk,
are never changed. The order of the batches is drawn from the seed, so an
adaptation is deterministic for a seed on a CPU.

References
----------
Y. Li, N. Wang, J. Shi, J. Liu and X. Hou, "Revisiting batch normalization for
practical domain adaptation", arXiv:1603.04779, 2016.
https://doi.org/10.48550/arXiv.1603.04779

D. Wang, E. Shelhamer, S. Liu, B. Olshausen and T. Darrell, "Tent: fully
test-time adaptation by entropy minimization", ICLR 2021.
https://doi.org/10.48550/arXiv.2006.10726
"""

from __future__ import annotations

import copy
import logging

import numpy as np

from brainmri.errors import ConfigError
from brainmri.steps import final_step, with_final_step
from brainmri.training.batches import to_batch

logger = logging.getLogger(__name__)

#: Names of ``--adapt``.
ADAPT_METHODS = ("none", "adabn", "tent")
#: Passes of Tent over the test images, and its learning rate (Adam), as in Wang et al.'s CIFAR experiments.
TENT_STEPS = 3
TENT_LR = 1e-3


def check_adapt(method: str) -> str:
    """``method`` if it is one of :data:`ADAPT_METHODS`.

    >>> check_adapt("adabn")
    'adabn'
    """
    if method not in ADAPT_METHODS:
        raise ConfigError(f"--adapt {method!r}: unknown test-time adaptation; valid: {', '.join(ADAPT_METHODS)}")
    return method


def adapt_modes(value: str) -> tuple[str, ...]:
    """The adaptations of a benchmark's ``--adapt``: one of :data:`ADAPT_METHODS`, or several, comma-separated.

    With several, every trained model is tested once per adaptation, so the
    adaptations are compared on the same network, pairwise (see
    :func:`brainmri.runs.benchmark.adapted_name`).

    >>> adapt_modes("none,adabn")
    ('none', 'adabn')
    """
    modes = tuple(m.strip() for m in str(value).split(","))
    for mode in modes:
        check_adapt(mode)
    if len(set(modes)) < len(modes):
        raise ConfigError(f"--adapt {value!r}: an adaptation is named twice; name each once, e.g. none,adabn,tent")
    return modes


def _batch_norms(module) -> list:
    from torch import nn

    return [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def _norm_layers(module) -> list:
    from torch import nn

    kinds = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm, nn.modules.instancenorm._InstanceNorm)
    return [m for m in module.modules() if isinstance(m, kinds) and getattr(m, "weight", None) is not None]


def check_adaptable(module, method: str, what: str) -> None:
    """Refuse an adaptation that ``module`` has no layers for.

    Raises
    ------
    ConfigError
        ``adabn`` without batch-norm layers, ``tent`` without normalisation
        layers with affine parameters; ``what`` names the model.
    """
    if method == "adabn" and not _batch_norms(module):
        raise ConfigError(
            f"--adapt adabn: {what} has no batch-norm layers whose statistics could be re-estimated; "
            "use --adapt tent (if it has other normalisation layers) or --adapt none"
        )
    if method == "tent" and not _norm_layers(module):
        raise ConfigError(
            f"--adapt tent: {what} has no normalisation layers with affine parameters to adapt; use --adapt none"
        )


def _batches(n: int, batch_size: int, generator):
    import torch

    order = torch.randperm(n, generator=generator).numpy()
    return [np.sort(order[s : s + batch_size]) for s in range(0, n, batch_size)]


def _reestimate(module, X: np.ndarray, *, device, batch_size: int, channels_last: bool, generator) -> None:
    """AdaBN: batch-norm running statistics replaced by their cumulative average over the batches of ``X``."""
    import torch

    norms = _batch_norms(module)
    module.eval()
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts the same
        m.train()
    with torch.no_grad():
        for rows in _batches(len(X), batch_size, generator):
            module(to_batch(X[rows], device, channels_last=channels_last))
    module.eval()


def _tent(module, X: np.ndarray, *, device, batch_size: int, channels_last: bool, generator) -> None:
    """Tent: :data:`TENT_STEPS` passes of entropy minimisation over the normalisation layers' affine parameters."""
    import torch

    norms = _norm_layers(module)
    module.eval()
    for p in module.parameters():
        p.requires_grad_(False)
    params = []
    for m in norms:
        m.weight.requires_grad_(True)
        params.append(m.weight)
        if m.bias is not None:
            m.bias.requires_grad_(True)
            params.append(m.bias)
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.train()  # normalise with each batch's statistics, as Wang et al. do
    optimizer = torch.optim.Adam(params, lr=TENT_LR, betas=(0.9, 0.999))
    for _ in range(TENT_STEPS):
        for rows in _batches(len(X), batch_size, generator):
            logits = module(to_batch(X[rows], device, channels_last=channels_last)).float()
            entropy = -(logits.softmax(1) * logits.log_softmax(1)).sum(1).mean()
            optimizer.zero_grad()
            entropy.backward()
            optimizer.step()
    for p in module.parameters():
        p.requires_grad_(False)
    module.eval()


def adapt_module(
    module,
    X: np.ndarray,
    *,
    method: str,
    device,
    seed: int = 0,
    batch_size: int = 64,
    channels_last: bool = False,
    what: str = "the model",
):
    """A copy of a trained ``module`` adapted to the unlabelled items ``X``.

    Parameters
    ----------
    module : torch.nn.Module
        Trained, in eval mode; left unchanged.
    X : ndarray of shape (n, H, W) or (n, F)
        The test items, as the module's classifier receives them.
    method : {"adabn", "tent"}
    device : torch.device
    seed : int
        Seeds the order of the batches.
    batch_size : int
    channels_last : bool
    what : str
        The model, as error messages name it.

    Returns
    -------
    torch.nn.Module
        The adapted copy, in eval mode, with no parameter requiring gradients.

    Raises
    ------
    ConfigError
        Unknown ``method``, or a module without the layers it adapts
        (:func:`check_adaptable`).
    """
    import torch

    check_adapt(method)
    if method == "none":
        return module
    check_adaptable(module, method, what)
    adapted = copy.deepcopy(module)
    generator = torch.Generator().manual_seed(seed)
    settings = {"device": device, "batch_size": batch_size, "channels_last": channels_last, "generator": generator}
    with torch.enable_grad() if method == "tent" else torch.no_grad():
        if method == "tent":
            _tent(adapted, X, **settings)
        if _batch_norms(adapted):
            _reestimate(adapted, X, **settings)
    logger.info("test-time adaptation %s on %d items", method, len(X))
    return adapted


def check_model_adapts(model, method: str, *, name: str | None = None):
    """The classifier of a method (fitted or not) that ``method`` can adapt.

    Raises
    ------
    ConfigError
        The classifier is not a torch classifier (a classical method); or,
        once fitted, its network lacks the layers ``method`` adapts.
    """
    final = final_step(model)
    what = name or "the model"
    if "adapt" not in final.get_params(deep=False):
        raise ConfigError(
            f"--adapt {method}: {what} classifies with {type(final).__name__}, not a neural network with "
            "normalisation layers, so there is nothing to adapt; use --adapt none, or a deep method"
        )
    if hasattr(final, "module_"):
        check_adaptable(final.module_, method, f"the network of {what}")
    return final


def adapt_model(model, method: str, *, name: str | None = None, seed: int | None = None):
    """A shallow copy of a fitted method whose torch classifier adapts to each set of items it predicts.

    Parameters
    ----------
    model : estimator
        A fitted method (a pipeline whose final step is a
        :class:`~brainmri.models.torch_classifier.TorchClassifier`, or one).
    method : {"none", "adabn", "tent"}
    name : str, optional
        The method's name, for error messages.
    seed : int, optional
        Seed of the adaptation (the order of its batches); None keeps the
        classifier's training seed.

    Returns
    -------
    estimator
        ``model`` itself for ``none``; otherwise a copy sharing every fitted
        step but the final one, whose ``adapt`` is ``method``. Each call of
        its ``predict_proba`` adapts a copy of the network to the items of
        that call (:func:`adapt_module`).

    Raises
    ------
    ConfigError
        The method has no torch classifier (a classical method), or its
        network lacks the layers ``method`` adapts.
    """
    if check_adapt(method) == "none":
        return model
    final = check_model_adapts(model, method, name=name)
    adapted = copy.copy(final).set_params(adapt=method, **({} if seed is None else {"seed": seed}))
    return with_final_step(model, adapted)


#: Thresholds of :func:`adaptation_check`: the share of calls an adaptation may change, the smallest batch it may
#: adapt to, the share of a batch that should look unlike training for adaptation to have something to correct,
#: and the rise of the largest class's share that reads as a collapse towards one class.
MAX_CHANGED, MIN_BATCH, MIN_UNLIKE, MAX_MIX_RISE = 0.10, 32, 0.5, 0.20


def adaptation_check(
    as_trained: list[str], adapted: list[str], unlike_training: list[bool | None], *, method: str, batch_size: int
) -> dict:
    """How far a test-time adaptation moved the calls, and the risks the data show: both calls are reported.

    No label-free rule tells whether an adaptation helped: on lgg-tcga
    (docs/benchmarks.md, issue 23) AdaBN changed 24% of the calls of a
    fine-tuned network and lowered glioma recall from 0.708 to 0.623, and
    on another external set every figure fell, while on brain-tumor-yes-no's
    tumours it raised the share called tumour. So ``predict --adapt`` keeps
    the calls as trained beside the adapted ones and states these risks.

    Parameters
    ----------
    as_trained, adapted : list of str
        The call of every image by the bundle as trained and as adapted.
    unlike_training : list of bool or None
        The OOD flag of every image (None without a detector).
    method : str
        The adaptation (``adabn`` or ``tent``).
    batch_size : int
        Images adapted to at a time.

    Returns
    -------
    dict
        ``method``, ``n``, ``calls_changed`` (share), ``class_mix`` (``as_trained`` and ``adapted``: class ->
        share), ``flagged_unlike_training`` (share, or None) and ``risks`` (sentences; empty when none applies).

    Examples
    --------
    >>> check = adaptation_check(["a", "a", "b", "b"], ["a", "b", "b", "b"], [True] * 4, method="adabn", batch_size=64)
    >>> check["calls_changed"], check["class_mix"]["adapted"]
    (0.25, {'a': 0.25, 'b': 0.75})
    >>> check["risks"][0][:60]
    'adabn changed 25.0% of the calls (more than 10%): on lgg-tcga'
    """
    n = len(adapted)
    changed = sum(a != b for a, b in zip(as_trained, adapted, strict=True)) / max(n, 1)
    classes = sorted(set(as_trained) | set(adapted))
    mix = {
        name: {c: round(calls.count(c) / max(n, 1), 4) for c in classes}
        for name, calls in (("as_trained", as_trained), ("adapted", adapted))
    }
    flags = [f for f in unlike_training if f is not None]
    unlike = sum(flags) / len(flags) if flags else None
    risks = []
    if changed > MAX_CHANGED:
        risks.append(
            f"{method} changed {100 * changed:.1f}% of the calls (more than {100 * MAX_CHANGED:.0f}%): on lgg-tcga a "
            "change of 24% lowered glioma recall from 0.708 to 0.623; trust neither set of calls on a new source "
            "without labelled images of it"
        )
    if batch_size < MIN_BATCH or n < MIN_BATCH:
        risks.append(
            f"{method} estimated its statistics from batches of {min(batch_size, n)} images (fewer than "
            f"{MIN_BATCH}): too few for stable statistics; use --batch-size {2 * MIN_BATCH} or more"
        )
    if unlike is not None and unlike < MIN_UNLIKE:
        risks.append(
            f"only {100 * unlike:.1f}% of the images look unlike the training data: adaptation has little to "
            "correct and may only move calls"
        )
    if max(mix["adapted"].values(), default=0) > max(mix["as_trained"].values(), default=0) + MAX_MIX_RISE:
        top = max(mix["adapted"], key=mix["adapted"].get)
        risks.append(
            f"after {method}, {100 * mix['adapted'][top]:.1f}% of the calls are {top} (as trained: "
            f"{100 * mix['as_trained'][top]:.1f}%): the calls collapse towards one class"
        )
    return {
        "method": method,
        "n": n,
        "calls_changed": round(changed, 4),
        "class_mix": mix,
        "flagged_unlike_training": None if unlike is None else round(unlike, 4),
        "risks": risks,
    }
