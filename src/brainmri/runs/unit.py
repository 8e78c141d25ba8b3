"""One unit of a benchmark: one method fitted on one split's training items and tested on its test items.

A unit is saved as it finishes (test items, probabilities, OOD scores,
shifted tests, timings) under ``OUT/units/METHOD/FOLD.json``, so that an
interrupted run resumes from the finished units; metrics, tests and the
report are recomputed from the saved units every time
(:mod:`brainmri.runs.summary`).
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from brainmri.data.splits import Split
from brainmri.evaluation.cost import count_parameters, measure_inference, speed_sample
from brainmri.evaluation.shift import predict_shifted, shift_subset
from brainmri.explain.examples import explain_examples
from brainmri.models.catalog import get_method
from brainmri.robust.adapt import adapt_model
from brainmri.robust.ood import fit_ood, predict_with_ood
from brainmri.runs.config import BenchmarkConfig
from brainmri.runs.plan import Plan
from brainmri.steps import final_step
from brainmri.training.loop import epoch_listener


def unit_path(out: Path, method: str, fold: str) -> Path:
    return out / "units" / method / f"{fold}.json"


def run_unit(
    config: BenchmarkConfig,
    plan: Plan,
    method: str,
    split: Split,
    *,
    n_jobs: int,
    cache_dir,
    work_dir: Path | None = None,
    device: str = "auto",
    on_event: Callable[[str], None] | None = None,
) -> dict:
    """Fit one method on one split's training items and predict its test items.

    ``cache_dir`` is a feature cache folder, the run's ``MemoryCache`` or None;
    ``work_dir`` a folder for the method's resumable state (checkpoints).
    A fitted method whose final step has ``history_`` (per-epoch records)
    gets it stored in the unit. The unit also holds the out-of-distribution
    score and distance of every test item (:mod:`brainmri.robust.ood`,
    calibrated on the split's training items); with ``config.adapt``, the
    test items are predicted by the method adapted to them
    (:mod:`brainmri.robust.adapt`), and with several adaptations the
    unit's ``adapted`` holds the predictions of each further one (the same
    fitted network; :func:`split_adapted`). The unit records the method's network
    weights and its inference speed (:mod:`brainmri.evaluation.cost`).
    With ``config.shift``, the unit also holds
    the probabilities of (a stratified sample of) the test items under each
    shift and severity (:mod:`brainmri.evaluation.shift`), and ``on_event``
    receives a line per shift.
    """
    model, ood, fit_s, ood_s = _fit(config, plan, split, method, n_jobs, cache_dir, work_dir, device)
    modes = config.adapt_modes
    predictor = adapt_model(model, modes[0], name=method)
    tested = _test_predictions(config, plan, split, predictor, ood, on_event=on_event)
    proba = tested.pop("proba")
    inference = measure_inference(predictor, plan.paths[speed_sample(split.test)])
    history = getattr(final_step(model), "history_", None)
    unit = {
        "method": method,
        "fold": split.name,
        "test": split.test.tolist(),
        "classes": [str(c) for c in model.classes_],
        "proba": np.round(proba, 6).tolist(),
        "fit_s": fit_s,
        "predict_s": tested.pop("predict_s"),
        "params": dict(getattr(model, "params_", {})),
        "parameters": count_parameters(model),
        "inference": inference,
        **({"history": history} if history is not None else {}),
        "ood": {**ood.summary(), "fit_s": ood_s, **tested.pop("ood")},
        **tested,
    }
    if len(modes) > 1:  # the same network, adapted each other way: reported as methods of their own
        unit["adapted"] = {
            mode: _adapted_predictions(config, plan, split, adapt_model(model, mode, name=method), ood, on_event)
            for mode in modes[1:]
        }
    if split.name == plan.splits[0].name:
        unit.update(_report_pictures(config, plan, split, model, method, proba))
    return unit


def _fit(config: BenchmarkConfig, plan: Plan, split: Split, method: str, n_jobs, cache_dir, work_dir, device) -> tuple:
    """The method fitted on the split's training items, its OOD score calibrated there, and the seconds each took."""
    spec = get_method(method)
    model = spec.build(
        seed=config.seed,
        n_jobs=n_jobs,
        cache_dir=cache_dir,
        preprocess=config.preprocess,
        work_dir=work_dir,
        device=device,
        params=config.method_params(method),
    )
    start = time.perf_counter()
    # Every method gets the outer split's groups, so its inner splits keep them together too.
    sources = None if plan.sources is None else plan.sources[split.train]
    model.fit(plan.paths[split.train], plan.labels[split.train], groups=plan.groups[split.train], sources=sources)
    fitted = time.perf_counter()
    ood = fit_ood(
        model,
        plan.paths[split.train],
        plan.labels[split.train],
        seed=config.seed,
        acquisition=spec.inputs == "slices",
        cache_dir=cache_dir,
        n_jobs=n_jobs,
    )
    calibrated = time.perf_counter()
    return model, ood, round(fitted - start, 3), round(calibrated - fitted, 3)


def _adapted_predictions(config: BenchmarkConfig, plan: Plan, split: Split, adapted, ood, on_event) -> dict:
    """The test predictions of the unit's network adapted another way (``unit["adapted"][mode]``)."""
    other = _test_predictions(config, plan, split, adapted, ood, on_event=on_event)
    return {**other, "proba": np.round(other["proba"], 6).tolist()}


