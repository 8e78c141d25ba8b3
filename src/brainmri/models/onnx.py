"""ONNX export of a deep bundle, and a predictor that runs the exported graph with ONNX Runtime.

:func:`export_onnx` writes the part of a bundle that is a network as an
ONNX graph: what the method's last step
(:class:`~brainmri.models.torch_classifier.TorchClassifier`) computes from
its input array, including the linear steps before it (PCA, standardisation),
test-time augmentation and the calibration temperature, so that the graph
returns the bundle's calibrated probabilities. The graph's input is the
output of the bundle's first step, which brainmri computes in Python:

- image methods (``ayadi-cnn``, ``transfer-finetune``): preprocessed
  grayscale slices, float32 of shape ``(N, 1, H, W)`` with values in
  [0, 1] (:class:`~brainmri.data.preprocess.Preprocess`: crop to the head,
  resize to ``H x W``, clip to the 0.5 and 99.5 intensity percentiles and
  scale to [0, 1], with the bundle's settings);
- feature methods (``fcm-dwt-dnn``, ``mlp``): the feature vectors of the
  bundle's :class:`~brainmri.features.extract.ImageFeatures`, float32 of
  shape ``(N, F)``.

A method that ends in a scikit-learn classifier (the classical methods,
``transfer-features``) has no such graph and is refused.

Before anything is written the file is checked twice: by ``onnx.checker``,
and by running it with ONNX Runtime on a few synthetic slices
(:func:`brainmri.data.synthetic.synthetic_slice`) next to the bundle's own
PyTorch prediction in float32. The largest absolute difference of the
probabilities must stay under a tolerance (:data:`TOLERANCE`), else nothing
is written. A bundle that predicts with bfloat16 autocast (``ayadi-cnn``'s
default ``precision``) gives probabilities a little further from the
float32 graph; that difference and the agreement of the predicted classes
are measured and recorded too.

The file records, in its metadata (key ``brainmri``) and in a JSON file
beside it (``FILE.json``), what its input and output are, the bundle it
came from (the sha256 of its manifest) and the check. :func:`load_onnx`
refuses a file exported from another bundle (or from an earlier training
of this one), and the export never replaces a file brainmri did not write.

References
----------
ONNX: Open Neural Network Exchange, https://onnx.ai (operator set 17);
ONNX Runtime, https://onnxruntime.ai; PyTorch's exporter,
https://pytorch.org/docs/stable/onnx.html.
"""

from __future__ import annotations

import copy
import json
import logging
import warnings
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import numpy as np

from brainmri.data.synthetic import CLASSES, synthetic_slice
from brainmri.errors import ConfigError, DataError
from brainmri.files import atomic_path, check_output_folder, sha256, write_json
from brainmri.models.bundle import MANIFEST, Bundle, load_model
from brainmri.training.loop import autocast_dtype
from brainmri.version import __version__

logger = logging.getLogger(__name__)

#: The ``format`` of the description (ONNX metadata and ``FILE.json``); a file without it is not brainmri's.
EXPORT_FORMAT = "brainmri onnx export"
EXPORT_VERSION = 1
#: Key of the description in the ONNX file's ``metadata_props``.
METADATA_KEY = "brainmri"
#: ONNX operator set of the graph (supported by ONNX Runtime 1.12 and later).
OPSET = 17
#: Largest absolute difference of probabilities allowed between ONNX Runtime and PyTorch (float32).
TOLERANCE = 1e-4
#: Synthetic slices of the check (cycling through the synthetic classes), and their side before preprocessing.
CHECK_IMAGES, CHECK_SIZE = 8, 256
#: Items per ONNX Runtime call of :class:`OnnxModel` (bounds the memory of the activations).
BATCH_SIZE = 64


def _onnx():
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


def default_path(bundle: str | Path) -> Path:
    """Where :func:`export_onnx` writes by default: ``model.onnx`` inside the bundle folder."""
    return Path(bundle) / "model.onnx"


