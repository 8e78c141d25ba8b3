"""Which runtime predicts with a bundle: PyTorch, or ONNX Runtime or OpenVINO through an export cached by the
bundle's hash.

``predict --runtime auto`` (the default) takes the fastest of PyTorch, ONNX
Runtime and OpenVINO (when the openvino package is installed) for a deep
bundle whose network runs on the CPU, when onnx and onnxruntime are
installed. None wins everywhere: on the 2-core development machine ONNX
Runtime (float32) ran ``transfer-finetune``'s network 1.5x faster than
PyTorch's bf16 autocast, and ``ayadi-cnn``'s 1.5x slower (docs/benchmarks.md,
"Prediction runtimes"). So at first use the graph is exported
(:func:`~brainmri.models.onnx.export_onnx`, checked against PyTorch in
float32 before it is kept) into the cache folder, under the sha256 of the
bundle's manifest and the export version, never into the bundle; the
runtimes are timed there on a few synthetic slices (``speed.json``), and
later runs read the export and the timing from there, and load only the
fastest runtime. OpenVINO compiles the same file, at the precision of the
bundle's network in PyTorch (bfloat16 where the CPU has it, else float32).
:func:`~brainmri.models.onnx_runtime.load_onnx` refuses an export that does
not belong to the bundle. Everything else
(a classical method, a GPU, test-time adaptation, explanations, a missing
onnxruntime, a graph that fails its check) predicts with PyTorch, and the
runtime used is said in words.
"""

from __future__ import annotations

import importlib.util
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
from brainmri.models.onnx_graph import description_path, network_parts, onnxruntime_module
from brainmri.models.onnx_runtime import ENGINES, load_onnx
from brainmri.steps import final_step, first_step
from brainmri.training.device import surely_cpu

logger = logging.getLogger(__name__)

