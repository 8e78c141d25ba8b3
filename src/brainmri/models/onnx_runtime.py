"""Prediction with an exported ONNX graph: a deep bundle whose network runs in ONNX Runtime or OpenVINO.

:func:`load_onnx` loads a bundle together with the file that
:func:`~brainmri.models.onnx.export_onnx` wrote, after checking that the
file and its description are unchanged and were exported from this very
bundle (the sha256 of its manifest). The :class:`OnnxBundle` it returns
predicts like a :class:`~brainmri.models.bundle.Bundle`: the bundle's first
step reads and preprocesses the images in Python, the graph
(:class:`OnnxNetwork`) computes the calibrated probabilities and the
embedding of the out-of-distribution score, in ONNX Runtime or, compiled
from the same file, in OpenVINO (:class:`OpenVinoSession`).
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from brainmri.data.preprocess import Preprocess
from brainmri.errors import ConfigError, DataError
from brainmri.files import sha256
from brainmri.models.base import GroupedPipeline
from brainmri.models.bundle import Bundle, load_model, load_ood
from brainmri.models.catalog import get_method
from brainmri.models.manifest import MANIFEST, read_manifest, verify_files
from brainmri.models.onnx_graph import default_path, description_path, graph_input, network_parts, onnxruntime_module
from brainmri.models.persist import learns_nothing
from brainmri.steps import first_step
from brainmri.training.device import computes_bf16

#: Items per ONNX Runtime call of :class:`OnnxModel` (bounds the memory of the activations).
BATCH_SIZE = 64


class OnnxNetwork(ClassifierMixin, BaseEstimator):
    """The exported graph as a method's last step: ONNX Runtime computes what the bundle's network did.

    It takes the output of the bundle's first step, which stays in Python
    (:func:`load_onnx` puts both in one pipeline), and gives the calibrated
    probabilities and, for a graph of export version 2 or later, the
    embedding of the out-of-distribution score in the same run.

    Parameters
    ----------
    session : onnxruntime.InferenceSession
    classes : sequence of str
    batch_size : int
        Items per call of the session.
    """

    def __init__(self, session, classes, *, batch_size: int = BATCH_SIZE):
        self.session = session
        self.classes = classes
        self.classes_ = np.asarray(classes)
        self.batch_size = batch_size
        self.has_embedding = "embedding" in {o.name for o in session.get_outputs()}

    def fit(self, X, y=None):
        raise ConfigError("an ONNX graph is exported from a trained bundle and cannot be fitted; train the bundle")

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def _run(self, Z, names: list[str]) -> list[np.ndarray]:
        parts = [
            self.session.run(names, {"input": graph_input(Z[s : s + self.batch_size])})
            for s in range(0, len(Z), self.batch_size)
        ]
        return [np.concatenate([part[k] for part in parts]) for k in range(len(names))]

    def predict_proba(self, Z) -> np.ndarray:
        """Class probabilities, float64 of shape ``(n, n_classes)``, of the first step's output ``Z``."""
        return _summing_to_one(self._run(Z, ["proba"])[0])

    def predict_proba_with_embedding(self, Z) -> tuple[np.ndarray, np.ndarray]:
        """The probabilities and the embedding (float32 ``(n, d)``) of ``Z``, from one run of the graph."""
        if not self.has_embedding:
            raise DataError("this ONNX export has no embedding output (export version 1); export the bundle again")
        proba, embedding = self._run(Z, ["proba", "embedding"])
        return _summing_to_one(proba), embedding


def _summing_to_one(proba: np.ndarray) -> np.ndarray:
    """The graph's probabilities as float64 rows that sum to 1.

    An int8 graph (``export --onnx --int8``) gives its probabilities in steps of 1/255, so its rows sum to 0.99
    or 1.01; a float32 graph's rows are changed by about 1e-7.
    """
    proba = proba.astype(np.float64)
    return proba / np.maximum(proba.sum(axis=1, keepdims=True), 1e-12)


#: The engines that run an export, with their names in words.
ENGINES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


class OpenVinoSession:
    """The export compiled by OpenVINO for the CPU, with the two methods of ``onnxruntime.InferenceSession`` that
    :class:`OnnxNetwork` calls (``get_outputs`` and ``run``).

    Parameters
    ----------
    path : path
        The ONNX file (OpenVINO reads it directly).
    threads : int or None
        OpenVINO's inference threads (None: its choice).
    bf16 : bool
        Compute in bfloat16 where the CPU has it, as the bundle's network does
        in PyTorch (its ``precision``); float32 otherwise, which gives
        ONNX Runtime's probabilities to about 1e-6.
    """

    def __init__(self, path: str | Path, *, threads: int | None = None, bf16: bool = False):
        try:
            import openvino
        except ImportError:
            raise ConfigError(
                "--runtime openvino needs the openvino package; install it with: pip install openvino"
            ) from None
        core = openvino.Core()
        bf16 = bf16 and "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "bf16" if bf16 else "f32"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        self.precision = "bf16" if bf16 else "f32"
        self._compiled = core.compile_model(str(path), "CPU", config)
        self._requests = threading.local()  # an infer request is not shared between threads (serve answers in several)
        # An output can have several names (the graph's, and its node's): every one answers.
        self._outputs = [SimpleNamespace(name=name) for output in self._compiled.outputs for name in output.get_names()]

    def get_outputs(self) -> list:
        return self._outputs

    def run(self, names: list[str], feeds: dict) -> list[np.ndarray]:
        request = getattr(self._requests, "request", None)
        if request is None:
            request = self._requests.request = self._compiled.create_infer_request()
        result = request.infer(feeds)
        by_name = {name: value for output, value in result.items() for name in output.get_names()}
        return [np.array(by_name[name]) for name in names]  # copies: the request reuses its buffers


