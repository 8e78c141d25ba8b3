"""int8 post-training quantisation of a deep bundle's ONNX graph, kept only when it agrees with float32.

:func:`quantise_onnx` exports the bundle's network in float32
(:func:`~brainmri.models.onnx.export_onnx`), then quantises it statically with
ONNX Runtime's tools (:func:`onnxruntime.quantization.quantize_static`: QDQ
format, int8 weights per channel, uint8 activations, ranges calibrated by
min-max on images of the bundle's own training data, after ONNX Runtime's
pre-processing of the graph). Calibration and check
images are two disjoint samples drawn with the seed from a labelled folder
(``--calibration``, by default the bundle's training data). The int8 graph is
kept only when, on the check sample, its calls agree with the float32 graph's
on at least :data:`MIN_AGREEMENT` of the images and its accuracy is at most
:data:`MAX_ACCURACY_DROP` below float32's; otherwise nothing is written and
the error gives the figures. The description beside the file records the
figures, the samples and the speed of both graphs on the check images.

The training images are the model's own, so the accuracies on them are
optimistic; what the check measures is how far int8 moves the calls from
float32, which does not need unseen images.

Reference: ONNX Runtime, "Quantize ONNX models",
https://onnxruntime.ai/docs/performance/model-optimizations/quantization.html
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from brainmri.data.dataset import load_dataset
from brainmri.errors import ConfigError, DataError
from brainmri.files import atomic_path, sha256, write_json
from brainmri.models.onnx import METADATA_KEY, check_export_target, export_onnx
from brainmri.models.onnx_graph import description_path, graph_input, onnx_modules
from brainmri.models.onnx_runtime import load_onnx

logger = logging.getLogger(__name__)

#: Share of the check images on which the int8 graph must call the same class as the float32 one.
MIN_AGREEMENT = 0.995
#: Largest accuracy drop (a fraction) allowed on the check images.
MAX_ACCURACY_DROP = 0.002
#: Images drawn for calibration and for the check.
N_CALIBRATION, N_CHECK = 200, 400


def default_int8_path(bundle: str | Path) -> Path:
    """``model.int8.onnx`` inside the bundle folder."""
    return Path(bundle) / "model.int8.onnx"


def quantise_onnx(
    bundle: str | Path,
    calibration: str | Path | None = None,
    out: str | Path | None = None,
    *,
    n_calibration: int = N_CALIBRATION,
    n_check: int = N_CHECK,
    seed: int = 0,
) -> dict:
    """Write the bundle's network as an int8 ONNX graph, if it agrees with float32 on held-out images.

    Parameters
    ----------
    bundle : path
        A deep bundle folder written by ``brainmri train``.
    calibration : path or None
        A labelled folder (or CSV manifest) of images like the training
        ones; None: the training data the bundle's manifest names.
    out : path or None
        The ``.onnx`` file (default :func:`default_int8_path`).
    n_calibration, n_check : int
        Images drawn for the calibration and, apart from them, for the check.
    seed : int

    Returns
    -------
    dict
        The description written beside the file, with ``quantisation``.

    Raises
    ------
    DataError
        The int8 graph falls short of :data:`MIN_AGREEMENT` or
        :data:`MAX_ACCURACY_DROP` (nothing written; the figures in the
        message), or the calibration folder has too few usable images.
    ConfigError
        No calibration folder, or one whose classes are not the bundle's.
    """
    onnx_modules()
    folder = Path(bundle)
    out = Path(out) if out is not None else default_int8_path(folder)
    check_export_target(out)
    manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
    source = Path(calibration) if calibration is not None else Path(manifest["config"]["data"])
    if not source.exists():
        raise ConfigError(f"--calibration {source}: not found; give a labelled folder of images like the training ones")
    paths, labels = _sample(source, manifest["classes"], n_calibration + n_check, seed)
    with tempfile.TemporaryDirectory() as tmp:
        fp32 = Path(tmp) / "model.onnx"
        export_onnx(folder, fp32)
        model = load_onnx(folder, fp32, threads=None)
        first = model.model.steps[0][1]
        Z = graph_input(first.transform(list(paths)))
        calib, check = slice(0, n_calibration), slice(n_calibration, None)
        int8 = _quantise(fp32, Path(tmp) / "model.int8.onnx", Z[calib])
        figures = _compare(fp32, int8, Z[check], labels[check], manifest["classes"])
        figures.update({"calibration": str(source), "n_calibration": n_calibration, "seed": seed})
        if figures["agreement"] < MIN_AGREEMENT or figures["accuracy_drop"] > MAX_ACCURACY_DROP:
            raise DataError(
                f"{folder}: the int8 graph calls the float32 graph's class on {figures['agreement']:.2%} of "
                f"{figures['n_check']} check images (at least {MIN_AGREEMENT:.1%} needed) and its accuracy "
                f"there is {100 * figures['accuracy_drop']:.2f} points lower (at most {100 * MAX_ACCURACY_DROP:.1f}"
                " allowed); nothing was written. Predict in float32 (brainmri export --onnx)"
            )
        description = json.loads(description_path(fp32).read_text(encoding="utf-8"))
        for key in ("file", "sha256"):  # of the float32 file; _write adds the int8 file's
            description.pop(key, None)
        description["precision"] = "int8 (QDQ: weights int8 per channel, activations uint8, min-max calibration)"
        description["quantisation"] = figures
        _write(int8, out, description)
    logger.info("wrote %s: int8 agrees with float32 on %.2f%% of the check images", out, 100 * figures["agreement"])
    return description


def _quantise(fp32: Path, int8: Path, Z: np.ndarray) -> Path:
    """ONNX Runtime's static quantisation of ``fp32`` into ``int8``, its ranges calibrated on the inputs ``Z``.

    The graph is first pre-processed as ONNX Runtime advises (shape
    inference and graph optimisation, ``quant_pre_process``): without it,
    transfer-finetune's int8 graph changed 1 call in 400 and was refused;
    with it, none (docs/benchmarks.md).
    """
    from onnxruntime.quantization import (
        CalibrationDataReader,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.batches = iter([{"input": Z[s : s + 32]} for s in range(0, len(Z), 32)])

        def get_next(self):
            return next(self.batches, None)

    prepared = int8.with_name("prepared.onnx")
    quant_pre_process(str(fp32), str(prepared))
    quantize_static(
        str(prepared),
        str(int8),
        Reader(),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        weight_type=QuantType.QInt8,
        activation_type=QuantType.QUInt8,
    )
    return int8


def _sample(source: Path, classes: list[str], n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` labelled images of ``source`` whose class is one of ``classes``, drawn with the seed."""
    dataset = load_dataset(source)
    items = [it for it in dataset.items if it.label in classes]
    if len(items) < n:
        raise DataError(
            f"--calibration {source}: {len(items)} images of the bundle's classes ({', '.join(classes)}), "
            f"{n} needed for the calibration and the check; give a larger folder"
        )
    order = np.random.default_rng(seed).permutation(len(items))[:n]
    return np.array([str(items[k].path) for k in order]), np.array([items[k].label for k in order])


