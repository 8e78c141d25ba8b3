"""The network that ``transfer-finetune`` trains end to end: an ImageNet backbone with a new head.

The network is a pretrained :class:`~brainmri.nets.backbones.Backbone`
(grayscale replicated to RGB and normalised inside it), global average
pooling of its last stage and a new linear head (:class:`FineTuneNet`).
It trains through the same engine as ``ayadi-cnn``
(:class:`~brainmri.models.torch_classifier.TorchClassifier`, grouped
validation part, best epoch, temperature scaling, exact resume; the method
is registered in :mod:`brainmri.models.transfer`), with the recipe of
Howard and Ruder (2018):

- discriminative learning rates: the head at ``lr``, the backbone at
  ``lr * backbone_lr_factor``, so that the ImageNet filters move less than
  the new layer;
- warm-up then cosine decay (the one-cycle schedule of the engine), label
  smoothing;
- gradual unfreezing: for the first ``unfreeze_after`` epochs the backbone
  is frozen (no gradient, no weight decay, batch-norm statistics fixed)
  and only the head learns; then the whole network does;
- test-time augmentation (``tta``): the logits are averaged over the image
  and its left-right mirror.

References
----------
J. Howard and S. Ruder, "Universal language model fine-tuning for text
classification", Proc. 56th ACL, 328-339, 2018. DOI: 10.18653/v1/P18-1031

J. Yosinski, J. Clune, Y. Bengio and H. Lipson, "How transferable are
features in deep neural networks?", NeurIPS 27, 3320-3328, 2014.

C. Szegedy, V. Vanhoucke, S. Ioffe, J. Shlens and Z. Wojna, "Rethinking the
Inception architecture for computer vision", Proc. CVPR 2016, 2818-2826
(label smoothing). DOI: 10.1109/CVPR.2016.308
"""

from __future__ import annotations

from torch import nn

from brainmri.nets.backbones import Backbone, backbone


class FineTuneNet(nn.Module):
    """``backbone`` (a pretrained trunk) -> global average pool of its last stage -> dropout -> ``head``.

    :func:`brainmri.training.loop.train_module` recognises the ``backbone``
    attribute: it gets its own learning rate and can be frozen for the
    first epochs.

    Parameters
    ----------
    trunk : Backbone
    num_classes : int
    dropout : float
    """

    def __init__(self, trunk: Backbone, *, num_classes: int, dropout: float):
        super().__init__()
        self.backbone = trunk
        self.pool = nn.AdaptiveAvgPool2d(1)  # a module (no weights), so that its input can be hooked
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(trunk.widths[-1], num_classes))

    def forward(self, x):
        """Logits ``(N, num_classes)`` of gray images ``(N, 1, H, W)`` in [0, 1]."""
        return self.head(self.pool(self.backbone(x)[-1]).flatten(1))


def finetune_net(
    *,
    num_classes: int,
    input_shape: tuple,
    backbone_name: str = "efficientnet_lite0",
    weights_file: str | None = None,
    dropout: float = 0.2,
    pretrained: bool = True,
) -> FineTuneNet:
    """A pretrained backbone with a new linear head, for grayscale images of ``input_shape``.

    A :class:`~brainmri.models.torch_classifier.TorchClassifier` builder.

    Parameters
    ----------
    num_classes : int
    input_shape : tuple of 2 ints
        (H, W) of the images; EfficientNet-Lite pads "same" for this size.
    backbone_name : str
        One of :func:`brainmri.nets.backbones.available_backbones`.
    weights_file : str or None
        A local state dict of the backbone (else its offline or torchvision weights).
    dropout : float
        Dropout before the head.
    pretrained : bool
        False keeps random weights and reads none (no file, no network):
        :meth:`TorchClassifier.load_state
        <brainmri.models.torch_classifier.TorchClassifier.load_state>` builds
        so, then loads the model's own saved weights.

    Returns
    -------
    FineTuneNet
        In training mode, on the CPU.
    """
    trunk, _ = backbone(
        backbone_name,
        weights_file=weights_file if pretrained else None,
        size=int(input_shape[0]),
        pretrained=pretrained,
    )
    return FineTuneNet(trunk, num_classes=num_classes, dropout=dropout).train()
