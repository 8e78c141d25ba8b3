"""Style mixing of early feature statistics while a network trains: MixStyle and DSU (the ``style`` setting).

A convolutional network's early feature maps carry the "style" of an image
(its contrast, noise and texture of acquisition) in their per-channel mean
and standard deviation, and its content in the normalised maps. Both
methods perturb those statistics during training, so that the later layers
cannot rely on the style of one collection (issue 23: a network trained on
brain-tumor-mri learned what its ``notumor`` source looks like):

- **MixStyle** (Zhou et al. 2021): with probability :data:`P`, a batch's
  statistics are mixed with those of a random permutation of the batch,
  ``mu = l * mu_i + (1 - l) * mu_j`` (same for sigma), ``l ~ Beta(0.1, 0.1)``
  per image;
- **DSU** (Li et al. 2022): with probability :data:`P`, each image's mean
  and standard deviation are redrawn from a Gaussian around them whose
  spread is their variance across the batch.

Both act after the first :data:`STAGES` stages of a pretrained backbone
(forward hooks on the stages' last blocks), only in training steps: the
hooks pass features through unchanged when autograd is off (validation,
prediction) and :func:`style_hooks` removes them when training ends, so a
trained network and its bundle carry no trace of them. Written here because
neither torchvision, timm nor MONAI ships them; each is a few lines of the
papers' formulas. The draws come from torch's global generator, which the
training loop seeds per epoch.

References
----------
K. Zhou, Y. Yang, Y. Qiao and T. Xiang, "Domain generalization with
MixStyle", ICLR 2021. arXiv:2104.02008

X. Li, Y. Dai, Y. Ge, J. Liu, Y. Shan and L. Duan, "Uncertainty modeling
for out-of-distribution generalization", ICLR 2022. arXiv:2202.03958
"""

from __future__ import annotations

from contextlib import contextmanager

from brainmri.errors import ConfigError

#: The ``style`` setting's values.
STYLES = ("mixstyle", "dsu")

#: Probability that a batch's statistics are perturbed at one hook, and the Beta parameter of MixStyle (the papers').
P, ALPHA, EPS = 0.5, 0.1, 1e-6

#: After how many of the backbone's first stages the statistics are perturbed (the papers use the first 3 residual
#: stages of a ResNet).
STAGES = 3


def _statistics(x):
    mu = x.mean(dim=(2, 3), keepdim=True)
    sigma = (x.var(dim=(2, 3), keepdim=True) + EPS).sqrt()
    return mu.detach(), sigma.detach()


def mixstyle(x):
    """MixStyle of a batch of feature maps (N, C, H, W): statistics mixed with a permuted batch's."""
    import torch

    n = x.shape[0]
    mu, sigma = _statistics(x)
    lam = torch.distributions.Beta(ALPHA, ALPHA).sample((n, 1, 1, 1)).to(x)
    perm = torch.randperm(n)
    mixed_mu = lam * mu + (1 - lam) * mu[perm]
    mixed_sigma = lam * sigma + (1 - lam) * sigma[perm]
    return (x - mu) / sigma * mixed_sigma + mixed_mu


def dsu(x):
    """DSU of a batch of feature maps (N, C, H, W): each image's statistics redrawn around themselves."""
    import torch

    mu, sigma = _statistics(x)
    spread_mu = (mu.var(dim=0, keepdim=True) + EPS).sqrt()
    spread_sigma = (sigma.var(dim=0, keepdim=True) + EPS).sqrt()
    new_mu = mu + torch.randn(mu.shape).to(x) * spread_mu
    new_sigma = sigma + torch.randn(sigma.shape).to(x) * spread_sigma
    return (x - mu) / sigma * new_sigma + new_mu


_FUNCTIONS = {"mixstyle": mixstyle, "dsu": dsu}


def check_style(style) -> None:
    """Refuse a ``style`` setting other than None or one of :data:`STYLES`."""
    if style is not None and style not in STYLES:
        raise ConfigError(f"training parameter style must be null, {' or '.join(STYLES)}; got {style!r}")


def _hook(function):
    def perturb(module, inputs, output):
        import torch

        if not torch.is_grad_enabled() or output.shape[0] < 2 or torch.rand(()).item() >= P:
            return None
        return function(output)

    return perturb


@contextmanager
def style_hooks(module, style: str | None):
    """Within the block, ``module``'s backbone perturbs its early feature statistics in training steps.

    Parameters
    ----------
    module : torch.nn.Module
        A network with a ``backbone`` attribute (:class:`~brainmri.nets.finetune.FineTuneNet`).
    style : {None, "mixstyle", "dsu"}
        None does nothing.

    Raises
    ------
    ConfigError
        A style asked of a network without a pretrained backbone.
    """
    check_style(style)
    if style is None:
        yield
        return
    trunk = getattr(module, "backbone", None)
    if trunk is None or not getattr(trunk, "stage_ends", ()):
        raise ConfigError(
            f"training parameter style={style!r} needs a network with a backbone, and "
            f"{type(module).__name__} has none; leave it at null"
        )
    ends = trunk.stage_ends[: min(STAGES, len(trunk.stage_ends) - 1)]
    handles = [trunk.blocks[end].register_forward_hook(_hook(_FUNCTIONS[style])) for end in ends]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
