"""Which runtime predicts with a bundle: PyTorch, or ONNX Runtime through an export cached by the bundle's hash.

``predict --runtime auto`` (the default) takes the faster of PyTorch and ONNX
Runtime for a deep bundle whose network runs on the CPU, when onnx and
onnxruntime are installed. Neither wins everywhere: on the 2-core
development machine ONNX Runtime (float32) ran ``transfer-finetune``'s
network 1.5x faster than PyTorch's bf16 autocast, and ``ayadi-cnn``'s 1.5x
slower (docs/benchmarks.md, "Prediction runtimes"). So at first use the graph
is exported (:func:`~brainmri.models.onnx.export_onnx`, checked against
PyTorch in float32 before it is kept) into the cache folder, under the sha256
of the bundle's manifest and the export version, never into the bundle; both
runtimes are timed there on a few synthetic slices (``speed.json``), and
later runs read the export and the timing from there.
:func:`~brainmri.models.onnx_runtime.load_onnx` refuses an export that does
not belong to the bundle. Everything else
(a classical method, a GPU, test-time adaptation, explanations, a missing
onnxruntime, a graph that fails its check) predicts with PyTorch, and the
runtime used is said in words.

OpenVINO is not offered: ONNX Runtime's CPU kernels serve the same graph,
and one runtime besides PyTorch is what the tests can keep honest.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from brainmri.data.synthetic import CLASSES, synthetic_slice
from brainmri.errors import ConfigError, DataError
from brainmri.files import sha256, write_json
from brainmri.models.bundle import Bundle, load_model
from brainmri.models.manifest import MANIFEST
from brainmri.models.onnx import EXPORT_FORMAT, EXPORT_VERSION, export_onnx
from brainmri.models.onnx_graph import description_path, network_parts, onnx_modules
from brainmri.models.onnx_runtime import load_onnx
from brainmri.steps import final_step, first_step

logger = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnx")
#: Synthetic slices the two runtimes are timed on at first use (``auto`` takes the faster one).
SPEED_IMAGES = 32


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
    speed = _known_speed(cached) if runtime == "auto" and cached.exists() else None
    if speed is None or speed["onnx_ms"] < speed["torch_ms"]:  # ONNX Runtime is not loaded when it is slower
        try:
            onnx_bundle = _cached_onnx(path, cached, n_jobs, threads, bundle)
        except (DataError, ConfigError, OSError) as exc:  # OSError: a cache folder that cannot be written
            if runtime == "onnx":
                raise
            logger.warning("predicting with PyTorch: the ONNX export failed (%s)", exc)
            return bundle, "PyTorch (the ONNX export failed)"
        if runtime == "onnx":
            return onnx_bundle, "ONNX Runtime"
        speed = speed or _measure_speed(cached, bundle, onnx_bundle)
    if speed["torch_ms"] <= speed["onnx_ms"]:
        return bundle, (
            f"PyTorch (faster here than ONNX Runtime: {speed['torch_ms']:.1f} against {speed['onnx_ms']:.1f} ms per "
            "image, measured at first use)"
        )
    return onnx_bundle, "ONNX Runtime"


def _cached_onnx(path, cached: Path, n_jobs: int, threads: int | None, bundle: Bundle):
    """The bundle with its cached export, exported first when the cache has none, or again when the one it has is
    damaged (the cache is brainmri's own)."""
    if cached.exists():
        try:
            return load_onnx(path, cached, n_jobs=n_jobs, threads=threads, loaded=bundle)
        except DataError as exc:
            if not _ours(cached):
                raise
            logger.warning("exporting %s again: the cached export is unusable (%s)", path, exc)
            cached.unlink()  # brainmri's own export (its description says so), damaged
    else:
        logger.info("exporting %s to ONNX for ONNX Runtime (first use; cached in %s)", path, cached.parent)
    cached.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(path, cached)
    return load_onnx(path, cached, n_jobs=n_jobs, threads=threads, loaded=bundle)


def _ours(cached: Path) -> bool:
    """Whether the description beside ``cached`` is one brainmri wrote (then the file is brainmri's export)."""
    try:
        return json.loads(description_path(cached).read_text(encoding="utf-8")).get("format") == EXPORT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _known_speed(cached: Path) -> dict | None:
    """What :func:`_measure_speed` recorded beside the cached export, or None."""
    try:
        speed = json.loads(cached.with_name("speed.json").read_text(encoding="utf-8"))
        return speed if isinstance(speed.get("torch_ms"), float) and isinstance(speed.get("onnx_ms"), float) else None
    except (OSError, ValueError, AttributeError):
        return None


def _measure_speed(cached: Path, bundle: Bundle, onnx_bundle) -> dict:
    """The network's milliseconds per image in each runtime on this machine, measured at first use on
    :data:`SPEED_IMAGES` synthetic slices (the best of 3 timed runs after a warm-up) and kept in ``speed.json``
    beside the cached export."""
    record = cached.with_name("speed.json")
    rng = np.random.default_rng(0)
    images = [synthetic_slice(CLASSES[k % len(CLASSES)], rng, 256) for k in range(SPEED_IMAGES)]
    Z = first_step(bundle.model).transform(images)
    speed = {"images": SPEED_IMAGES}
    for name, final in (("torch", final_step(bundle.model)), ("onnx", final_step(onnx_bundle.model))):
        final.predict_proba_with_embedding(Z)  # warm-up: kernels, folded batch norms
        times = []
        for _ in range(3):
            start = time.perf_counter()
            final.predict_proba_with_embedding(Z)
            times.append(time.perf_counter() - start)
        speed[f"{name}_ms"] = round(1000 * min(times) / SPEED_IMAGES, 3)
    try:
        write_json(record, speed)
    except OSError as exc:  # measured again next time
        logger.warning("%s: not written (%s)", record, exc)
    logger.info("network speed here: PyTorch %.1f, ONNX Runtime %.1f ms per image", speed["torch_ms"], speed["onnx_ms"])
    return speed


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
