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

This module owns the export and its checks. What the graph computes is
:mod:`brainmri.models.onnx_graph`'s; prediction with ONNX Runtime
(:func:`load_onnx`, :class:`OnnxBundle`) is :mod:`brainmri.models.onnx_runtime`'s,
and its names are importable from here too.

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
from brainmri.models.bundle import load_model
from brainmri.models.manifest import MANIFEST
from brainmri.models.onnx_graph import (
    default_path,
    description_path,
    graph_input,
    input_description,
    network_parts,
    onnx_modules,
    torch_graph,
)
from brainmri.models.onnx_runtime import OnnxBundle, OnnxNetwork, load_onnx
from brainmri.training.batches import autocast_dtype
from brainmri.version import __version__

#: The export, and the prediction with ONNX Runtime (from :mod:`brainmri.models.onnx_runtime`).
__all__ = [
    "CHECK_IMAGES",
    "CHECK_SIZE",
    "EXPORT_FORMAT",
    "EXPORT_VERSION",
    "METADATA_KEY",
    "OPSET",
    "TOLERANCE",
    "OnnxBundle",
    "OnnxNetwork",
    "default_path",
    "description_path",
    "export_onnx",
    "load_onnx",
]

logger = logging.getLogger(__name__)

#: The ``format`` of the description (ONNX metadata and ``FILE.json``); a file without it is not brainmri's.
EXPORT_FORMAT = "brainmri onnx export"
EXPORT_VERSION = 3  # 2: a second output, the embedding of the out-of-distribution score; 3: with its spread
#: Key of the description in the ONNX file's ``metadata_props``.
METADATA_KEY = "brainmri"
#: ONNX operator set of the graph (supported by ONNX Runtime 1.12 and later).
OPSET = 17
#: Largest absolute difference of probabilities allowed between ONNX Runtime and PyTorch (float32).
TOLERANCE = 1e-4
#: Synthetic slices of the check (cycling through the synthetic classes), and their side before preprocessing.
CHECK_IMAGES, CHECK_SIZE = 8, 256


def _read_description(path: Path) -> dict | None:
    """The brainmri description of an existing ONNX file, or None when the file is not one brainmri wrote."""
    onnx, _ = onnx_modules()
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


def check_export_target(out: Path) -> None:
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
    got, embedding = session.run(["proba", "embedding"], {"input": graph_input(X)})
    got = got.astype(np.float64)
    expected_embedding = reference.embed(X_net)
    check = {
        "images": f"{len(X)} synthetic slices (brainmri.data.synthetic, seed 0)",
        "reference": "the bundle's PyTorch prediction in float32",
        "max_abs_diff": float(np.abs(got - expected).max()),
        "tolerance": TOLERANCE,
        "embedding_max_rel_diff": float(
            np.abs(embedding - expected_embedding).max() / max(float(np.abs(expected_embedding).max()), 1e-12)
        ),
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

    onnx, onnxruntime = onnx_modules()
    folder = Path(bundle)
    out = Path(out) if out is not None else default_path(folder)
    if not (isinstance(tolerance, (int, float)) and tolerance > 0):
        raise ConfigError(f"--tolerance must be a positive number, got {tolerance!r}")
    check_export_target(out)
    loaded = load_model(folder, device="cpu")
    first, middle, classifier = network_parts(loaded)
    X = _check_inputs(first)
    graph = torch_graph(middle, classifier, loaded.manifest["method"]["name"])
    description = _description(folder, loaded, first, middle, classifier)
    example = torch.as_tensor(graph_input(X[:2]))
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
                output_names=["proba", "embedding"],
                dynamic_axes={"input": {0: "N"}, "proba": {0: "N"}, "embedding": {0: "N"}},
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
        "input": input_description(first, middle, classifier),
        "output": {
            "name": "proba",
            "shape": ["N", len(loaded.classes_)],
            "dtype": "float32",
            "what": f"class probabilities in the order of 'classes': softmax(logits / {classifier.temperature_:.6g})"
            f", the bundle's calibration temperature{mirror}",
        },
        "outputs": {
            "embedding": "the input of the network's last linear layer for the image itself (no mirror) and, when the "
            "network has a global average pool, the standard deviation over positions of the map it reduces, side "
            "by side, float32 (N, d): what the bundle's out-of-distribution detector (ood.npz) reads"
        },
        "preprocess": loaded.manifest["preprocess"],
        "input_size": loaded.manifest.get("input_size"),
        "opset": OPSET,
        "exporter": "torch.onnx.export (TorchScript)",
        "libraries": {name: metadata.version(name) for name in ("torch", "onnx", "onnxruntime")},
    }
