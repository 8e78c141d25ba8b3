"""What an ONNX export of a deep bundle is: the graph it computes, its input, where its files lie.

Shared by the export (:mod:`brainmri.models.onnx`) and the prediction with
ONNX Runtime (:mod:`brainmri.models.onnx_runtime`):

- :func:`network_parts` splits a bundle into its first step (computed in
  Python), the linear steps after it and the network's classifier, and
  refuses a bundle without a network;
- :func:`torch_graph` is the torch module that is exported: the linear
  steps (:func:`linear_map`), the network with test-time augmentation and
  the softmax over the calibration temperature;
- :func:`graph_input` and :func:`input_description` are its input, as an
  array and in words;
- :func:`default_path` and :func:`description_path` are the export's files,
  and :func:`onnx_modules` the optional ``onnx`` and ``onnxruntime`` packages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainmri.errors import ConfigError
from brainmri.models.bundle import Bundle
from brainmri.training.batches import capture_embedding, join_embedding, last_linear


def onnx_modules():
    """The ``onnx`` and ``onnxruntime`` modules, or a one-line error naming the extra."""
    try:
        import onnx
        import onnxruntime
    except ImportError as exc:
        raise ConfigError(
            f"ONNX export and prediction need the onnx and onnxruntime packages ({exc.name} is missing); "
            "install them with: pip install 'brainmri[onnx]'"
        ) from None
    return onnx, onnxruntime


def onnxruntime_module():
    """The ``onnxruntime`` module alone (predicting with an export needs no ``onnx``), or a one-line error."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(
            "prediction with an ONNX export needs the onnxruntime package; install it with: pip install 'brainmri[onnx]'"
        ) from None
    return onnxruntime


def default_path(bundle: str | Path) -> Path:
    """Where :func:`~brainmri.models.onnx.export_onnx` writes by default: ``model.onnx`` inside the bundle folder."""
    return Path(bundle) / "model.onnx"


def description_path(path: str | Path) -> Path:
    """The JSON description beside an exported file: ``FILE.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def network_parts(bundle: Bundle):
    """The bundle's first step, the steps between it and the network, and the network's classifier.

    Raises
    ------
    ConfigError
        The bundle does not end in a torch network, or has a step between
        its first one and the network that is not linear.
    """
    name = bundle.manifest["method"]["name"]
    steps = [step for _, step in getattr(bundle.model, "steps", [("model", bundle.model)])]
    final = steps[-1]
    if len(steps) < 2 or not hasattr(final, "module_"):
        raise ConfigError(
            f"{bundle.path}: {name} ends in a {type(final).__name__}, not a torch network, so it has no "
            "ONNX graph; export works for the methods whose last step is a network (e.g. ayadi-cnn, "
            "fcm-dwt-dnn, mlp, transfer-finetune)"
        )
    for step in steps[1:-1]:
        linear_map(step, name)
    return steps[0], steps[1:-1], final


def linear_map(step, method: str) -> tuple[np.ndarray, np.ndarray]:
    """``(shift, matrix)`` with ``step.transform(X) == (X - shift) @ matrix``, for PCA and StandardScaler.

    Raises
    ------
    ConfigError
        Any other step.
    """
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    if isinstance(step, PCA):
        matrix = step.components_.T
        if step.whiten:
            matrix = matrix / np.sqrt(step.explained_variance_)
        return step.mean_, matrix
    if isinstance(step, StandardScaler):
        n = step.n_features_in_
        shift = step.mean_ if step.mean_ is not None else np.zeros(n)
        return shift, np.diag(1.0 / step.scale_ if step.scale_ is not None else np.ones(n))
    raise ConfigError(
        f"{method}: its step {type(step).__name__} has no ONNX form in brainmri (PCA and StandardScaler "
        "do), so the method cannot be exported"
    )


def torch_graph(middle, classifier, method: str):
    """The torch module that is exported: linear steps, network (with TTA), softmax of the logits over ``T``; and
    the embedding of the out-of-distribution score (:meth:`~brainmri.models.torch_classifier.TorchClassifier.embed`:
    :func:`~brainmri.training.batches.capture_embedding`, for the image itself)."""
    import torch
    from torch import nn

    last_linear(classifier.module_)  # refused here, with the reason, when the network has none

    class Graph(nn.Module):
        """Probabilities ``softmax(logits / temperature)`` of the network's input (and its mirror, with TTA), and
        the embedding of the input."""

        def __init__(self):
            super().__init__()
            linear = []
            for step in middle:
                shift, matrix = linear_map(step, method)
                layer = nn.Linear(*matrix.shape)
                layer.weight.data = torch.as_tensor(matrix.T, dtype=torch.float32).contiguous()
                layer.bias.data = torch.as_tensor(-(shift @ matrix), dtype=torch.float32)
                linear.append(layer)
            self.linear = nn.Sequential(*linear)
            self.network = classifier.module_
            self.register_buffer("temperature", torch.tensor(float(classifier.temperature_)))
            self.tta = bool(classifier.tta)

        def forward(self, x):
            x = self.linear(x)
            seen = []
            hooks = capture_embedding(self.network, seen)
            try:
                logits = self.network(x)
            finally:
                for hook in hooks:
                    hook.remove()
            if self.tta:  # TorchClassifier.TTA_VIEWS: the image and its left-right mirror
                logits = (logits + self.network(torch.flip(x, dims=[-1]))) / 2
            return torch.softmax(logits / self.temperature, dim=1), join_embedding(seen)

    return Graph().eval()


def graph_input(X: np.ndarray) -> np.ndarray:
    """The first step's output as the graph takes it: float32, images ``(N, H, W)`` with a channel axis."""
    X = np.asarray(X, dtype=np.float32)
    return X[:, None] if X.ndim == 3 else X


def input_description(first, middle, classifier) -> dict:
    """The graph's input in words: the first step's output (before the linear steps, which are in the graph)."""
    shape = (middle[0].n_features_in_,) if middle else tuple(classifier.input_shape_)
    if len(shape) == 2:
        return {
            "name": "input",
            "shape": ["N", 1, *shape],
            "dtype": "float32",
            "what": f"grayscale slices after the bundle's preprocessing (settings under 'preprocess': crop to the "
            f"head when crop is true, resize to {shape[0]}x{shape[1]}, clip to clip_percentiles and "
            "scale to [0, 1]; brainmri.data.preprocess.Preprocess), values in [0, 1]",
        }
    names = [name for name, _ in getattr(first, "extractors", [])]
    return {
        "name": "input",
        "shape": ["N", *shape],
        "dtype": "float32",
        "what": f"feature vectors of the bundle's first step ({type(first).__name__}: {', '.join(names) or '?'}), "
        "computed by brainmri from the preprocessed image; the steps between them and the network "
        "(PCA, standardisation) are inside the graph",
    }
