"""Fully connected networks on feature vectors: the 7-hidden-layer DNN of Mohsen et al. and a small MLP.

Builders follow torchvision's: keyword-only, ``num_classes`` and
``input_shape`` (the shape of one item, here ``(n_features,)``) first, then
the architecture's own settings; they return an untrained ``torch.nn.Module``
mapping a float batch of shape ``(N, *input_shape)`` to logits of shape
``(N, num_classes)``. :class:`~brainmri.models.torch_classifier.TorchClassifier`
calls them with the shape of its training data.

Every hidden layer is ``Linear -> LayerNorm -> ReLU -> Dropout``. Layer
normalisation, not batch normalisation, because it behaves the same for a
last training batch of one item and at prediction time; it keeps a 7-layer
stack trainable from the default initialisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from brainmri.errors import ConfigError

#: Widths of the 7 hidden layers of :func:`dnn7`. Mohsen et al. (2018) give the number of hidden layers, not
#: their widths (in our sources): these halve from 256 to 32 over the stack, sized for PCA inputs of 10-300 values.
DNN7_HIDDEN = (256, 256, 128, 128, 64, 64, 32)


def _dense(
    *, num_classes: int, input_shape: Sequence[int], hidden: Sequence[int], dropout: float, name: str
) -> nn.Sequential:
    """``Flatten``, one ``Linear-LayerNorm-ReLU-Dropout`` block per width of ``hidden``, a final ``Linear``."""
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"{name}: num_classes must be an integer >= 2, got {num_classes!r}")
    if not input_shape or any(not isinstance(n, int) or n < 1 for n in input_shape):
        raise ConfigError(f"{name}: input_shape must be a tuple of positive integers, got {input_shape!r}")
    if not hidden or any(not isinstance(n, int) or n < 1 for n in hidden):
        raise ConfigError(f"{name}: hidden must be a non-empty tuple of positive integers, got {hidden!r}")
    if not 0 <= dropout < 1:
        raise ConfigError(f"{name}: dropout must be in [0, 1), got {dropout!r}")
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(input_shape)
    for out in hidden:
        layers += [nn.Linear(width, out), nn.LayerNorm(out), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        width = out
    layers.append(nn.Linear(width, num_classes))
    return nn.Sequential(*layers)


def dnn7(
    *, num_classes: int, input_shape: Sequence[int], hidden: Sequence[int] = DNN7_HIDDEN, dropout: float = 0.1
) -> nn.Sequential:
    """The deep neural network of Mohsen et al. (2018): 7 fully connected hidden layers.

    Parameters
    ----------
    num_classes : int
        Outputs (logits).
    input_shape : tuple of int
        Shape of one item, ``(n_features,)``.
    hidden : tuple of 7 int
        Widths of the hidden layers (:data:`DNN7_HIDDEN`).
    dropout : float
        Dropout after every hidden layer.

    Returns
    -------
    torch.nn.Sequential
        Logits of shape ``(N, num_classes)`` for inputs of shape ``(N, *input_shape)``.

    References
    ----------
    H. Mohsen, E.-S. A. El-Dahshan, E.-S. M. El-Horbaty and A.-B. M. Salem,
    "Classification using deep learning neural networks for brain tumors",
    Future Computing and Informatics Journal 3(1):68-71, 2018.
    DOI: 10.1016/j.fcij.2017.12.001
    """
    if len(hidden) != 7:
        raise ConfigError(
            f"dnn7: hidden must list 7 layer widths, got {len(hidden)}: {hidden!r}; use mlp for another depth"
        )
    return _dense(num_classes=num_classes, input_shape=input_shape, hidden=hidden, dropout=dropout, name="dnn7")


def mlp(
    *, num_classes: int, input_shape: Sequence[int], hidden: Sequence[int] = (256, 128), dropout: float = 0.2
) -> nn.Sequential:
    """A small multilayer perceptron (2 hidden layers by default).

    Parameters
    ----------
    num_classes : int
    input_shape : tuple of int
        Shape of one item, ``(n_features,)``.
    hidden : tuple of int
        Widths of the hidden layers.
    dropout : float

    Returns
    -------
    torch.nn.Sequential
        Logits of shape ``(N, num_classes)``.

    References
    ----------
    D. E. Rumelhart, G. E. Hinton and R. J. Williams, "Learning
    representations by back-propagating errors", Nature 323:533-536, 1986.
    DOI: 10.1038/323533a0
    """
    return _dense(num_classes=num_classes, input_shape=input_shape, hidden=hidden, dropout=dropout, name="mlp")
