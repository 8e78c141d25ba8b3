"""The method registry: every method of brainmri is registered here under a name.

A method is a builder (keyword-only settings, see :class:`MethodSpec`) that
returns an estimator keeping the method contract of
:class:`brainmri.models.base.Method`: ``fit(paths, labels, groups)``,
``predict_proba``, ``classes_``, scikit-learn parameters, and optional hooks
declared there. Classical methods are ``Pipeline`` objects whose first step turns
paths into features; deep methods wrap a torch model behind the same
interface. This module imports none of the methods (they import it, to
register); :mod:`brainmri.models.catalog` imports them all, and the benchmark
runner, tuning and serving look methods up there only.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass

from brainmri.errors import ConfigError
from brainmri.models.settings import RULES, Rule, check_setting

#: Folds of ``brainmri benchmark`` when ``--cv`` is not given and the selected methods' protocols disagree.
DEFAULT_CV = 5


@dataclass(frozen=True)
class MethodSpec:
    """A registered method.

    Attributes
    ----------
    name : str
        Registry name (``glcm-svm``), or a named configuration of it
        (``glcm-svm@fast``, see :func:`get_method`).
    builder : callable
        ``builder(*, seed, n_jobs, cache_dir, preprocess, work_dir=None,
        device="auto", **params)`` returning an unfitted classifier.
        ``cache_dir`` is a feature cache folder, or a
        :class:`~brainmri.data.cache.MemoryCache` that a run without
        a cache folder shares between its methods, or None. ``work_dir`` is
        a folder where the method may keep resumable state (checkpoints);
        ``device`` is where torch runs. Methods without torch accept and
        ignore both. ``params`` are the method's own settings (``--params``),
        keyword arguments of the builder with defaults.
    summary : str
        One line for ``--help`` and reports.
    reference : str
        The study the method follows (authors, year, venue, DOI).
    family : str
        ``"classical"`` or ``"deep"``.
    default_cv : int
        Folds of the cross-validation of the method's study (7 for
        Mohsen et al. 2018), used by ``brainmri benchmark`` when ``--cv`` is
        not given and every selected method agrees (see :func:`default_cv`).
    search_space : dict or None
        What ``brainmri tune`` searches: setting name -> ``{"type": "float"
        | "int", "low", "high", "log"}`` or ``{"type": "categorical",
        "choices": [...]}`` (:mod:`brainmri.tuning.space`); None when the
        method declares none.
    inputs : str
        ``"slices"`` (2D images) or ``"volumes"`` (3D NIfTI volumes): what
        the method's first step reads (see :func:`check_inputs`).
    rules : dict
        The valid values of the method's settings where they differ from
        the shared :data:`~brainmri.models.settings.RULES` (setting name ->
        :class:`~brainmri.models.settings.Rule`).
    """

    name: str
    builder: Callable
    summary: str
    reference: str
    family: str = "classical"
    default_cv: int = DEFAULT_CV
    search_space: dict | None = None
    inputs: str = "slices"
    rules: dict = dataclasses.field(default_factory=dict)

    def settings(self) -> dict:
        """The method's own settings (the builder's keywords beyond the common ones) and their defaults."""
        return {
            name: p.default
            for name, p in inspect.signature(self.builder).parameters.items()
            if p.kind is p.KEYWORD_ONLY and name not in COMMON_KWARGS
        }

    def rule(self, name: str) -> Rule | None:
        """The valid values of the setting ``name`` (None when no rule declares them)."""
        return self.rules.get(name, RULES.get(name))

    def check_params(self, params: dict | None) -> None:
        """Refuse settings the method does not have or values outside their rules, and a deep method without torch.

        Raises
        ------
        ConfigError
        """
        if self.family == "deep":
            # find_spec, not import: loading a bundle to predict through its ONNX export needs no torch.
            if importlib.util.find_spec("torch") is None:
                raise ConfigError(
                    f"method {self.name} needs PyTorch, which is not installed; "
                    "install it with: pip install 'brainmri[deep]'"
                )
        unknown = sorted(set(params or {}) - set(self.settings()))
        if unknown:
            valid = ", ".join(self.settings()) or "none"
            raise ConfigError(
                f"--params {self.name}.{unknown[0]}: {self.name} has no setting {unknown[0]!r}; its settings: {valid}"
            )
        for name, value in (params or {}).items():
            rule = self.rule(name)
            if rule is not None:
                check_setting(self.name, name, value, rule)

    def build(
        self,
        *,
        seed: int = 0,
        n_jobs: int = 1,
        cache_dir=None,
        preprocess=None,
        work_dir=None,
        device: str = "auto",
        params: dict | None = None,
    ):
        """An unfitted instance of the method with ``params`` (checked by :meth:`check_params`)."""
        self.check_params(params)
        return self.builder(
            seed=seed,
            n_jobs=n_jobs,
            cache_dir=cache_dir,
            preprocess=preprocess,
            work_dir=work_dir,
            device=device,
            **(params or {}),
        )


#: Keywords every builder takes; the others are the method's settings.
COMMON_KWARGS = ("seed", "n_jobs", "cache_dir", "preprocess", "work_dir", "device")


_REGISTRY: dict[str, MethodSpec] = {}


def registered() -> dict[str, MethodSpec]:
    """The methods registered so far, by name (:mod:`brainmri.models.catalog` imports them all)."""
    return dict(_REGISTRY)


def register_method(
    name: str,
    *,
    summary: str,
    reference: str,
    family: str = "classical",
    default_cv: int = DEFAULT_CV,
    search_space: dict | None = None,
    inputs: str = "slices",
    rules: dict | None = None,
):
    """Decorator registering a builder under ``name`` (arguments as in :class:`MethodSpec`)."""

    def decorate(builder: Callable) -> Callable:
        if name in _REGISTRY:
            raise ValueError(f"method {name!r} is registered twice")
        _REGISTRY[name] = MethodSpec(
            name, builder, summary, reference, family, default_cv, search_space, inputs, dict(rules or {})
        )
        return builder

    return decorate
