"""Search spaces: which settings of a method ``brainmri tune`` varies, and over what.

Each method declares its space next to its builder
(``register_method(..., search_space=...)``), as plain data that a JSON file
can also hold (``--space FILE`` replaces it)::

    {"C": {"type": "float", "low": 0.01, "high": 100, "log": true},
     "degree": {"type": "int", "low": 2, "high": 3},
     "kernel": {"type": "categorical", "choices": ["linear", "rbf", "poly"]}}

Every name must be a setting of the method (``--params``), so that the best
configuration found is a ``--params`` file for ``train`` and ``benchmark``.
``float`` and ``int`` ranges include both ends and must hold more than one
value; ``log`` draws on a log scale (``low`` > 0). The space is checked when
it is read, before any image is, and drawn from by :func:`suggest`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from brainmri.errors import ConfigError
from brainmri.models.registry import MethodSpec

#: Kinds of parameter a space may hold.
TYPES = ("float", "int", "categorical")


def load_space(spec: MethodSpec, path: str | Path | None = None) -> dict[str, dict]:
    """The checked search space of a method: its declared one, or the one of a JSON file.

    Parameters
    ----------
    spec : MethodSpec
        The method (:func:`brainmri.models.registry.get_method`).
    path : str or Path, optional
        ``--space FILE``: a JSON object in the format of the module docstring;
        it replaces the declared space.

    Returns
    -------
    dict
        Setting name -> ``{"type", "low", "high", "log"}`` or ``{"type",
        "choices"}``, sorted by name, with defaults filled in (``log``
        false).

    Raises
    ------
    ConfigError
        No space (none declared, empty file), an unreadable file, an unknown
        setting, an unknown type, or an empty range.
    """
    where = f"--space {path}" if path else f"the search space of {spec.name}"
    if path is None:
        space = spec.search_space
        if not space:
            raise ConfigError(
                f"method {spec.name} declares no search space; give one with --space FILE "
                f"(its settings: {', '.join(spec.settings()) or 'none'})"
            )
    else:
        try:
            space = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"--space {path}: file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"--space {path}: not a JSON object of setting -> range ({exc})") from None
        if not isinstance(space, dict) or not space:
            raise ConfigError(
                f"--space {path}: expected a non-empty JSON object such as "
                '{"C": {"type": "float", "low": 0.01, "high": 100, "log": true}}'
            )
    settings = spec.settings()
    unknown = sorted(set(space) - set(settings))
    if unknown:
        raise ConfigError(
            f"{where}: {spec.name} has no setting {unknown[0]!r}; its settings: {', '.join(settings) or 'none'}"
        )
    return {name: _check_range(where, name, space[name]) for name in sorted(space)}


def _check_range(where: str, name: str, entry) -> dict:
    """One entry of a space, checked, with ``log`` filled in."""
    if not isinstance(entry, dict) or entry.get("type") not in TYPES:
        raise ConfigError(f'{where}: {name} must be an object with "type" one of {", ".join(TYPES)}, got {entry!r}')
    if entry["type"] == "categorical":
        choices = entry.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f'{where}: {name} has no choices; give a non-empty list, e.g. "choices": [16, 32]')
        if not all(c is None or isinstance(c, (bool, int, float, str)) for c in choices):
            raise ConfigError(f"{where}: {name} choices must be numbers, strings, true/false or null, got {choices!r}")
        return {"type": "categorical", "choices": list(choices)}
    low, high, log = entry.get("low"), entry.get("high"), entry.get("log", False)
    number = int if entry["type"] == "int" else (int, float)
    if any(isinstance(v, bool) or not isinstance(v, number) or not math.isfinite(v) for v in (low, high)):
        raise ConfigError(f'{where}: {name} needs {entry["type"]} "low" and "high", got low={low!r}, high={high!r}')
    if not low < high:
        raise ConfigError(
            f"{where}: {name} has an empty range (low {low} must be below high {high}); "
            "to fix a setting, use --params instead"
        )
    if not isinstance(log, bool) or (log and low <= 0):
        raise ConfigError(f'{where}: {name} with "log": true needs low > 0, got low={low!r}')
    return {"type": entry["type"], "low": low, "high": high, "log": log}


def suggest(trial, space: dict[str, dict]) -> dict:
    """Draw one configuration of a checked space (:func:`load_space`) through an Optuna trial's ``suggest_*``."""
    drawn = {}
    for name, entry in space.items():
        if entry["type"] == "categorical":
            drawn[name] = trial.suggest_categorical(name, entry["choices"])
        elif entry["type"] == "int":
            drawn[name] = trial.suggest_int(name, entry["low"], entry["high"], log=entry["log"])
        else:
            drawn[name] = trial.suggest_float(name, entry["low"], entry["high"], log=entry["log"])
    return drawn
