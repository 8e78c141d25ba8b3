"""Augmentation of training images, per image: geometric (flips, a small affine, brightness and contrast) and appearance.

Applied to the training part only, after every split, to a whole batch at
once: each image draws its own flip, rotation (up to 10 degrees), shift (up
to 5 %), scale (0.9-1.1), brightness and contrast factors (0.8-1.2), and one
``grid_sample`` warps the batch. torchvision.transforms.v2 draws one set of
parameters per call, so per-image draws need a Python loop over the images:
at 128 px on one CPU thread that fed 761 images/s, which is a noticeable
share of a training step; the batched version feeds several thousand. The
draws come from torch's global generator, which the training loop seeds per
epoch, so an epoch's augmentations are the same in a resumed run.

Appearance augmentation (:func:`appearance_batch`) imitates what changes
from one scanner, sequence or export to another, so that a network learns
the anatomy rather than one collection's look: TorchIO's random bias field,
gamma, blur, motion, ghosting and anisotropy, and Rician noise
(:data:`APPEARANCE`), each applied to an image with probability :data:`APPEARANCE_P`, its
parameters drawn per image. TorchIO draws from torch's global generator too,
so the training loop's seeding makes it deterministic. Its transforms work
on one image at a time (a 2D slice held as a one-slice volume), on the CPU.
Speed at 128 px, batches of 64, one torch thread, on the 2-core machine at
load 10 (another benchmark running, this one at idle priority): the preset
``appearance`` fed 72 images/s, geometric part included; alone (each at
probability 1/4) bias field 201, motion 272, anisotropy 391, blur 1559,
ghosting 1647, gamma 2646 images/s; geometric 720; TorchIO's Gaussian
noise 1070, since replaced by the Rician noise written here (9,900
images/s on the quiet machine). Below the
122 images/s of an ayadi-cnn training step there, so it lengthens CPU
training; choose parts (``augment="geometric,gamma,blur,noise"``) to keep
it cheap. TorchIO deep-copies every image it transforms unless told not to
(``copy=False`` here), which had cost more than the transforms.

The ``augment`` setting of the deep methods (:func:`parse_augment`):
``False``; ``True`` or ``"geometric"``; ``"appearance"`` (geometric plus
the TorchIO parts of :data:`APPEARANCE` and Rician noise); or a
comma-separated list of those parts (``"geometric,gamma,bias-field"``,
``"appearance,tissue-contrast"``). ``tissue-contrast`` (issue 23) gives each
tissue class of half the images a random new intensity, inverting ones
included (:func:`_random_tissue_contrast`), so that the sequence's contrast
carries no label.

References
----------
F. Pérez-García, R. Sparks and S. Ourselin, "TorchIO: a Python library for
efficient loading, preprocessing, augmentation and patch-based sampling of
medical images in deep learning", Computer Methods and Programs in
Biomedicine 208:106236, 2021. DOI: 10.1016/j.cmpb.2021.106236

B. Billot, D. N. Greve, O. Puonti et al., "SynthSeg: segmentation of brain
MRI scans of any contrast and resolution without retraining", Medical
Image Analysis 86:102789, 2023. DOI: 10.1016/j.media.2023.102789
"""

from __future__ import annotations

import math
from collections.abc import Callable

from brainmri.data.tissue import random_tissue_contrast
from brainmri.errors import ConfigError

#: Largest rotation (degrees), shift (fraction of the size), scale and intensity changes.
DEGREES, SHIFT, SCALE, BRIGHTNESS, CONTRAST = 10.0, 0.05, 0.1, 0.2, 0.2

#: Probability that each appearance transform applies to an image (so about half the images keep most of their look).
APPEARANCE_P = 0.25

