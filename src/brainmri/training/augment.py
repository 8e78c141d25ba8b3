"""Augmentation of training images (torchvision.transforms.v2): flips, a small affine, brightness and contrast.

Applied to the training part only, after every split, image by image (each
image draws its own transform). The random draws come from torch's global
generator, which the training loop seeds per epoch, so an epoch's
augmentations are the same in a resumed run.
"""

from __future__ import annotations


def default_augment():
    """The augmentation of the image methods (the recipe of :func:`brainmri.models.deep.ayadi_cnn`).

    Horizontal flip (p 0.5), affine (rotation up to 10 degrees, shift up to
    5 %, scale 0.9-1.1), brightness and contrast jitter of 0.2, values
    clamped to [0, 1]. Input and output: float tensor of shape (1, H, W).
    """
    import torch
    from torchvision.transforms import v2

    return v2.Compose([
        v2.RandomHorizontalFlip(),
        v2.RandomAffine(degrees=10, translate=(0.05, 0.05), scale=(0.9, 1.1)),
        v2.ColorJitter(brightness=0.2, contrast=0.2),
        v2.Lambda(lambda x: torch.clamp(x, 0.0, 1.0)),
    ])
