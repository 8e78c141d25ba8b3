"""Every method of brainmri by name: the catalog the runners, tuning, serving and the CLI look methods up in.

This module imports every method module at its top, so that their
``@register_method`` decorators have run (as timm's ``models/__init__.py``
does); :mod:`brainmri.models.registry`, below them, knows none of them. A new
method module is added to the imports here, and the contract test
(``tests/models/test_contract.py``) then checks it with every other method.
"""

from __future__ import annotations

import dataclasses
import re

# Importing the method modules registers their methods.
import brainmri.models.classical  # noqa: F401
import brainmri.models.deep  # noqa: F401
import brainmri.models.hybrid  # noqa: F401
import brainmri.models.transfer  # noqa: F401
from brainmri.errors import ConfigError
from brainmri.models.registry import DEFAULT_CV, MethodSpec, registered


def available_methods() -> dict[str, MethodSpec]:
    """Registered methods by name, sorted."""
    return dict(sorted(registered().items()))


#: What may follow ``@`` in a named configuration (``transfer-features@mobilenet_v2``): it names a folder.
_LABEL = re.compile(r"[A-Za-z0-9_-]+")


def get_method(name: str) -> MethodSpec:
    """The :class:`MethodSpec` registered as ``name``, or a named configuration of it.

    ``method@label`` (``transfer-features@mobilenet_v2``) is the registered
    ``method`` under another name, so that one benchmark can run several
    configurations of a method side by side, each with its own ``--params``
    (``transfer-features@mobilenet_v2.backbone=mobilenet_v2``), units and
    results key. The label is free text (letters, digits, ``_`` and ``-``);
    it sets nothing by itself.

    Raises
    ------
    ConfigError
        Unknown name, or a label with other characters; the message lists
        the valid names.
    """
    methods = available_methods()
    base, at, label = name.partition("@")
    if base not in methods:
        raise ConfigError(f"unknown method {base!r}; valid methods: {', '.join(methods)}")
    if not at:
        return methods[name]
    if not _LABEL.fullmatch(label):
        raise ConfigError(f"method {name!r}: the label after @ must be letters, digits, _ or - (e.g. {base}@config1)")
    return dataclasses.replace(methods[base], name=name)


def default_cv(names) -> int:
    """Folds for ``names`` when ``--cv`` is not given: their common ``default_cv``, else :data:`DEFAULT_CV`.

    A benchmark compares methods on one set of folds, so a method's own
    protocol is followed only when every selected method shares it; the
    benchmark then notes which methods run on another protocol than their
    study's (:func:`protocol_notes`).
    """
    folds = {get_method(name).default_cv for name in names}
    return folds.pop() if len(folds) == 1 else DEFAULT_CV


def protocol_notes(names, folds: int) -> list[str]:
    """A note for the methods of ``names`` whose study used another number of folds than ``folds``."""
    notes = []
    for name in names:
        study = get_method(name).default_cv
        if study != folds:
            notes.append(
                f"{name} was evaluated with {study}-fold cross-validation in its study; this run uses "
                f"{folds} folds, shared by all methods (--cv {study} follows the study)"
            )
    return notes


def check_inputs(names, kinds, option: str = "--methods") -> None:
    """Refuse methods that read another kind of item than the dataset holds.

    A dataset is 3D when its files are: ``kinds`` holds ``"volumes"`` for
    every NIfTI file with three sides above 1 and ``"slices"`` for every
    other image (:func:`~brainmri.data.io.item_kind` of the audit's
    records). Slice methods cannot read volumes nor volume methods slices,
    so a mismatch is refused before anything is trained.

    Raises
    ------
    ConfigError
        The message names the methods that do not fit and those that do.
    """
    kinds = set(kinds)
    if len(kinds) != 1:
        return  # a mixed dataset: each method skips nothing and fails on the items it cannot read
    [kind] = kinds
    misfit = [name for name in names if get_method(name).inputs != kind]
    if misfit:
        fit = [name for name, spec in available_methods().items() if spec.inputs == kind]
        raise ConfigError(
            f"{option} {', '.join(misfit)}: read{'s' * (len(misfit) == 1)} "
            f"{get_method(misfit[0]).inputs}, but DATA holds {kind}; methods for {kind}: {', '.join(fit)}"
        )


def parse_methods(text: str) -> list[str]:
    """Split a comma-separated ``--methods`` value and check every name.

    ``all`` stands for every registered method; ``method@label`` is a named
    configuration of a method (:func:`get_method`).
    """
    names = [n.strip() for n in text.split(",") if n.strip()]
    if names == ["all"]:
        return list(available_methods())
    if not names:
        raise ConfigError(f"--methods needs at least one name; valid methods: {', '.join(available_methods())}")
    for name in names:
        get_method(name)
    twice = next((n for k, n in enumerate(names) if n in names[:k]), None)
    if twice:
        raise ConfigError(
            f"--methods lists {twice} twice: {text}; to compare configurations of one method, "
            f"name each one ({twice}@a,{twice}@b) and give each its --params"
        )
    return names