def description_path(path: str | Path) -> Path:
    """The JSON description beside an exported file: ``FILE.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


# --- what the graph computes ----------------------------------------------------------------------------------


def _network_parts(bundle: Bundle):
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
        _linear_map(step, name)
    return steps[0], steps[1:-1], final


def _linear_map(step, method: str) -> tuple[np.ndarray, np.ndarray]:
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


def _graph(middle, classifier, method: str):
    """The torch module that is exported: linear steps, network (with TTA), softmax of the logits over ``T``."""
    import torch
    from torch import nn

    class Graph(nn.Module):
        """Probabilities ``softmax(logits / temperature)`` of the network's input (and its mirror, with TTA)."""

        def __init__(self):
            super().__init__()
            linear = []
            for step in middle:
                shift, matrix = _linear_map(step, method)
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
            logits = self.network(x)
            if self.tta:  # TorchClassifier.TTA_VIEWS: the image and its left-right mirror
                logits = (logits + self.network(torch.flip(x, dims=[-1]))) / 2
            return torch.softmax(logits / self.temperature, dim=1)

    return Graph().eval()


def _graph_input(X: np.ndarray) -> np.ndarray:
    """The first step's output as the graph takes it: float32, images ``(N, H, W)`` with a channel axis."""
    X = np.asarray(X, dtype=np.float32)
    return X[:, None] if X.ndim == 3 else X


def _input_description(first, middle, classifier) -> dict:
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


# --- export ---------------------------------------------------------------------------------------------------


def _read_description(path: Path) -> dict | None:
    """The brainmri description of an existing ONNX file, or None when the file is not one brainmri wrote."""
    onnx, _ = _onnx()
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # protobuf and onnx raise many types for a file that is not ONNX
        return None
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            try:
                description = json.loads(prop.value)
            except json.JSONDecodeError:
                return None
            return description if isinstance(description, dict) and description.get("format") == EXPORT_FORMAT else None
    return None


def _check_target(out: Path) -> None:
    """Refuse ``--out`` unless it and its description are new, or earlier exports of brainmri."""
    if out.suffix.lower() != ".onnx":
        raise ConfigError(f"--out {out}: name a .onnx file")
    if out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; name a .onnx file")
    check_output_folder(out.parent, "--out")
    if out.exists() and _read_description(out) is None:
        raise ConfigError(
            f"--out {out}: an existing file that brainmri did not export; choose another file name, "
            "or remove it yourself"
        )
    sidecar = description_path(out)
    if sidecar.exists():
        try:
            ours = json.loads(sidecar.read_text(encoding="utf-8")).get("format") == EXPORT_FORMAT
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            ours = False
        if not ours:
            raise ConfigError(
                f"--out {out}: {sidecar} exists and is not a description brainmri wrote; choose another "
                "file name, or remove it yourself"
            )


def _check_inputs(first, n: int = CHECK_IMAGES) -> np.ndarray:
    """The first step's output for ``n`` synthetic slices (seed 0), cycling through the synthetic classes."""
    rng = np.random.default_rng(0)
    return first.transform([synthetic_slice(CLASSES[k % len(CLASSES)], rng, CHECK_SIZE) for k in range(n)])


def _compare(session, X: np.ndarray, middle, classifier) -> dict:
    """ONNX Runtime's probabilities of ``X`` against the bundle's PyTorch path, in float32 and as it predicts."""
    import torch

    X_net = X
    for step in middle:
        X_net = step.transform(X_net)
    reference = copy.copy(classifier)  # shares the fitted network; only its precision and device differ
    reference.precision, reference.device_ = "fp32", torch.device("cpu")
    expected = reference.predict_proba(X_net)
    got = session.run(None, {"input": _graph_input(X)})[0].astype(np.float64)
    check = {
        "images": f"{len(X)} synthetic slices (brainmri.data.synthetic, seed 0)",
        "reference": "the bundle's PyTorch prediction in float32",
        "max_abs_diff": float(np.abs(got - expected).max()),
        "tolerance": TOLERANCE,
    }
    if autocast_dtype(classifier.precision, torch.device("cpu")) is not None:
        as_predicted = classifier.predict_proba(X_net)
        check["bundle_precision"] = classifier.precision
        check["max_abs_diff_bundle_precision"] = float(np.abs(got - as_predicted).max())
        check["same_class_bundle_precision"] = float((got.argmax(1) == as_predicted.argmax(1)).mean())
    return check