class OnnxBundle(Bundle):
    """A deep bundle that predicts through its exported ONNX graph (see :func:`load_onnx`).

    The interface of :class:`~brainmri.models.bundle.Bundle`
    (``predict_proba``, ``predict``, ``classes_``, ``manifest``, ``path``);
    images are read and preprocessed by the bundle's own first step.

    Attributes
    ----------
    model : Pipeline
        The bundle's first step, then :class:`OnnxNetwork`.
    onnx_path : Path
    pytorch : Bundle
        The same bundle in PyTorch, for what needs the network itself (explanations).
    description : dict
        The export's description (``FILE.json``): input, output, check.
    """

    def __init__(
        self, model, manifest: dict, path: Path, *, onnx_path: Path, description: dict, ood=None, pytorch=None
    ):
        super().__init__(model, manifest, path, ood)
        self._pytorch = pytorch
        self.onnx_path = onnx_path
        self.description = description

    @property
    def pytorch(self) -> Bundle:
        """The bundle as loaded in PyTorch, what explanations (gradients) need: loaded at first use when the
        export was loaded without PyTorch."""
        if self._pytorch is None:
            self._pytorch = load_model(self.path, n_jobs=self.ood.n_jobs if self.ood else 1, device="cpu")
        return self._pytorch

    def __repr__(self) -> str:
        return (
            f"OnnxBundle({str(self.path)!r}, onnx={str(self.onnx_path)!r}, "
            f"method={self.manifest['method']['name']!r}, classes={list(self.classes_)})"
        )


def load_onnx(
    bundle: str | Path,
    onnx_file: str | Path | None = None,
    *,
    n_jobs: int = 1,
    threads: int | None = None,
    loaded: Bundle | None = None,
    engine: str = "onnxruntime",
) -> OnnxBundle:
    """Load a bundle with its exported ONNX graph, to predict with ONNX Runtime (or OpenVINO).

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
    loaded : Bundle or None
        The bundle, when it is already loaded from ``bundle`` (on the CPU).
    engine : {"onnxruntime", "openvino"}
        What runs the graph; OpenVINO computes at the precision the bundle's
        network uses in PyTorch (:class:`OpenVinoSession`).

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
    onnxruntime = onnxruntime_module() if engine != "openvino" else None
    if threads is not None and not (isinstance(threads, int) and threads >= 1):
        raise ConfigError(f"threads must be a positive integer or None, got {threads!r}")
    folder = Path(bundle)
    path = Path(onnx_file) if onnx_file is not None else default_path(folder)
    again = f"export it again with: brainmri export {folder} --onnx" + (
        f" --out {path}" if onnx_file is not None else ""
    )
    description, made_from = _checked_description(path, again)
    if made_from != sha256(folder / MANIFEST):
        raise DataError(f"{path}: exported from another bundle, or from an earlier training of {folder}; {again}")
    if loaded is not None:
        manifest, first, ood = loaded.manifest, network_parts(loaded)[0], loaded.ood
    else:
        manifest, first, ood = _without_torch(folder, n_jobs) or _with_torch(folder, n_jobs)
    network = OnnxNetwork(_session(path, engine, threads, manifest, onnxruntime), manifest["classes"])
    return OnnxBundle(
        GroupedPipeline([("first", first), ("onnx", network)]),
        manifest,
        folder,
        onnx_path=path,
        description=description,
        # The out-of-distribution score needs the graph's embedding (exports of version 2 and later).
        ood=ood if network.has_embedding else None,
        pytorch=loaded,
    )


def _session(path: Path, engine: str, threads: int | None, manifest: dict, onnxruntime):
    """The export at ``path`` ready to run in ``engine``."""
    if engine == "openvino":
        # PyTorch's autocast on the CPU computes in bfloat16 when the network's precision says bf16 and the CPU has
        # it natively (brainmri.training.batches.autocast_dtype).
        method = manifest["method"]
        precision = method.get("fitted", {}).get("precision") or method["params"].get("precision")
        bf16 = computes_bf16(precision, "cpu")
        return OpenVinoSession(path, threads=threads, bf16=bf16)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads or 0
    options.log_severity_level = 3  # errors only: ONNX Runtime's own warnings go to stderr, not to logging
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _without_torch(folder: Path, n_jobs: int) -> tuple[dict, object, object] | None:
    """The manifest, first step and out-of-distribution detector of the bundle, read without PyTorch, or None when
    its first step learned something in training (then the whole bundle is loaded).

    The export holds the rest of the method (linear steps, network, calibration); its description names the sha256
    of this manifest, and the manifest the sha256 of every file, so nothing else is needed to predict.
    """
    manifest = read_manifest(folder)
    verify_files(folder, manifest)
    method = manifest["method"]
    model = get_method(method["name"]).build(
        seed=manifest["config"]["seed"],
        n_jobs=n_jobs,
        preprocess=Preprocess.from_dict(manifest["preprocess"]),
        device="cpu",
        params=method["params"],
    )
    first = first_step(model)
    if not learns_nothing(first):
        return None
    return manifest, first.fit([]), load_ood(folder, manifest, n_jobs)


def _with_torch(folder: Path, n_jobs: int) -> tuple[dict, object, object]:
    loaded = load_model(folder, n_jobs=n_jobs, device="cpu")
    return loaded.manifest, network_parts(loaded)[0], loaded.ood


def _checked_description(path: Path, again: str) -> tuple[dict, str]:
    """The description beside the export ``path``, once it is there, readable and of this very file (sha256), and
    the sha256 of the bundle manifest it names."""
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
    return description, made_from
