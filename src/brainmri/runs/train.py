"""``brainmri train``: audit DATA, train one method on all of it, measure its internal validation, write a bundle.

The items are read, relabelled, audited and grouped as ``brainmri benchmark``
does (:mod:`brainmri.runs.plan`), so that the method's own inner validation
never splits a group; the bundle format is :mod:`brainmri.models.bundle`'s.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from brainmri.data.audit import audit_report
from brainmri.data.cache import MemoryCache
from brainmri.data.dataset import load_dataset
from brainmri.data.extra import format_extra
from brainmri.data.io import size_and_channels
from brainmri.data.preprocess import Preprocess
from brainmri.data.splits import group_labels
from brainmri.errors import ConfigError, DataError
from brainmri.evaluation.metrics import classification_metrics
from brainmri.features.extract import precompute_features
from brainmri.files import check_output_folder
from brainmri.models.bundle import Bundle, check_bundle_target, save_bundle
from brainmri.models.catalog import get_method
from brainmri.models.inputs import fitted_preprocess, input_size
from brainmri.models.manifest import BUNDLE_FORMAT, FORMAT_VERSION, library_versions
from brainmri.models.validation import check_class_counts, inner_splits
from brainmri.models.versions import code_versions
from brainmri.robust.ood import fit_ood
from brainmri.runs.config import TrainConfig
from brainmri.runs.reading import (
    audit_summary,
    check_extra_listing,
    item_sources,
    read_extra_data,
    read_training_data,
)
from brainmri.runs.unit import epoch_lines
from brainmri.steps import final_step
from brainmri.timing import Stopwatch
from brainmri.training.device import resolve_device
from brainmri.version import __version__

logger = logging.getLogger(__name__)


def _image_kinds(records) -> dict[str, dict[str, int]]:
    """Sizes (``HxW``, ``XxYxZ`` for volumes), channel counts and Pillow modes (or DICOM photometry) of scanned
    images, with counts."""
    kinds = [size_and_channels(tuple(r.shape), str(r.mode)) for r in records]
    return {
        "image_sizes": dict(Counter(size for size, _ in kinds).most_common()),
        "channels": dict(Counter(channels for _, channels in kinds).most_common()),
        "modes": dict(Counter(str(r.mode) for r in records).most_common()),
    }


def internal_validation(
    build: Callable,
    model,
    paths: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    *,
    seed: int,
    on_event: Callable[[str], None],
) -> dict:
    """How well the method does on training data it did not learn from.

    A method whose final step kept a validation part of the training data
    (``history_``: per-epoch ``val_loss`` and ``val_accuracy``) reports the
    epoch it kept: the highest validation accuracy, ties broken by the lower
    loss (:mod:`brainmri.training.loop`). Any other method is refitted on the
    training part of every grouped inner fold
    (:func:`~brainmri.models.validation.inner_splits`, the folds it calibrates
    on) and scored on the held-out part: out-of-fold metrics of
    :func:`~brainmri.evaluation.metrics.classification_metrics`.

    Returns
    -------
    dict
        ``how`` (in words) and ``metrics``, or ``skipped`` with the reason.
    """
    final = final_step(model)
    history = getattr(final, "history_", None)
    if history:
        best = max(history, key=lambda row: (row["val_accuracy"], -row["val_loss"]))
        return {
            "how": f"validation part of the training data (grouped), epoch {best['epoch']} of {len(history)}: "
            "the best validation accuracy",
            "metrics": {k: v for k, v in best.items() if k.startswith("val_")},
        }
    splits, how = inner_splits(labels, groups, random_state=seed)
    classes = [str(c) for c in model.classes_]
    proba = np.zeros((len(labels), len(classes)))
    try:
        for k, (train, held_out) in enumerate(splits, start=1):
            on_event(f"internal validation: inner fold {k}/{len(splits)}")
            inner = build().fit(paths[train], labels[train], groups=groups[train])
            proba[held_out] = inner.predict_proba(paths[held_out])
    except DataError as exc:
        logger.warning("internal validation skipped: %s", exc)
        return {"skipped": str(exc)}
    scores = classification_metrics([str(v) for v in labels], proba, classes)
    return {
        "how": f"out-of-fold predictions of {how}, the method refitted on each inner training part",
        "metrics": scores["metrics"],
        "per_class": scores["per_class"],
        "confusion": scores["confusion"],
    }


def train_bundle(
    config: TrainConfig,
    out: str | Path,
    *,
    n_jobs: int = -1,
    cache_dir: str | Path | None = None,
    on_event: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
    feature_progress: Callable[[int], None] | None = None,
) -> Bundle:
    """Audit DATA, train the method on all of it, measure its internal validation and write a bundle.

    The items are grouped as in ``brainmri benchmark`` (subjects when known,
    else near-duplicate clusters), and the groups reach the method's ``fit``,
    so its own inner validation (calibration, early stopping) never splits a
    group.

    Parameters
    ----------
    config : TrainConfig
    out : path
        The bundle folder: new, empty or an earlier bundle (replaced); never
        inside DATA.
    n_jobs : int
        Worker processes for reading, features and fitting.
    cache_dir : path or None
        Feature cache folder; None keeps features in memory for this run.
    on_event, progress, feature_progress : callable, optional
        One-line messages; counts of images read; counts of images whose
        features were computed.

    Returns
    -------
    Bundle
        The fitted method and the manifest written to ``out/manifest.json``.
    """
    say = on_event or (lambda message: None)
    spec, watch = get_method(config.method), Stopwatch()
    n_files, n_extra = _check_before_reading(config, spec, out, cache_dir)
    say(f"reading and auditing {n_files} files of {config.data}")
    with watch("reading"):
        analysis, paths, labels, groups, sources, grouping, extra = _training_items(
            config, n_extra, n_jobs, progress, say
        )
    check_class_counts(labels, 2, "grouped inner validation", groups=groups)
    cache = str(cache_dir) if cache_dir else MemoryCache()
    build = _builder(spec, config, cache, n_jobs)
    say(f"computing features of {len(paths)} images")
    with watch("features"):
        precompute_features([build()], paths, n_jobs=n_jobs, progress=feature_progress)
    say(f"training {config.method} on {len(paths)} images ({len(np.unique(groups))} groups: {grouping})")
    with watch("training"), epoch_lines(config.method, say):
        model = build().fit(paths, labels, groups=groups, sources=sources)
    say(f"calibrating the out-of-distribution score on the {len(paths)} training images")
    with watch("ood"):
        ood = fit_ood(
            model, paths, labels, seed=config.seed, acquisition=spec.inputs == "slices", cache_dir=cache, n_jobs=n_jobs
        )
    with watch("validation"):
        validation = (
            internal_validation(build, model, paths, labels, groups, seed=config.seed, on_event=say)
            if config.validate
            else {"skipped": "not asked for (--no-validation)"}
        )
    training = {
        "grouping": grouping,
        "n_groups": int(len(np.unique(groups))),
        "fit_s": round(watch.seconds["training"], 2),
        **({"extra_data": extra.info} if extra is not None else {}),
    }
    with watch("writing"):
        manifest = _manifest(config, spec, model, analysis, training, validation, ood)
        manifest["training_data"]["timing_s"] = watch.report()  # up to the writing of the bundle, which holds it
        manifest = save_bundle(model, out, manifest, ood=ood)
    say(f"wrote the bundle {out}")
    bundle = Bundle(model, manifest, Path(out), ood)
    bundle.timing_s = watch.report()
    return bundle


def _builder(spec, config: TrainConfig, cache, n_jobs: int) -> Callable:
    """A function that builds the method unfitted, with the settings of ``config`` (``--nproc`` included)."""

    def build():
        model = spec.build(
            seed=config.seed,
            n_jobs=n_jobs,
            cache_dir=cache,
            preprocess=config.preprocess,
            device=config.device,
            params=config.params,
        )
        if config.processes > 1:
            final_step(model).set_params(processes=config.processes)
        return model

    return build


def _training_items(config: TrainConfig, n_extra: int, n_jobs: int, progress, say) -> tuple:
    """DATA read and audited; the paths, labels, groups and sources of its items, with ``--extra-data`` appended (its
    groups apart); the grouping; the extra data."""
    analysis = read_training_data(config, methods=[config.method], option="--method", n_jobs=n_jobs, progress=progress)
    paths, labels = np.array([str(it.path) for it in analysis.dataset.items]), analysis.dataset.labels.astype(str)
    groups, grouping = group_labels(analysis, "auto")
    extra = None
    if config.extra_data:
        say(f"reading and auditing {n_extra} files of {config.extra_data}")
        extra = read_extra_data(
            config,
            config.extra_data,
            config.extra_label_map,
            analysis.dataset.classes,
            [analysis],
            n_jobs=n_jobs,
            progress=progress,
        )
        say(format_extra(extra.info))
        paths, labels = np.concatenate([paths, extra.paths]), np.concatenate([labels, extra.labels])
        groups = np.concatenate([groups, extra.groups + np.max(groups) + 1])
    sources = item_sources(analysis.dataset, extra_data=config.extra_data, n_extra=len(paths) - len(analysis.dataset))
    return analysis, paths, labels, groups, sources, grouping, extra


def _check_before_reading(config: TrainConfig, spec, out, cache_dir) -> tuple[int, int]:
    """Refuse, before any image is read, what would fail later; the files listed in DATA and in ``--extra-data``."""
    spec.check_params(config.params)
    if spec.family == "deep":  # refuse --device cuda without a GPU before reading anything
        resolve_device(config.device)
    if config.processes > 1 and "processes" not in final_step(spec.build(params=config.params)).get_params():
        raise ConfigError(
            f"--nproc {config.processes}: {config.method} trains no network in brainmri's training loop; "
            "leave --nproc out (its --jobs spreads its work over processes)"
        )
    inputs = [config.data, *([config.extra_data] if config.extra_data else [])]
    check_bundle_target(out, inputs=inputs)
    if cache_dir:
        check_output_folder(cache_dir, "--cache-dir", inputs=inputs)
    dataset = load_dataset(config.data, **config.listing())
    n_extra = (
        check_extra_listing(config, config.extra_data, config.extra_label_map, dataset.classes)
        if config.extra_data
        else 0
    )
    return len(dataset), n_extra


def _manifest(config: TrainConfig, spec, model, analysis, training: dict, validation: dict, ood) -> dict:
    """The bundle's ``manifest.json`` (without ``files``, which :func:`~brainmri.models.bundle.save_bundle` adds)."""
    ds = analysis.dataset
    return {
        "format": BUNDLE_FORMAT,
        "format_version": FORMAT_VERSION,
        "brainmri_version": __version__,
        "created": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "method": {
            "name": spec.name,
            "family": spec.family,
            "summary": spec.summary,
            "reference": spec.reference,
            "params": dict(config.params),
            "fitted": dict(getattr(model, "params_", {})),
        },
        "classes": [str(c) for c in model.classes_],
        "preprocess": {**fitted_preprocess(model, config.preprocess).to_dict(), "version": Preprocess.version},
        "input_size": input_size(model, config.preprocess),
        "versions": code_versions(),
        "config": config.to_dict(),
        "training_data": {
            "path": str(ds.root),
            "n_items": len(ds),
            "counts": ds.counts(),
            "grouping": training["grouping"],
            "n_groups": training["n_groups"],
            **_image_kinds(analysis.records),
            "fit_s": training["fit_s"],
            **({"extra_data": training["extra_data"]} if "extra_data" in training else {}),
        },
        "audit": audit_summary(audit_report(analysis)),
        "validation": validation,
        "ood": ood.summary(),
        "libraries": library_versions(),
    }
