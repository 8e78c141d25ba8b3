"""Prediction with an exported ONNX graph: a deep bundle whose network runs in ONNX Runtime.

:func:`load_onnx` loads a bundle together with the file that
:func:`~brainmri.models.onnx.export_onnx` wrote, after checking that the
file and its description are unchanged and were exported from this very
bundle (the sha256 of its manifest). The :class:`OnnxBundle` it returns
predicts like a :class:`~brainmri.models.bundle.Bundle`: the bundle's first
step reads and preprocesses the images in Python (:class:`OnnxModel`), the
graph computes the calibrated probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from brainmri.errors import ConfigError, DataError
from brainmri.files import sha256
from brainmri.models.bundle import Bundle, load_model
from brainmri.models.manifest import MANIFEST
from brainmri.models.onnx_graph import default_path, description_path, graph_input, network_parts, onnx_modules

#: Items per ONNX Runtime call of :class:`OnnxModel` (bounds the memory of the activations).
BATCH_SIZE = 64


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
            self.session.run(None, {"input": graph_input(Z[s : s + self.batch_size])})[0]
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
        The file :func:`~brainmri.models.onnx.export_onnx` wrote (default :func:`default_path`),
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
    _, onnxruntime = onnx_modules()
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
    first, _, _ = network_parts(loaded)
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
