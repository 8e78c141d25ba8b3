"""Convolutional networks of the seed paper, as torchvision-style keyword-only builders.

References
----------
W. Ayadi, W. Elhamzi, I. Charfi and M. Atri, "Deep CNN for brain tumor
classification", Neural Processing Letters 53:671-700, 2021.
DOI: 10.1007/s11063-020-10398-2
"""

from __future__ import annotations

#: Channels of the five blocks of two convolutions, for ``width=32``.
AYADI_CHANNELS = (1, 2, 4, 8, 8)


def ayadi_cnn(*, num_classes: int, in_channels: int = 1, width: int = 32, dropout: float = 0.3, input_shape=None):
    """The sequential CNN of Ayadi et al. (2021): 10 convolutional layers on a reduced input.

    Five blocks of two (3x3 convolution, batch norm, ReLU) layers, each
    block followed by 2x2 max-pooling; channels ``width * (1, 2, 4, 8, 8)``
    (32 to 256 by default); global average pooling, dropout, one linear
    layer. Global pooling makes the network independent of the input size
    (the study reduced its inputs; brainmri's default is 128 x 128).

    Parameters
    ----------
    num_classes : int
    in_channels : int
        1 for grayscale MRI.
    width : int
        Channels of the first block.
    dropout : float
        Dropout before the linear layer.
    input_shape : tuple or None
        ``(H, W)`` of the images, accepted for the
        :class:`~brainmri.models.torch_classifier.TorchClassifier` builder
        protocol; any size of at least 32 x 32 works.

    Returns
    -------
    torch.nn.Sequential
        Input (N, in_channels, H, W), output logits (N, num_classes).

    References
    ----------
    W. Ayadi, W. Elhamzi, I. Charfi and M. Atri, "Deep CNN for brain tumor
    classification", Neural Processing Letters 53:671-700, 2021.
    DOI: 10.1007/s11063-020-10398-2
    """
    from torch import nn

    layers: list = []
    channels = in_channels
    for factor in AYADI_CHANNELS:
        for _ in range(2):
            layers += [
                nn.Conv2d(channels, width * factor, 3, padding=1, bias=False),
                nn.BatchNorm2d(width * factor),
                nn.ReLU(inplace=True),
            ]
            channels = width * factor
        layers.append(nn.MaxPool2d(2))
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)


#: Channels of the four blocks of ``cnn3d``, for ``width=8``.
CNN3D_CHANNELS = (1, 2, 4, 8)


def cnn3d(*, num_classes: int, in_channels: int = 1, width: int = 8, dropout: float = 0.3, input_shape=None):
    """A small 3D CNN for whole-volume classification (the 3D counterpart of :func:`ayadi_cnn`).

    Four blocks of (3x3x3 convolution, batch norm, ReLU, 2x2x2 max-pooling),
    channels ``width * (1, 2, 4, 8)`` (8 to 64 by default, 0.1 M weights);
    global average pooling, dropout, one linear layer. Shojaei et al. (2023)
    classify Alzheimer's disease from whole T1 volumes with a 3D CNN of
    this kind (stacked 3D convolution and pooling blocks); this one is
    smaller so that it trains on 32^3 to 48^3 volumes on a laptop CPU.
    Written with torch rather than taken from ``monai.networks.nets``: MONAI's
    classifiers (DenseNet121, ResNet10-200, EfficientNet) start at about
    5 M weights, which a few dozen subjects cannot train and a 2-core CPU
    runs too slowly.

    Parameters
    ----------
    num_classes : int
    in_channels : int
    width : int
        Channels of the first block.
    dropout : float
        Dropout before the linear layer.
    input_shape : tuple or None
        ``(D, H, W)``, accepted for the
        :class:`~brainmri.models.torch_classifier.TorchClassifier` builder
        protocol; any size of at least 16 voxels a side works.

    Returns
    -------
    torch.nn.Sequential
        Input (N, in_channels, D, H, W), output logits (N, num_classes).

    References
    ----------
    S. Shojaei, M. Saniee Abadeh and Z. Momeni, "An evolutionary explainable
    deep learning approach for Alzheimer's MRI classification", Expert
    Systems with Applications 220:119709, 2023.
    DOI: 10.1016/j.eswa.2023.119709
    """
    from torch import nn

    layers: list = []
    channels = in_channels
    for factor in CNN3D_CHANNELS:
        layers += [
            nn.Conv3d(channels, width * factor, 3, padding=1, bias=False),
            nn.BatchNorm3d(width * factor),
            nn.ReLU(inplace=True),
            nn.MaxPool3d(2),
        ]
        channels = width * factor
    layers += [nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, num_classes)]
    return nn.Sequential(*layers)
