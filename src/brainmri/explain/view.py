"""A model as its explanations see it: the network on the images (or none), the preprocessing at its input size.

One :class:`ModelView` serves ``brainmri explain``, ``predict --explain``,
the heatmaps of ``brainmri serve``, the benchmark report's examples and the
region search, so that every map is made of the images exactly as the
model saw them.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext

import numpy as np

from brainmri.data.volumes import VolumePreprocess
from brainmri.errors import ConfigError
from brainmri.explain.attribution import METHODS
from brainmri.steps import final_step
from brainmri.training.batches import autocast_dtype
from brainmri.training.device import torch_threads


class ModelView:
    """A bundle as attribution sees it: preprocessed images in, class scores out.

    Parameters
    ----------
    bundle : Bundle
        From :func:`~brainmri.models.bundle.load_model`.

    Attributes
    ----------
    module : torch.nn.Module or None
        The trained network when it takes the images (or volumes)
        themselves (``(n, 1, H, W)`` or ``(n, 1, D, H, W)`` -> logits);
        None for classical methods and networks on features.
    preprocess : Preprocess or VolumePreprocess
        The bundle's preprocessing at the model's input size.
    """

    def __init__(self, bundle):
        self.bundle = bundle
        final = final_step(bundle.model)
        shape = getattr(final, "input_shape_", None)
        self.classifier = final
        self.module = (
            final.module_ if hasattr(final, "module_") and shape is not None and len(shape) in (2, 3) else None
        )

        size = bundle.manifest.get("input_size")
        preprocess = bundle.preprocess
        if size and len(size) == 3:
            self.preprocess = VolumePreprocess.like(preprocess, size[0])
        else:
            self.preprocess = dataclasses.replace(preprocess, size=size[0]) if size else preprocess

    def methods(self) -> list[str]:
        """The attribution methods that apply to this model."""
        return [name for name, cls in METHODS.items() if self.module is not None or not cls.needs_gradients]

    def attribution(self, method: str, **settings):
        """The attribution object ``method`` for this model.

        Raises
        ------
        ConfigError
            ``method`` does not apply to this model (the message names those
            that do), or Captum is not installed.
        """
        if method not in self.methods():
            name = self.bundle.manifest["method"]["name"]
            why = "it needs a torch network on the images, and this model is not one"
            raise ConfigError(
                f"--method {method}: does not apply to {name} ({why}); valid methods for this model: "
                f"{', '.join(self.methods())}"
            )
        if importlib.util.find_spec("captum") is None:
            raise ConfigError(
                f"--method {method}: explanations need Captum, which is not installed; pip install 'brainmri[explain]'"
            )
        cls = METHODS[method]
        return cls(self.module, **settings) if cls.needs_gradients else cls(self.proba, **settings)

    @contextmanager
    def running(self) -> Iterator[None]:
        """Within the block the network runs as it predicts (its ``threads``, its autocast ``precision``), frozen.

        ayadi-cnn predicts in bf16 with channels-last images; Grad-CAM in
        that precision ran at 29 instead of 14 images/s on the 2-core CPU,
        and its maps kept the ranking of the float32 maps (see
        ``bench/explain_benchmark.sh``).
        """
        if self.module is None:
            yield
            return
        import torch

        device = self.classifier.device_
        dtype = autocast_dtype(self.classifier.precision, device)
        parameters = [p for p in self.module.parameters() if p.requires_grad]
        for parameter in parameters:  # attribution needs gradients of inputs and activations, not of weights
            parameter.requires_grad_(False)
        try:
            with (
                torch_threads(self.classifier.threads),
                torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext(),
            ):
                yield
        finally:
            for parameter in parameters:
                parameter.requires_grad_(True)

    def tensor(self, images: np.ndarray):
        """Preprocessed images ``(n, H, W)`` (volumes ``(n, D, H, W)``) as a float32 tensor with a channel axis, on the
        model's device."""
        import torch

        x = torch.as_tensor(np.asarray(images, dtype=np.float32))[:, None]
        if self.module is None:
            return x
        x = x.to(self.classifier.device_)
        return x.contiguous(memory_format=torch.channels_last) if self.classifier.channels_last else x

    def proba(self, x):
        """Class probabilities ``(n, n_classes)`` (tensor) of images ``(n, 1, H, W)`` (tensor).

        The network's temperature-scaled softmax, or the classical model's
        ``predict_proba`` (which preprocesses the images it is given again:
        they are already cropped, so only the intensity scaling changes).
        """
        import torch

        if self.module is not None:
            with torch.no_grad():
                return torch.softmax(self.module(x).float() / self.classifier.temperature_, dim=1)
        images = list(x[:, 0].detach().cpu().numpy())
        return torch.as_tensor(self.bundle.predict_proba(images), dtype=torch.float32)

    def align(self, mask: np.ndarray, image: np.ndarray) -> np.ndarray:
        """A lesion mask of ``image`` (same shape) moved into the model's input space, as :attr:`preprocess` moves the image."""
        mask = np.asarray(mask, dtype=np.float32)
        if mask.ndim == 3:
            return self.preprocess.resample(mask, self.preprocess.box(np.asarray(image, dtype=np.float32))) >= 0.5
        return self.preprocess.geometry(mask, reference=image) >= 0.5