def _compare(fp32: Path, int8: Path, Z: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
    """Agreement, accuracies, largest probability difference and speed of the two graphs on the check images."""
    import onnxruntime

    out = {}
    for name, path in (("fp32", fp32), ("int8", int8)):
        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        session.run(["proba"], {"input": Z[:8]})  # warm-up
        start = time.perf_counter()
        proba = np.concatenate([session.run(["proba"], {"input": Z[s : s + 64]})[0] for s in range(0, len(Z), 64)])
        out[name] = (proba, (time.perf_counter() - start) / len(Z))
    (p32, t32), (p8, t8) = out["fp32"], out["int8"]
    truth = np.array([classes.index(label) for label in labels])
    acc32, acc8 = float((p32.argmax(1) == truth).mean()), float((p8.argmax(1) == truth).mean())
    return {
        "n_check": len(Z),
        "agreement": float((p32.argmax(1) == p8.argmax(1)).mean()),
        "accuracy_fp32": acc32,
        "accuracy_int8": acc8,
        "accuracy_drop": acc32 - acc8,
        "max_abs_diff": float(np.abs(p32 - p8).max()),
        "ms_per_image_fp32": round(1000 * t32, 3),
        "ms_per_image_int8": round(1000 * t8, 3),
    }


def _write(int8: Path, out: Path, description: dict) -> None:
    """The int8 graph at ``out`` with its description in its metadata and beside it (as the float32 export)."""
    onnx, _ = onnx_modules()
    model = onnx.load(str(int8))
    onnx.helper.set_model_props(model, {METADATA_KEY: json.dumps(description)})
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp))
    write_json(description_path(out), {**description, "file": out.name, "sha256": sha256(out)})