def _report_pictures(config: BenchmarkConfig, plan: Plan, split: Split, model, method: str, proba) -> dict:
    """The first fold's pictures for the report: the method's illustrations (optional hook) and explained examples."""
    pictures = {}
    # The optional hook of the method interface: pictures of what the method computes, for the report.
    if hasattr(model, "illustrate"):
        pictures["illustrations"] = _illustrations(model, plan, split)
    pictures["explanations"] = [
        {
            "caption": f"{plan.rel[split.test[e['index']]]}: {e['caption']}",
            "png": base64.b64encode(e["png"]).decode(),
        }
        for e in explain_examples(
            model,
            plan.paths[split.test],
            plan.labels[split.test],
            proba,
            method=method,
            preprocess=config.preprocess,
            max_pixels=config.max_pixels,
        )
    ]
    return pictures


def _test_predictions(
    config: BenchmarkConfig, plan: Plan, split: Split, predictor, ood, *, on_event: Callable[[str], None] | None = None
) -> dict:
    """What ``predictor`` says of a split's test items: probabilities, OOD scores and, with ``--shift``, shifted tests.

    Returns the unit entries ``proba`` (an array, not rounded yet), ``predict_s``,
    ``ood`` (``score`` and ``distance``) and, with ``config.shift``, ``shift``
    and ``shift_s``.
    """
    start = time.perf_counter()
    proba, distance = predict_with_ood(predictor, ood, plan.paths[split.test])
    done = time.perf_counter()
    tested = {
        "proba": proba,
        "predict_s": round(done - start, 3),
        "ood": {"score": np.round(ood.score_distance(distance), 4).tolist(), "distance": _round(distance)},
    }
    if config.shift:
        items = shift_subset(plan.labels, split.test, config.shift_max_items, seed=config.seed)
        shifted, distances = predict_shifted(
            predictor,
            plan.paths[items],
            config.shift,
            config.shift_severities,
            seed=config.seed,
            max_pixels=config.max_pixels,
            ood=ood,
            on_event=on_event,
        )
        tested["shift"] = {
            "test": items.tolist(),
            "proba": {name: {s: np.round(p, 6).tolist() for s, p in by.items()} for name, by in shifted.items()},
            "distance": {name: {s: _round(d) for s, d in by.items()} for name, by in distances.items()},
        }
        tested["shift_s"] = round(time.perf_counter() - done, 3)
    return tested


def adapted_name(method: str, mode: str) -> str:
    """The results key of ``method`` tested with the test-time adaptation ``mode`` next to others.

    >>> adapted_name("transfer-finetune", "adabn"), adapted_name("transfer-finetune", "none")
    ('transfer-finetune+adabn', 'transfer-finetune')
    """
    return method if mode == "none" else f"{method}+{mode}"


def split_adapted(config: BenchmarkConfig, units: dict[str, list[dict]]) -> dict[str, list[dict]]:
    """Units of a run with several ``--adapt`` modes, one list per method and mode (:func:`adapted_name`).

    The first mode's predictions are the unit's own; each other mode's
    replace them (probabilities, OOD scores, shifted tests and the time
    to predict) in a copy that keeps the training record (fit time,
    weights, history, inference speed) and no pictures. With one mode,
    ``units`` as they are.
    """
    modes = config.adapt_modes
    if len(modes) == 1:
        return units
    out: dict[str, list[dict]] = {}
    for method, us in units.items():
        out[adapted_name(method, modes[0])] = [{k: v for k, v in u.items() if k != "adapted"} for u in us]
        for mode in modes[1:]:
            copies = []
            for u in us:
                tested = u["adapted"][mode]
                copy = {k: v for k, v in u.items() if k not in ("adapted", "illustrations", "explanations")}
                copy.update(
                    {k: v for k, v in tested.items() if k != "ood"},
                    method=adapted_name(method, mode),
                    ood={**u["ood"], **tested["ood"]},
                )
                copies.append(copy)
            out[adapted_name(method, mode)] = copies
    return out


def _round(values: np.ndarray) -> list[float]:
    """Out-of-distribution distances as stored in a unit: 6 significant digits."""
    return [float(f"{v:.6g}") for v in values]


#: Test images of the first fold shown by a method's ``illustrate`` hook in the report (the first of each class).
ILLUSTRATED = 4


def _illustrations(model, plan: Plan, split: Split) -> list[dict]:
    """``model.illustrate`` on the first test item of each class (at most :data:`ILLUSTRATED`), as PNG in base64."""
    from PIL import Image

    first = {}
    for k in split.test:
        first.setdefault(plan.labels[k], k)
    chosen = [first[label] for label in sorted(first)][:ILLUSTRATED]
    pictures = []
    for k, (caption, rgb) in zip(chosen, model.illustrate(plan.paths[chosen]), strict=True):
        buffer = io.BytesIO()
        Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buffer, format="PNG")
        pictures.append(
            {
                "caption": f"{plan.rel[k]} ({plan.labels[k]}): {caption}",
                "png": base64.b64encode(buffer.getvalue()).decode("ascii"),
            }
        )
    return pictures


@contextmanager
def epoch_lines(where: str, say: Callable[[str], None]) -> Iterator[None]:
    """Within the block, each finished training epoch (of any method that trains in epochs) becomes a line."""

    def line(r: dict) -> None:
        say(
            f"{where}: epoch {r['epoch']}/{r['epochs']} train loss {r['train_loss']:.4f}, validation loss "
            f"{r['val_loss']:.4f}, accuracy {r['val_accuracy']:.3f} ({r['seconds']:.1f} s, {r['images_per_s']:.0f} img/s)"
        )

    with epoch_listener(line):
        yield
