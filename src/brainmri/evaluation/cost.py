"""What a method costs, next to what it scores: parameters, training time and inference speed.

Mehnatkesh et al. (2023) chose among pretrained backbones by accuracy and by
size and speed; ``brainmri benchmark`` records the same for every method,
through the method interface only (:mod:`brainmri.models.registry`):

* **parameters**: the weights of a fitted method's networks, trainable
  (changed by ``fit``) and total, summed over the parts of the method that
  report them through the optional hook ``n_parameters_`` (a pipeline's
  steps, and the extractors of a feature step). Methods without a network
  (the classical ones) report none, shown as ``-``; the classifier on the
  frozen embeddings of ``transfer-features`` is not counted either (its
  network has 0 trainable weights);
* **training time**: the seconds of ``fit`` per fold. Features that the
  benchmark computes once for all methods before the first fit (and reads
  from the feature cache) are not part of it;
* **inference speed**: images per second of ``predict_proba`` on up to
  :data:`SPEED_ITEMS` test items of each fold, from the image file to the
  probabilities, with every feature cache of the method turned off (so
  reading, preprocessing and feature extraction are counted, as for a new
  image). Loading the model is not.

References
----------
S. Mehnatkesh, S. M. J. Jalali, A. Khosravi and S. Nahavandi, "An intelligent
driven deep residual learning framework for brain tumor classification using
MRI images", Expert Systems with Applications 213:119087, 2023.
DOI: 10.1016/j.eswa.2022.119087
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from brainmri.steps import all_steps

#: Test items of each fold whose prediction is timed, without feature cache, for the inference speed.
SPEED_ITEMS = 64


def count_parameters(model) -> dict | None:
    """Network weights of a fitted method: ``{"trainable": int, "total": int}``, or None without a network.

    Parameters
    ----------
    model : estimator
        A fitted method; its parts (the method itself, a pipeline's steps
        and the extractors of a step that has ``extractors``) may report
        their weights through an ``n_parameters_`` attribute of the same form.

    Examples
    --------
    >>> from sklearn.svm import SVC
    >>> count_parameters(SVC()) is None
    True
    """
    parts = all_steps(model)
    parts += [ex for part in parts for _, ex in getattr(part, "extractors", [])]
    counts = [part.n_parameters_ for part in parts if hasattr(part, "n_parameters_")]
    if not counts:
        return None
    return {key: int(sum(c[key] for c in counts)) for key in ("trainable", "total")}


def speed_sample(test: np.ndarray, n: int = SPEED_ITEMS) -> np.ndarray:
    """At most ``n`` items of ``test``, evenly spread over it (so over its classes when it is sorted by class).

    >>> speed_sample(np.arange(10), 3).tolist()
    [0, 4, 9]
    """
    test = np.asarray(test)
    if len(test) <= n:
        return test
    return test[np.linspace(0, len(test) - 1, n).astype(int)]


@contextmanager
def uncached(model) -> Iterator[None]:
    """Within the block, the steps of ``model`` with a ``cache_dir`` setting compute everything from the images.

    The settings are restored afterwards, also on an error; the fitted
    steps are not refitted (``cache_dir`` only says where features are kept).
    """
    steps = [
        step
        for _, step in getattr(model, "steps", [])
        if hasattr(step, "get_params") and "cache_dir" in step.get_params(deep=False)
    ]  # not "passthrough"
    saved = [step.cache_dir for step in steps]
    try:
        for step in steps:
            step.set_params(cache_dir=None)
        yield
    finally:
        for step, cache_dir in zip(steps, saved, strict=True):
            step.set_params(cache_dir=cache_dir)


def measure_inference(model, paths) -> dict:
    """Time ``model.predict_proba(paths)`` without feature cache: ``{"images", "seconds", "images_per_s"}``.

    Parameters
    ----------
    model : estimator
        A fitted method (or its test-time adapted copy, which adapts as part
        of the prediction).
    paths : array-like of str
        Image files (e.g. :func:`speed_sample` of a fold's test items).
    """
    with uncached(model):
        start = time.perf_counter()
        model.predict_proba(paths)
        seconds = time.perf_counter() - start
    return {
        "images": len(paths),
        "seconds": round(seconds, 4),
        "images_per_s": round(len(paths) / seconds, 3) if seconds > 0 else None,
    }


def cost_entry(units: list[dict]) -> dict:
    """The ``cost`` block of a method in results.json, from its saved units.

    Returns
    -------
    dict
        ``parameters`` (:func:`count_parameters` of the first fold's model;
        None without a network, or for units saved before it was recorded),
        ``fit_s`` (``total`` over folds and ``per_fold`` mean) and
        ``inference`` (images, seconds and images per second pooled over the
        folds' timed samples; None for units saved without it).
    """
    fit = [u["fit_s"] for u in units]
    timed = [u["inference"] for u in units if u.get("inference")]
    inference = None
    if timed and len(timed) == len(units):
        images, seconds = sum(t["images"] for t in timed), sum(t["seconds"] for t in timed)
        inference = {
            "images": images,
            "seconds": round(seconds, 4),
            "images_per_s": round(images / seconds, 3) if seconds > 0 else None,
        }
    return {
        "parameters": units[0].get("parameters"),
        "fit_s": {"total": round(sum(fit), 2), "per_fold": round(sum(fit) / len(fit), 2)},
        "inference": inference,
    }


def format_parameters(parameters: dict | None) -> str:
    """``trainable / total`` with thousands separators, or ``-`` without a network.

    >>> format_parameters({"trainable": 1290, "total": 3372290})
    '1,290 / 3,372,290'
    """
    if not parameters:
        return "-"
    return f"{parameters['trainable']:,} / {parameters['total']:,}"


def format_cost(results: dict) -> list[str]:
    """The terminal's cost table: one row per method (empty when no method has a ``cost`` block)."""
    costs = {name: e["cost"] for name, e in results["methods"].items() if "cost" in e}
    if not costs:
        return []
    heads = ["method", "parameters (trainable / total)", "fit s (all folds)", "fit s (per fold)", "images/s"]
    rows = [
        [
            name,
            format_parameters(c["parameters"]),
            f"{c['fit_s']['total']:.2f}",
            f"{c['fit_s']['per_fold']:.2f}",
            "-"
            if not c["inference"] or c["inference"]["images_per_s"] is None
            else f"{c['inference']['images_per_s']:.1f}",
        ]
        for name, c in costs.items()
    ]
    widths = [max(len(r[i]) for r in [heads, *rows]) for i in range(len(heads))]
    lines = [
        "cost (parameters: network weights, - without a network; fit: excluding the features computed once for "
        "all methods; images/s: predict from the file, without feature cache):"
    ]
    lines += [
        "  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
        for r in [heads, ["-" * w for w in widths], *rows]
    ]
    return lines