RUNTIMES = ("auto", "torch", "onnx", "openvino")
#: The runtimes that run the ONNX export, with their engine (:func:`~brainmri.models.onnx_runtime.load_onnx`).
EXPORT_RUNTIMES = {"onnx": "onnxruntime", "openvino": "openvino"}
#: Synthetic slices the runtimes are timed on at first use (``auto`` takes the fastest).
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
    runtime : {"auto", "torch", "onnx", "openvino"}
        ``auto`` takes the fastest of PyTorch, ONNX Runtime and (when
        installed) OpenVINO, timed at first use.
    cache_dir : path
        The cache folder of the ONNX exports.
    device : str
        Where PyTorch runs; ONNX Runtime and OpenVINO run on the CPU, so
        ``auto`` picks them only when this resolves to the CPU.
    threads : int or None
        ONNX Runtime's (OpenVINO's) threads.
    torch_only : str or None
        Why this prediction needs PyTorch (``--adapt``, ``--explain``): ``auto``
        takes PyTorch, ``onnx`` and ``openvino`` are refused with it.

    Raises
    ------
    ConfigError
        ``onnx`` or ``openvino`` asked for where it cannot run (say why), an
        unknown runtime.
    DataError
        ``onnx`` or ``openvino`` asked for and the export fails its check.
    """
    if runtime not in RUNTIMES:
        raise ConfigError(f"--runtime must be one of {', '.join(RUNTIMES)}, got {runtime!r}")
    if runtime != "torch" and torch_only is None:
        light = _cached_without_torch(path, runtime, cache_dir, device, n_jobs, threads)
        if light is not None:
            return light
    bundle = load_model(path, n_jobs=n_jobs, device=device)
    if not hasattr(final_step(bundle.model), "module_"):
        if runtime in EXPORT_RUNTIMES:
            raise ConfigError(
                f"--runtime {runtime}: {bundle.manifest['method']['name']} is not a network; it predicts with "
                "scikit-learn"
            )
        return bundle, "scikit-learn"
    if runtime == "torch":
        return bundle, "PyTorch"
    why_not = torch_only or _onnx_problem(bundle)
    if why_not:
        if runtime in EXPORT_RUNTIMES:
            raise ConfigError(f"--runtime {runtime}: {why_not}; use --runtime torch")
        return bundle, f"PyTorch ({why_not})"
    cached = onnx_cache_path(path, cache_dir)
    if runtime in EXPORT_RUNTIMES:
        return _cached_onnx(path, cached, n_jobs, threads, bundle, runtime), ENGINES[EXPORT_RUNTIMES[runtime]]
    candidates = _candidates()
    speed = _known_speed(cached, candidates) if cached.exists() else None
    try:
        if speed is None:  # first use: every runtime loaded and timed
            loaded = {name: _cached_onnx(path, cached, n_jobs, threads, bundle, name) for name in candidates}
            speed = _measure_speed(cached, bundle, loaded)
        fastest = _fastest(speed, candidates)
        if fastest == "torch":
            return bundle, f"PyTorch (the fastest here: {_speeds(speed)} ms per image, measured at first use)"
        # Only the fastest is loaded once the timing is known.
        return _cached_onnx(path, cached, n_jobs, threads, bundle, fastest), ENGINES[EXPORT_RUNTIMES[fastest]]
    except (DataError, ConfigError, OSError) as exc:  # OSError: a cache folder that cannot be written
        logger.warning("predicting with PyTorch: the ONNX export failed (%s)", exc)
        return bundle, "PyTorch (the ONNX export failed)"


def _cached_without_torch(path, runtime: str, cache_dir, device: str, n_jobs: int, threads: int | None):
    """``(bundle, runtime in words)`` predicting through the cached export, loaded without importing PyTorch, when
    that is what the full path would choose; None otherwise (no export cached yet, a GPU may be there, ``auto``
    without a timing or with PyTorch the fastest, an export that fails its checks): then the bundle is loaded in
    PyTorch, and the full path decides and says why.

    PyTorch's import alone takes 1.3-1.7 s on the 2-core machine, more than the rest of loading a bundle.
    """
    if not surely_cpu(device):
        return None
    try:
        cached = onnx_cache_path(path, cache_dir)
    except OSError:  # no manifest: not a bundle, which loading it says in words
        return None
    if not cached.exists():
        return None
    if runtime == "auto":
        candidates = _candidates()
        speed = _known_speed(cached, candidates)
        runtime = _fastest(speed, candidates) if speed is not None else "torch"
        if runtime == "torch":
            return None
    try:
        bundle = load_onnx(path, cached, n_jobs=n_jobs, threads=threads, engine=EXPORT_RUNTIMES[runtime])
    except (DataError, ConfigError) as exc:
        logger.info("loading %s in PyTorch: %s", path, exc)
        return None
    return bundle, ENGINES[EXPORT_RUNTIMES[runtime]]


def _candidates() -> list[str]:
    """The export runtimes installed here (``auto`` times them against PyTorch)."""
    return ["onnx", *(["openvino"] if importlib.util.find_spec("openvino") else [])]


def _fastest(speed: dict, candidates: list[str]) -> str:
    return min(["torch", *candidates], key=lambda name: speed[f"{name}_ms"])


def _speeds(speed: dict) -> str:
    """``PyTorch 4.9, ONNX Runtime 8.2, OpenVINO 3.1``: the times of :func:`_measure_speed`."""
    words = {"torch": "PyTorch", **{name: ENGINES[engine] for name, engine in EXPORT_RUNTIMES.items()}}
    return ", ".join(f"{word} {speed[f'{name}_ms']:.1f}" for name, word in words.items() if f"{name}_ms" in speed)


def _cached_onnx(path, cached: Path, n_jobs: int, threads: int | None, bundle: Bundle, runtime: str = "onnx"):
    """The bundle with its cached export in ``runtime``, exported first when the cache has none, or again when the
    one it has is damaged (the cache is brainmri's own)."""
    engine = EXPORT_RUNTIMES[runtime]
    if cached.exists():
        try:
            return load_onnx(path, cached, n_jobs=n_jobs, threads=threads, loaded=bundle, engine=engine)
        except DataError as exc:
            if not _ours(cached):
                raise
            logger.warning("exporting %s again: the cached export is unusable (%s)", path, exc)
            cached.unlink()  # brainmri's own export (its description says so), damaged
    else:
        logger.info("exporting %s to ONNX (first use; cached in %s)", path, cached.parent)
    cached.parent.mkdir(parents=True, exist_ok=True)
    export_onnx(path, cached)
    return load_onnx(path, cached, n_jobs=n_jobs, threads=threads, loaded=bundle, engine=engine)


def _ours(cached: Path) -> bool:
    """Whether the description beside ``cached`` is one brainmri wrote (then the file is brainmri's export)."""
    try:
        return json.loads(description_path(cached).read_text(encoding="utf-8")).get("format") == EXPORT_FORMAT
    except (OSError, ValueError, AttributeError):
        return False


def _known_speed(cached: Path, candidates: list[str]) -> dict | None:
    """What :func:`_measure_speed` recorded beside the cached export, or None (also when it lacks a candidate)."""
    try:
        speed = json.loads(cached.with_name("speed.json").read_text(encoding="utf-8"))
        known = all(isinstance(speed.get(f"{name}_ms"), float) for name in ["torch", *candidates])
        return speed if known else None
    except (OSError, ValueError, AttributeError):
        return None


def _measure_speed(cached: Path, bundle: Bundle, loaded: dict) -> dict:
    """The network's milliseconds per image in PyTorch and in each runtime of ``loaded`` on this machine, measured at
    first use on :data:`SPEED_IMAGES` synthetic slices (the best of 3 timed runs after a warm-up) and kept in
    ``speed.json`` beside the cached export."""
    record = cached.with_name("speed.json")
    rng = np.random.default_rng(0)
    images = [synthetic_slice(CLASSES[k % len(CLASSES)], rng, 256) for k in range(SPEED_IMAGES)]
    Z = first_step(bundle.model).transform(images)
    speed = {"images": SPEED_IMAGES}
    finals = {"torch": final_step(bundle.model), **{name: final_step(b.model) for name, b in loaded.items()}}
    for name, final in finals.items():
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
    logger.info("network speed here, ms per image: %s", _speeds(speed))
    return speed


def _onnx_problem(bundle: Bundle) -> str | None:
    """Why ONNX Runtime cannot predict for ``bundle`` here, or None."""
    try:
        onnxruntime_module()
        network_parts(bundle)
    except ConfigError as exc:
        return str(exc).split(";")[0].removeprefix(f"{bundle.path}: ")
    final = final_step(bundle.model)
    if getattr(final, "device_", None) is not None and final.device_.type != "cpu":
        return f"the network runs on {final.device_}, and brainmri's ONNX Runtime runs on the CPU"
    if len(getattr(final, "input_shape_", ())) == 3:
        return "3D volumes are predicted with PyTorch"
    return None
