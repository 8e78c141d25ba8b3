"""The shift benchmark: each fitted method re-tested on its test images under acquisition-like shifts.

``brainmri benchmark --shift`` fits every method on the clean training part
of each split, as always, then predicts the same test items once more under
every shift of :mod:`brainmri.data.shifts` at each chosen severity. The
shifted images are made in memory from the files as read and handed to the
method as arrays: nothing is written next to the data, and a feature cache
keys them by their pixels (:func:`brainmri.data.cache.item_digest`),
never by the file they came from.

The cost is one prediction per test item, shift and severity (11 shifts x 5
severities = 55 times the clean test), which for the classical methods means
as many feature extractions. ``--shift-severities`` and ``--shift-max-items``
(a stratified sample of each split's test items, the same for every method)
keep it affordable; what was re-tested is recorded in ``results.json``.

Metrics per shift and severity have percentile bootstrap intervals, drawn
over the same groups as the clean metrics. The summary of a method is the
mean over shifts at each severity, compared with the clean score of the
same items (Hendrycks and Dietterich 2019,
https://doi.org/10.48550/arXiv.1903.12261, average their corruption errors
the same way).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from brainmri.data.io import read_image
from brainmri.data.shifts import SHIFTS, shift_image
from brainmri.evaluation.metrics import summarize
from brainmri.robust.ood import embed
from brainmri.steps import split_model

#: Metrics of the shift table, in its order.
SHIFT_METRICS = ("accuracy", "balanced_accuracy", "auc")

#: Names of the severities that summaries single out.
NAMED_SEVERITIES = {3: "medium", 5: "severe"}

#: Test images read, shifted and predicted at a time (times the number of severities).
CHUNK = 32


def shift_subset(labels: np.ndarray, test: np.ndarray, max_items: int | None, *, seed: int) -> np.ndarray:
    """The test items re-tested under shifts: all of them, or a stratified sample of ``max_items``.

    Each class keeps its share of the test items (largest remainders get
    the items left over), drawn at random with ``seed``.

    Parameters
    ----------
    labels : ndarray of str
        Labels of every item of the plan.
    test : ndarray of int
        Indices of the split's test items.
    max_items : int or None
        None (or at least ``len(test)``) keeps every test item.
    seed : int

    Returns
    -------
    ndarray of int
        Sorted indices into ``labels``.

    Examples
    --------
    >>> labels = np.array(["a"] * 6 + ["b"] * 2)
    >>> labels[shift_subset(labels, np.arange(8), 4, seed=0)].tolist()
    ['a', 'a', 'a', 'b']
    """
    test = np.asarray(test, dtype=int)
    if max_items is None or max_items >= len(test):
        return np.sort(test)
    y = labels[test]
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * max_items / len(test)
    take = np.floor(quota).astype(int)
    take[np.argsort(-(quota - take), kind="stable")[: max_items - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(test[y == c], size=n, replace=False) for c, n in zip(classes, take, strict=True)]
    return np.sort(np.concatenate(chosen))


def predict_shifted(
    model,
    paths: Sequence[str],
    shifts: Sequence[str],
    severities: Sequence[int],
    *,
    seed: int,
    max_pixels: int | None = None,
    ood=None,
    on_event: Callable[[str], None] | None = None,
) -> tuple[dict[str, dict[str, np.ndarray]], dict[str, dict[str, np.ndarray]] | None]:
    """Probabilities of a fitted method on the images of ``paths`` under every shift and severity.

    The method's steps before its classifier (feature extraction, image
    preprocessing) run on a few images at a time; its classifier then
    predicts all the items of one shift and severity in one call, so that a
    classifier with test-time adaptation (:mod:`brainmri.robust.adapt`)
    adapts to that shifted test set as a whole.

    Parameters
    ----------
    model
        A fitted method (``predict_proba`` on a list of 2D arrays).
    paths : sequence of str
        Image files, read again for each shift (a few at a time, so memory
        stays bounded).
    shifts : sequence of str
        Names in :data:`brainmri.data.shifts.SHIFTS`.
    severities : sequence of int
    seed : int
        Seed of :func:`brainmri.data.shifts.shift_image`.
    max_pixels : int, optional
        Pixel limit of :func:`brainmri.data.io.read_image`.
    ood : OODDetector, optional
        The method's out-of-distribution detector (:mod:`brainmri.robust.ood`).
    on_event : callable, optional
        Receives one line per shift: its name, the images and the time taken.

    Returns
    -------
    proba : dict
        ``{shift: {str(severity): ndarray (len(paths), n_classes)}}``, columns
        in ``model.classes_`` order.
    distance : dict or None
        ``{shift: {str(severity): ndarray (len(paths),)}}``: the
        out-of-distribution distances (:meth:`~brainmri.robust.ood.OODDetector.distance`), with ``ood``.
    """
    say = on_event or (lambda message: None)
    head, final = split_model(model)
    paths = list(paths)
    out, distances = {}, {}
    for n, name in enumerate(shifts, start=1):
        start = time.perf_counter()
        blocks: dict[int, list] = {s: [] for s in severities}
        described: dict[int, list] = {s: [] for s in severities}
        for first in range(0, len(paths), CHUNK):
            images = [read_image(p, max_pixels=max_pixels)[0] for p in paths[first : first + CHUNK]]
            batch = [shift_image(image, name, s, seed=seed) for s in severities for image in images]
            Xt = head.transform(batch) if head is not None else np.asarray(batch)
            descriptors = ood.describe(batch) if ood is not None else None
            for k, s in enumerate(severities):
                blocks[s].append(Xt[k * len(images) : (k + 1) * len(images)])
                described[s].append(
                    None if descriptors is None else descriptors[k * len(images) : (k + 1) * len(images)]
                )
        Xs = {s: np.concatenate(blocks[s]) for s in severities}
        out[name] = {str(s): final.predict_proba(X) for s, X in Xs.items()}
        if ood is not None:
            distances[name] = {str(s): ood.distance(embed(final, X), _stack(described[s])) for s, X in Xs.items()}
        levels = f"severities {','.join(map(str, severities))}" if len(severities) > 1 else f"severity {severities[0]}"
        say(f"shift {name} ({n}/{len(shifts)}): {len(paths)} images at {levels} in {time.perf_counter() - start:.1f} s")
    return out, (distances if ood is not None else None)


def _stack(blocks: list) -> np.ndarray | None:
    """Row blocks stacked, or None when they are None (a detector without acquisition descriptors)."""
    return None if blocks[0] is None else np.concatenate(blocks)


def ood_auc(clean: np.ndarray, shifted: dict[str, dict[str, np.ndarray]], severity: int) -> dict:
    """How well out-of-distribution distances tell shifted images from clean ones: ROC AUC at ``severity``.

    Parameters
    ----------
    clean : ndarray of shape (n,)
        Distances of the clean test items.
    shifted : dict
        ``{shift: {str(severity): ndarray (n,)}}``, the same items shifted
        (:func:`predict_shifted`).
    severity : int

    Returns
    -------
    dict
        ``pooled``: the AUC of the clean items against every shifted one at
        ``severity`` (1: every shifted image is farther than every clean one;
        0.5: no better than chance); ``per_shift``: the AUC of each shift.

    Examples
    --------
    >>> ood_auc(np.array([1.0, 2.0]), {"blur": {"5": np.array([3.0, 1.5])}}, 5)
    {'pooled': 0.75, 'per_shift': {'blur': 0.75}}
    """
    from sklearn.metrics import roc_auc_score

    def auc(other: np.ndarray) -> float:
        truth = np.r_[np.zeros(len(clean)), np.ones(len(other))]
        return round(float(roc_auc_score(truth, np.r_[clean, other])), 6)

    per_shift = {name: auc(by[str(severity)]) for name, by in shifted.items()}
    pooled = auc(np.concatenate([by[str(severity)] for by in shifted.values()]))
    return {"pooled": pooled, "per_shift": per_shift}


def summarize_shift(
    y_true: Sequence[str],
    clean: np.ndarray,
    shifted: dict[str, dict[str, np.ndarray]],
    classes: Sequence[str],
    *,
    groups=None,
    n_boot: int = 1000,
    seed: int = 0,
) -> dict:
    """Metrics with intervals per shift and severity, the clean ones of the same items, and means over shifts.

    Parameters
    ----------
    y_true : sequence of str
        True labels of the re-tested items.
    clean : ndarray, shape (n, n_classes)
        Their probabilities without a shift.
    shifted : dict
        ``{shift: {str(severity): ndarray (n, n_classes)}}``, as
        :func:`predict_shifted` returns (columns in ``classes`` order).
    classes : sequence of str
    groups, n_boot, seed
        As in :func:`brainmri.evaluation.metrics.summarize`.

    Returns
    -------
    dict
        ``{"n_items": int, "clean": {metric: {"value", "ci_low", "ci_high"}},
        "shifts": {shift: {str(severity): {metric: {...}}}},
        "mean_over_shifts": {"clean" or str(severity): {metric: float}}}``
        for the metrics of :data:`SHIFT_METRICS`.
    """

    def scores(proba) -> dict:
        metrics = summarize(y_true, proba, classes, groups=groups, n_boot=n_boot, seed=seed)["metrics"]
        return {m: metrics[m] for m in SHIFT_METRICS}

    table = {name: {s: scores(p) for s, p in by_severity.items()} for name, by_severity in shifted.items()}
    clean_scores = scores(clean)
    severities = list(next(iter(table.values()))) if table else []
    mean = {"clean": {m: clean_scores[m]["value"] for m in SHIFT_METRICS}}
    for s in severities:
        mean[s] = {m: float(np.mean([table[name][s][m]["value"] for name in table])) for m in SHIFT_METRICS}
    return {"n_items": len(y_true), "clean": clean_scores, "shifts": table, "mean_over_shifts": mean}


def severity_label(severity: int) -> str:
    """``"severity 3 (medium)"``: a severity as reports name it.

    >>> severity_label(5), severity_label(2)
    ('severity 5 (severe)', 'severity 2')
    """
    named = NAMED_SEVERITIES.get(severity)
    return f"severity {severity}" + (f" ({named})" if named else "")


def shift_definitions(names: Sequence[str]) -> dict[str, dict]:
    """What each shift of a run does and its parameter per severity, as written to ``results.json``."""
    return {name: SHIFTS[name].to_dict() for name in names}


def format_shift(results: dict) -> list[str]:
    """Terminal lines: per method, accuracy clean and averaged over the shifts at each severity."""
    entries = {name: e["shift"] for name, e in results["methods"].items() if "shift" in e}
    if not entries:
        return []
    run = results["shift"]
    lines = [
        f"accuracy under {len(run['shifts'])} acquisition shift(s), mean over shifts "
        f"({run['subset']}; points lost against clean):"
    ]
    for name, entry in entries.items():
        mean = entry["mean_over_shifts"]
        clean = mean["clean"]["accuracy"]
        cells = [f"clean {clean:.3f}"]
        for s in run["severities"]:
            value = mean[str(s)]["accuracy"]
            cells.append(f"{severity_label(s)} {value:.3f} ({100 * (value - clean):+.1f})")
        lines.append(f"  {name}: " + ", ".join(cells))
    return lines