#: The appearance transforms by name: their TorchIO class and arguments, for 2D slices held as (1, H, W, 1) volumes.
APPEARANCE = {
    "bias-field": ("RandomBiasField", {"coefficients": 0.4, "order": 3}),
    "gamma": ("RandomGamma", {"log_gamma": (-0.4, 0.4)}),
    "blur": ("RandomBlur", {"std": (0.0, 1.0, 0.0, 1.0, 0.0, 0.0)}),
    "noise": (None, {"sigma": (0.0, 0.1)}),  # Rician, by hand: see _random_rician_noise
    "motion": (
        "RandomMotion",
        {"degrees": 2.0, "translation": 2.0, "num_transforms": 1, "image_interpolation": "linear"},
    ),
    "ghosting": ("RandomGhosting", {"num_ghosts": (2, 6), "axes": (0, 1), "intensity": (0.1, 0.5)}),
    "anisotropy": ("RandomAnisotropy", {"axes": (0, 1), "downsampling": (1.5, 3.0)}),
    "tissue-contrast": (None, {"n_clusters": 4}),  # by hand: see _random_tissue_contrast
}

#: Probability of ``tissue-contrast`` (higher than :data:`APPEARANCE_P`: the sequence's contrast is what a network
#: trained on one collection learns most readily, issue 23).
TISSUE_CONTRAST_P = 0.5


#: The parts an ``augment`` setting may list, and the presets. ``appearance`` is what it was when it was measured
#: (docs/benchmarks.md): ``tissue-contrast`` is listed on its own.
PARTS = ("geometric", *APPEARANCE)
PRESETS = {"geometric": ("geometric",), "appearance": tuple(p for p in PARTS if p != "tissue-contrast")}


def parse_augment(setting) -> tuple[str, ...]:
    """The parts of an ``augment`` setting, in :data:`PARTS` order.

    >>> parse_augment(True), parse_augment(False)
    (('geometric',), ())
    >>> parse_augment("gamma, geometric")
    ('geometric', 'gamma')

    Raises
    ------
    ConfigError
        Any other value; the message lists the valid ones.
    """
    if isinstance(setting, bool) or setting is None:
        return ("geometric",) if setting else ()
    names = [n.strip() for n in setting.split(",")] if isinstance(setting, str) else [setting]
    parts = {p for n in names for p in PRESETS.get(n, (n,))}
    if not names or not parts <= set(PARTS):
        raise ConfigError(
            f"training parameter augment must be true, false, appearance or a comma-separated list of "
            f"{', '.join(PARTS)}; got {setting!r}"
        )
    return tuple(p for p in PARTS if p in parts)


def augmentation(setting) -> Callable | None:
    """The function of a batch (n, 1, H, W) that an ``augment`` setting asks for; None for none.

    The appearance transforms come first (they happen at acquisition), then
    the geometric ones.
    """
    parts = parse_augment(setting)
    appearance = [p for p in parts if p != "geometric"]
    if not appearance:
        return augment_batch if parts else None
    transform = _appearance_transform(appearance)

    def augment(x):
        x = appearance_batch(x, transform)
        return augment_batch(x) if "geometric" in parts else x

    return augment


def _appearance_transform(names):
    try:
        import torchio
    except ImportError:
        raise ConfigError(
            f"appearance augmentation ({', '.join(names)}) needs TorchIO: pip install 'brainmri[shift]'"
        ) from None
    return torchio.Compose(
        [
            torchio.Lambda(_BY_HAND[n][0](**APPEARANCE[n][1]), p=_BY_HAND[n][1], copy=False)
            if n in _BY_HAND
            else getattr(torchio, APPEARANCE[n][0])(p=APPEARANCE_P, copy=False, **APPEARANCE[n][1])
            for n in names
        ],
        copy=False,
    )


def _random_rician_noise(sigma):
    """The noise of a magnitude image, its sigma drawn per image from ``sigma`` (low, high), for ``torchio.Lambda``.

    Written here because TorchIO's RandomNoise adds zero-mean Gaussian noise:
    an MRI magnitude image has Rician noise (Gudbjartsson and Patz 1995),
    which also lifts the dark background to about 1.25 sigma. That lift is
    what the ``rician-noise`` shift (:mod:`brainmri.data.shifts`) does to a
    preprocessed image: at severity 3 the background of brain-tumor-mri's
    test images at 128 px rises from 0.036 to 0.082 on average (and the
    fine-tuned EfficientNet-Lite0 of docs/benchmarks.md, trained without
    appearance augmentation, calls those images one class: accuracy 0.41),
    while zero-mean Gaussian noise of std 0.04 clamped to [0, 1] lifts it
    by 0.016. The draws come from torch's global generator, like TorchIO's.
    """
    import torch

    low, high = sigma

    def noise(x):
        level = low + (high - low) * torch.rand(()).item()
        return torch.hypot(x + level * torch.randn(x.shape), level * torch.randn(x.shape))

    return noise


