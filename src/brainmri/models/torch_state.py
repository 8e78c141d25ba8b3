"""The saved state of a torch step: its weights as safetensors, and what they need besides as JSON.

:meth:`TorchClassifier.save_state <brainmri.models.torch_classifier.TorchClassifier.save_state>`
writes ``{prefix}weights.safetensors`` and ``{prefix}state.json`` through
:func:`write_state`; :meth:`~brainmri.models.torch_classifier.TorchClassifier.load_state`
reads them back through :func:`read_state` and :func:`checked_temperature`.
Only data is read (JSON and safetensors); no code from the files runs.

A state file names the function that builds its network by its qualified
name. Bundles written before the networks moved to :mod:`brainmri.nets`
name them in their former modules (``_FORMER_HOMES``), and still load.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

from brainmri.errors import DataError
from brainmri.files import atomic_path, write_json

#: Version of the files written by :func:`write_state`.
STATE_FORMAT = 1

#: Modules of the networks before they moved to :mod:`brainmri.nets`; bundles written then name their builders so.
_FORMER_HOMES = {
    f"brainmri.models.{name}.": f"brainmri.nets.{name}." for name in ("cnn", "dnn", "finetune", "backbones")
}


def _current_home(builder) -> str | None:
    """The qualified name of a network builder as a state file records it, in the module where it lives now."""
    if not isinstance(builder, str):
        return None
    for old, new in _FORMER_HOMES.items():
        if builder.startswith(old):
            return new + builder[len(old) :]
    return builder


def _state_files(prefix: str) -> tuple[str, str]:
    """The file names of a state: ``{prefix}state.json`` and ``{prefix}weights.safetensors``."""
    return f"{prefix}state.json", f"{prefix}weights.safetensors"


def _state_paths(folder: str | Path, prefix: str) -> tuple[Path, Path]:
    """The files of a state (:func:`_state_files`) in ``folder``."""
    meta, weights = _state_files(prefix)
    return Path(folder) / meta, Path(folder) / weights


def write_state(folder: str | Path, prefix: str, module, record: dict) -> list[str]:
    """Write ``module``'s weights as ``{prefix}weights.safetensors`` and ``record`` as ``{prefix}state.json``, atomically.

    The JSON is ``{"format": STATE_FORMAT, **record}``: what the weights
    need besides themselves (classes, temperature, input shape, the module
    builder's name, ...).

    Returns
    -------
    list of str
        The file names written.
    """
    from safetensors.torch import save_file  # the deep extra

    folder = Path(folder)
    meta, weights = _state_files(prefix)
    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    with atomic_path(folder / weights) as tmp:
        save_file(tensors, str(tmp))
    write_json(folder / meta, {"format": STATE_FORMAT, **record})
    return [weights, meta]


def read_state(folder: str | Path, prefix: str, builder_name: str, build: Callable) -> tuple[dict, object]:
    """The JSON record that :func:`write_state` wrote, and the network it describes with the saved weights.

    Parameters
    ----------
    builder_name : str
        The qualified name of the network builder the method uses; the
        file must name it (or its former home).
    build : callable
        ``build(n_classes, input_shape)``: an untrained network of the
        method, into which the weights are loaded (strictly).

    Raises
    ------
    DataError
        A missing, unreadable or mismatching file, named in the message.
    """
    from safetensors import SafetensorError  # the deep extra
    from safetensors.torch import load_file

    meta_path, weights_path = _state_paths(folder, prefix)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{meta_path}: cannot be read as the state of a deep method ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != STATE_FORMAT:
        raise DataError(
            f"{meta_path}: state format {meta.get('format') if isinstance(meta, dict) else None!r}, "
            f"this brainmri reads format {STATE_FORMAT}; retrain the model with this version"
        )
    if _current_home(meta.get("module_builder")) != builder_name:
        raise DataError(f"{meta_path}: weights of {meta.get('module_builder')}, but the method builds {builder_name}")
    try:
        tensors = load_file(str(weights_path))
        module = build(len(meta["classes"]), tuple(meta["input_shape"]))
        module.load_state_dict(tensors, strict=True)
    except (OSError, SafetensorError, RuntimeError, KeyError, TypeError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"{weights_path}: not the weights this method expects ({reason})") from None
    return meta, module


def checked_temperature(meta: dict, folder: str | Path, prefix: str) -> float:
    """The calibration temperature of a record that :func:`read_state` read.

    Raises
    ------
    DataError
        It is not a positive finite number (the file was changed).
    """
    temperature = meta.get("temperature")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 < temperature < math.inf:
        meta_path, _ = _state_paths(folder, prefix)
        raise DataError(
            f"{meta_path}: temperature {temperature!r} is not a positive number, so every probability "
            "would be NaN or infinite; the file was changed after training, train the bundle again"
        )
    return float(temperature)
