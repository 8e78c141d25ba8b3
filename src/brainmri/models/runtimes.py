"""Which runtime predicts with a bundle: PyTorch, or ONNX Runtime through an export cached by the bundle's hash.

``predict --runtime auto`` (the default) takes ONNX Runtime for a deep
bundle when onnx and onnxruntime are installed and the network runs on the
CPU: its graph answers 1.4-3x faster than PyTorch here
(docs/benchmarks.md, "Prediction runtimes"). The graph is exported on first
use (:func:`~brainmri.models.onnx.export_onnx`, checked against PyTorch in
float32 before it is kept) into the cache folder, under the sha256 of the
bundle's manifest and the export version, never into the bundle; later runs
load it from there, and :func:`~brainmri.models.onnx_runtime.load_onnx`
refuses an export that does not belong to the bundle. Everything else
(a classical method, a GPU, test-time adaptation, explanations, a missing
onnxruntime, a graph that fails its check) predicts with PyTorch, and the
runtime used is said in words.

OpenVINO is not offered: ONNX Runtime's CPU kernels serve the same graph,
and one runtime besides PyTorch is what the tests can keep honest.
"""

from __future__ import annotations

import logging
from pathlib import Path

from brainmri.errors import ConfigError, DataError
from brainmri.files import sha256
from brainmri.models.bundle import Bundle, load_model
from brainmri.models.manifest import MANIFEST
from brainmri.models.onnx import EXPORT_VERSION, export_onnx
from brainmri.models.onnx_graph import network_parts, onnx_modules
from brainmri.models.onnx_runtime import load_onnx
from brainmri.steps import final_step

logger = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnx")


def onnx_cache_path(bundle: str | Path, cache_dir: str | Path) -> Path:
    """Where the bundle's export is cached: ``CACHE/onnx/<manifest sha256>-v<export version>/model.onnx``."""
    digest = sha256(Path(bundle) / MANIFEST)
    return Path(cache_dir) / "onnx" / f"{digest[:32]}-v{EXPORT_VERSION}" / "model.onnx"


def load_for_prediction(
    path: str | Path,
    *,
    runtime: str = "auto",
    cache_dir: str | Path,
    device: str = "auto",
    n_jobs: int = 1,
    threads: int | None = None,
    torch_only: str | None = None,
) -> tuple[Bundle, str]:
    """The bundle at ``path``, predicting with the runtime asked for, and that runtime in words.

    A method that is not a network predicts with scikit-learn, whatever
    ``auto`` or ``torch`` say.

    Parameters
    ----------
    runtime : {"auto", "torch", "onnx"}
    cache_dir : path
        The cache folder of the ONNX exports.
    device : str
        Where PyTorch runs; ONNX Runtime runs on the CPU, so ``auto`` picks it
        only when this resolves to the CPU.
    threads : int or None
        ONNX Runtime's threads within an operator.
    torch_only : str or None
        Why this prediction needs PyTorch (``--adapt``, ``--explain``): ``auto``
        takes PyTorch, ``onnx`` is refused with it.

    Raises
    ------
    ConfigError
        ``onnx`` asked for where it cannot run (say why), an unknown runtime.
    DataError
        ``onnx`` asked for and the export fails its check.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    bundle = load_model(path, n_jobs=n_jobs, device=device)
    if not hasattr(final_step(bundle.model), "module_"):
        if runtime == "onnx":
            raise ConfigError(
                f"--runtime onnx: {bundle.manifest['method']['name']} is not a network; it predicts with scikit-learn"
            )
        return bundle, "scikit-learn"
    if runtime == "torch":
        return bundle, "PyTorch"
    why_not = torch_only or _onnx_problem(bundle)
    if why_not:
        if runtime == "onnx":
            raise ConfigError(f"--runtime onnx: {why_not}; use --runtime torch")
        return bundle, f"PyTorch ({why_not})"
    cached = onnx_cache_path(path, cache_dir)
    if not cached.exists():
        logger.info("exporting %s to ONNX for ONNX Runtime (first use; cached in %s)", path, cached.parent)
        try:
            cached.parent.mkdir(parents=True, exist_ok=True)
            export_onnx(path, cached)
        except (DataError, ConfigError) as exc:
            if runtime == "onnx":
                raise
            logger.warning("predicting with PyTorch: the ONNX export failed (%s)", exc)
            return bundle, "PyTorch (the ONNX export failed its check)"
    return load_onnx(path, cached, n_jobs=n_jobs, threads=threads, loaded=bundle), "ONNX Runtime"


def _onnx_problem(bundle: Bundle) -> str | None:
    """Why ONNX Runtime cannot predict for ``bundle`` here, or None."""
    try:
        onnx_modules()
        network_parts(bundle)
    except ConfigError as exc:
        return str(exc).split(";")[0].removeprefix(f"{bundle.path}: ")
    final = final_step(bundle.model)
    if getattr(final, "device_", None) is not None and final.device_.type != "cpu":
        return f"the network runs on {final.device_}, and brainmri's ONNX Runtime runs on the CPU"
    if len(getattr(final, "input_shape_", ())) == 3:
        return "3D volumes are predicted with PyTorch"
    return None