def _random_tissue_contrast(n_clusters):
    """A new random intensity for each tissue class of an image (its FCM centres), for ``torchio.Lambda``.

    Contrast randomisation in the spirit of SynthSeg (Billot et al. 2023):
    the ``n_clusters - 1`` classes above the background
    (:func:`brainmri.data.tissue.tissue_centres`) each get an intensity
    drawn uniformly in [0.05, 1], in any order, so that CSF may turn
    brighter than white matter (T1 to T2-like) or a lesion darker than its
    surroundings; the background stays dark (a bright background would be
    a new cue of its own). Written here because TorchIO's intensity
    transforms are monotone (gamma) or spatial (bias field). The draws come
    from torch's global generator, like TorchIO's. On one CPU core it costs
    about 1 ms per 128 px image (the FCM on the 256-bin histogram).
    """
    import torch

    def contrast(x):
        levels = (0.05 + 0.95 * torch.rand(n_clusters - 1, dtype=torch.float64)).numpy()
        image = x[0, :, :, 0].numpy()
        return torch.from_numpy(random_tissue_contrast(image, levels))[None, :, :, None].to(x.dtype)

    return contrast


#: The parts written here rather than taken from TorchIO: the function of the part's arguments that returns the
#: function of one image tensor for ``torchio.Lambda``, and its probability.
_BY_HAND = {
    "noise": (_random_rician_noise, APPEARANCE_P),
    "tissue-contrast": (_random_tissue_contrast, TISSUE_CONTRAST_P),
}


def appearance_batch(x, transform):
    """Every image of a batch through a TorchIO ``transform`` (its own draws), on the CPU, clamped to [0, 1].

    Parameters
    ----------
    x : torch.Tensor of shape (n, 1, H, W)
        Images with values in [0, 1], on any device.
    transform : callable
        A TorchIO transform (:data:`APPEARANCE`).

    Returns
    -------
    torch.Tensor
        Same shape, dtype and device.
    """
    import torch
    import torchio

    cpu = x.detach().to("cpu", torch.float32)
    out = torch.stack([transform(torchio.ScalarImage(tensor=image[..., None])).data[..., 0] for image in cpu])
    return out.clamp_(0.0, 1.0).to(x.device, x.dtype)


def augment_batch(x):
    """Randomly flipped, rotated, shifted, scaled and intensity-jittered copy of a batch.

    Parameters
    ----------
    x : torch.Tensor of shape (n, c, H, W)
        Images with values in [0, 1].

    Returns
    -------
    torch.Tensor
        Same shape, dtype and device, values clamped to [0, 1]; the area
        moved in from outside the image is 0 (background).
    """
    import torch
    import torch.nn.functional as F

    n = x.shape[0]

    def uniform(*shape):  # in [-1, 1), drawn on the CPU so that the draws do not depend on the device
        return torch.rand(*shape) * 2 - 1

    flip = torch.rand(n) < 0.5
    angle = uniform(n) * math.radians(DEGREES)
    scale = 1 + uniform(n) * SCALE
    shift = uniform(n, 2) * 2 * SHIFT  # affine_grid coordinates span [-1, 1]: 2 units per image
    brightness = 1 + uniform(n) * BRIGHTNESS
    contrast = 1 + uniform(n) * CONTRAST
    sign = torch.where(flip, -1.0, 1.0)  # a horizontal flip negates the x column of the sampling grid
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack(
        [torch.stack([cos * sign, -sin, shift[:, 0]], 1), torch.stack([sin * sign, cos, shift[:, 1]], 1)], 1
    ).to(x.device, x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    view = (n, 1, 1, 1)
    x = (x * brightness.to(x).view(view) - mean) * contrast.to(x).view(view) + mean
    return x.clamp_(0.0, 1.0)