def export_onnx(bundle: str | Path, out: str | Path | None = None, *, tolerance: float = TOLERANCE) -> dict:
    """Write the network of a deep bundle as an ONNX file, checked against PyTorch first.

    Parameters
    ----------
    bundle : path
        A bundle folder written by ``brainmri train``.
    out : path or None
        The ``.onnx`` file (default :func:`default_path`); its description
        goes beside it (:func:`description_path`). Either may exist only as
        an earlier export of brainmri, which is replaced.
    tolerance : float
        Largest absolute difference of the probabilities of ONNX Runtime
        and of PyTorch (float32) on the check images.

    Returns
    -------
    dict
        The description written (also in the file's metadata): ``input``,
        ``output``, ``classes``, ``bundle``, ``check`` and versions.

    Raises
    ------
    ConfigError
        The method has no ONNX form, ``out`` is not a ``.onnx`` file or is
        a file brainmri did not write, or onnx/onnxruntime are missing.
    DataError
        The bundle cannot be loaded, or the graph's probabilities differ
        from PyTorch's by more than ``tolerance`` (nothing is written).
    """
    import torch

    onnx, onnxruntime = _onnx()
    folder = Path(bundle)
    out = Path(out) if out is not None else default_path(folder)
    if not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise ConfigError(f"--tolerance must be a positive number, got {tolerance!r}")
    _check_target(out)
    loaded = load_model(folder, device="cpu")
    first, middle, classifier = _network_parts(loaded)
    X = _check_inputs(first)
    graph = _graph(middle, classifier, loaded.manifest["method"]["name"])
    description = _description(folder, loaded, first, middle, classifier)
    example = torch.as_tensor(_graph_input(X[:2]))
    with atomic_path(out) as tmp:
        # The TorchScript exporter: the torch.export-based one needs onnxscript, which brainmri does not require.
        # It warns that it is deprecated (from its own functions too), and that it cannot constant-fold the mirror
        # of TTA (a Slice of step -1, of the input: nothing to fold).
        with torch.no_grad(), warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", "You are using the legacy TorchScript-based ONNX export", DeprecationWarning
            )
            warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx\.")
            warnings.filterwarnings("ignore", "Constant folding - Only steps=1 can be constant folded", UserWarning)
            torch.onnx.export(
                graph,
                (example,),
                str(tmp),
                input_names=["input"],
                output_names=["proba"],
                dynamic_axes={"input": {0: "N"}, "proba": {0: "N"}},
                opset_version=OPSET,
                dynamo=False,
            )
        model = onnx.load(str(tmp))
        onnx.checker.check_model(model, full_check=True)
        session = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
        check = _compare(session, X, middle, classifier)
        if not check["max_abs_diff"] <= tolerance:
            raise DataError(
                f"{folder}: the ONNX graph's probabilities differ from PyTorch's by up to "
                f"{check['max_abs_diff']:.3g} on {len(X)} images (tolerance {tolerance:g}); nothing was "
                "written. Rerun with --debug and report it"
            )
        description["check"] = {**check, "tolerance": tolerance}
        onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(description)})
        onnx.save(model, str(tmp))
    write_json(description_path(out), {**description, "file": out.name, "sha256": sha256(out)})
    logger.info("wrote %s: max |ONNX Runtime - PyTorch| %.3g on %d images", out, check["max_abs_diff"], len(X))
    return description


def _description(folder: Path, loaded, first, middle, classifier) -> dict:
    """What the export's ``FILE.json`` (and the file's metadata) say, before the check is added."""
    method = loaded.manifest["method"]["name"]
    mirror = ", logits averaged over the image and its left-right mirror (TTA)" if classifier.tta else ""
    return {
        "format": EXPORT_FORMAT,
        "format_version": EXPORT_VERSION,
        "brainmri_version": __version__,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "bundle": {"path": str(folder), "manifest_sha256": sha256(folder / MANIFEST), "method": method},
        "classes": loaded.manifest["classes"],
        "input": _input_description(first, middle, classifier),
        "output": {
            "name": "proba",
            "shape": ["N", len(loaded.classes_)],
            "dtype": "float32",
            "what": f"class probabilities in the order of 'classes': softmax(logits / {classifier.temperature_:.6g})"
            f", the bundle's calibration temperature{mirror}",
        },
        "preprocess": loaded.manifest["preprocess"],
        "input_size": loaded.manifest.get("input_size"),
        "opset": OPSET,
        "exporter": "torch.onnx.export (TorchScript)",
        "libraries": {name: metadata.version(name) for name in ("torch", "onnx", "onnxruntime")},
    }


# --- prediction -----------------------------------------------------------------------------------------------


