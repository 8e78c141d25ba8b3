"""The method registry: every method of brainmri is reachable by name.

A method is a scikit-learn classifier with

* ``fit(X, y, groups=None)``: ``X`` an array of image file paths, ``y``
  their labels, ``groups`` one group id per item (subject, near-duplicate
  cluster or look-alike group: the grouping of the outer split). Every
  split the method makes inside ``fit`` (hyperparameter search, probability
  calibration, early stopping, validation) must keep each group on one side,
  e.g. through :func:`brainmri.models.validation.inner_splits`. Called
  without groups, a method splits item by item, as before;
* ``predict_proba(X)`` and ``classes_``;
* after fitting, ``params_``: a dict of what it chose (hyperparameters,
  calibration) and how (``params_["inner_cv"]`` names the inner split,
  grouped or not), written to the results.

The benchmark runner always calls ``fit(paths, labels, groups=groups)``.
Classical methods are ``Pipeline``s whose first step turns paths into
features; deep methods wrap a torch model behind the same interface. The
benchmark runner, tuning and serving see methods only through
:func:`get_method`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from brainmri.errors import ConfigError


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    Attributes
    ----------
    name : str
        Registry name (``glcm-svm``).
    builder : callable
        ``builder(*, seed, n_jobs, cache_dir, preprocess)`` returning an
        unfitted classifier. ``cache_dir`` is a feature cache folder, or a
        :class:`~brainmri.features.extract.MemoryCache` that a run without
        a cache folder shares between its methods, or None.
    summary : str
        One line for ``--help`` and reports.
    reference : str
        The study the method follows (authors, year, venue, DOI).
    family : str
        ``"classical"`` or ``"deep"``.
    """

    name: str
    builder: Callable
    summary: str
    reference: str
    family: str = "classical"


_REGISTRY: dict[str, MethodSpec] = {}


def register_method(name: str, *, summary: str, reference: str, family: str = "classical"):
    """Decorator registering a builder under ``name``."""

    def decorate(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is registered twice")
        _REGISTRY[name] = MethodSpec(name, builder, summary, reference, family)
        return builder

    return decorate


def _load_builtin() -> None:
    # Importing the modules registers their methods.
    import brainmri.models.classical  # noqa: F401
    import brainmri.models.deep  # noqa: F401


def available_methods() -> dict[str, MethodSpec]:
    """Registered methods by name, sorted."""
    _load_builtin()
    return dict(sorted(_REGISTRY.items()))


def get_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` registered as ``name``.

    Raises
    ------
    ConfigError
        Unknown name; the message lists the valid ones.
    """
    methods = available_methods()
    if name not in methods:
        raise ConfigError(f"unknown method {name!r}; valid methods: {', '.join(methods)}")
    return methods[name]


def parse_methods(text: str) -> list[str]:
    """Split a comma-separated ``--methods`` value and check every name.

    ``all`` stands for every registered method.
    """
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(available_methods())
    if not names:
        raise ConfigError(f"--methods needs at least one name; valid methods: {', '.join(available_methods())}")
    for name in names:
        get_method(name)
    if len(set(names)) != len(names):
        raise ConfigError(f"--methods lists a method twice: {text}")
    return names