class OnnxModel:
    """The bundle's first step (Python), then the exported graph (ONNX Runtime): what :class:`OnnxBundle` predicts with.

    Parameters
    ----------
    first : transformer
        The bundle's first step (image arrays or features).
    session : onnxruntime.InferenceSession
    classes : sequence of str
    batch_size : int
        Items per call of the session.
    """

    def __init__(self, first, session, classes, *, batch_size: int = BATCH_SIZE):
        self.first = first
        self.session = session
        self.classes_ = np.asarray(classes)
        self.batch_size = batch_size

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, float64 of shape ``(n, n_classes)``, of images (paths or 2D arrays)."""
        Z = self.first.transform(X)
        out = [
            self.session.run(None, {"input": _graph_input(Z[s : s + self.batch_size])})[0]
            for s in range(0, len(Z), self.batch_size)
        ]
        return np.concatenate(out).astype(np.float64)


class OnnxBundle(Bundle):
    """A deep bundle that predicts through its exported ONNX graph (see :func:`load_onnx`).

    The interface of :class:`~brainmri.models.bundle.Bundle`
    (``predict_proba``, ``predict``, ``classes_``, ``manifest``, ``path``);
    images are read and preprocessed by the bundle's own first step.

    Attributes
    ----------
    model : OnnxModel
    onnx_path : Path
    description : dict
        The export's description (``FILE.json``): input, output, check.
    """

    def __init__(self, model: OnnxModel, manifest: dict, path: Path, *, onnx_path: Path, description: dict):
        super().__init__(model, manifest, path)
        self.onnx_path = onnx_path
        self.description = description

    def __repr__(self) -> str:
        return (
            f"OnnxBundle({str(self.path)!r}, onnx={str(self.onnx_path)!r}, "
            f"method={self.manifest['method']['name']!r}, classes={list(self.classes_)})"
        )


def load_onnx(
    bundle: str | Path, onnx_file: str | Path | None = None, *, n_jobs: int = 1, threads: int | None = None
) -> OnnxBundle:
    """Load a bundle with its exported ONNX graph, to predict with ONNX Runtime.

    Parameters
    ----------
    bundle : path
        The bundle folder (checked as :func:`~brainmri.models.bundle.load_model` does).
    onnx_file : path or None
        The file :func:`export_onnx` wrote (default :func:`default_path`),
        with its description beside it.
    n_jobs : int
        Worker processes of the bundle's first step.
    threads : int or None
        ONNX Runtime's threads within an operator (None: one per physical core).

    Returns
    -------
    OnnxBundle

    Raises
    ------
    DataError
        The file or its description is missing, changed since the export,
        or exported from another bundle (or an earlier training of this
        one); the message says to export again.
    ConfigError
        onnx/onnxruntime are not installed, or ``threads`` is not a
        positive integer.

    Examples
    --------
    >>> model = load_onnx("model/")                               # doctest: +SKIP
    >>> model.predict_proba(["scan1.png"]).shape                  # doctest: +SKIP
    (1, 4)
    """
    _, onnxruntime = _onnx()
    if threads is not None and not (isinstance(threads, int) and threads >= 1):
        raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")
    folder = Path(bundle)
    path = Path(onnx_file) if onnx_file is not None else default_path(folder)
    again = f"export it again with: brainmri export {folder} --onnx" + (
        f" --out {path}" if onnx_file is not None else ""
    )
    sidecar = description_path(path)
    if not path.is_file() or not sidecar.is_file():
        raise DataError(f"{path if not path.is_file() else sidecar}: no such file; {again}")
    try:
        description = json.loads(sidecar.read_text(encoding="utf-8"))
        made_from, digest = description["bundle"]["manifest_sha256"], description["sha256"]
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise DataError(
            f"{sidecar}: not a description of a brainmri ONNX export ({type(exc).__name__}: {exc}); {again}"
        ) from None
    if digest != sha256(path):
        raise DataError(
            f"{path}: sha256 differs from {sidecar.name} (the file was changed, truncated or damaged); {again}"
        )
    loaded = load_model(folder, n_jobs=n_jobs, device="cpu")
    if made_from != sha256(folder / MANIFEST):
        raise DataError(f"{path}: exported from another bundle, or from an earlier training of {folder}; {again}")
    first, _, _ = _network_parts(loaded)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.log_severity_level = 3  # errors only: ONNX Runtime's own warnings go to stderr, not to logging
    session = onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return OnnxBundle(
        OnnxModel(first, session, loaded.manifest["classes"]),
        loaded.manifest,
        folder,
        onnx_path=path,
        description=description,
    )
