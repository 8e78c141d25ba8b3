"""The shortcut audit: how well a collection's labels follow from what is not anatomy.

A model scored on images from the same sources as its training images can
learn the sources instead of the disease: the hospital's marker, the file
format of one class's publisher, a scanner's noise. Zech et al. (2018)
found that a pneumonia network identified the hospital a chest radiograph
came from, and that its accuracy fell on another hospital's images; DeGrave
et al. (2021) found COVID-19 detectors reading text markers and the borders
around the lungs. This audit follows their approach and asks the question
before any model is trained: for each group of properties of
:mod:`brainmri.features.provenance` (file metadata, acquisition descriptors,
estimated contrast, the background with the head blacked out), a random
forest predicts the label from those properties alone, scored by grouped
cross-validation (no near-duplicate or look-alike group on both sides) and
set against chance. Labels that follow from such properties mean that a
score on this collection may measure its sources, and that a model needs
testing on another source (``benchmark --test-data``).

A property group is *flagged* when the lower end of the 95% interval of its
balanced accuracy lies more than :data:`MARGIN` above chance (1 / number of
classes). The estimated contrast is reported but never flagged by itself: a
lesion changes the head's intensities too, so on synthetic images whose
labels follow from the lesion alone it scores well above chance.

References
----------
J. R. Zech, M. A. Badgeley, M. Liu, A. B. Costa, J. J. Titano and E. K. Oermann,
"Variable generalization performance of a deep learning model to detect pneumonia in chest radiographs: a
cross-sectional study", PLOS Medicine 15(11):e1002683, 2018. https://doi.org/10.1371/journal.pmed.1002683

A. J. DeGrave, J. D. Janizek and S.-I. Lee, "AI for radiographic COVID-19 detection selects shortcuts over signal",
Nature Machine Intelligence 3:610-619, 2021. https://doi.org/10.1038/s42256-021-00338-7
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from brainmri.evaluation.metrics import bootstrap_ci, classification_metrics
from brainmri.features.provenance import CATEGORICAL, GROUPS, INFORMATIONAL, NAMES, FileProperties, file_properties

#: How far above chance the lower end of the balanced accuracy's interval must lie for a group to be flagged.
MARGIN = 0.10
#: Folds of the grouped cross-validation.
FOLDS = 5
#: The property groups studied, each a list of :data:`~brainmri.features.provenance.GROUPS` names; "together"
#: joins those that anatomy does not move.
SETS = {**{name: [name] for name in GROUPS}, "together": [name for name in GROUPS if name not in INFORMATIONAL]}
#: Below this many items the forests run in one thread (threads cost more than they save on small data).
SMALL = 2000


def measure_files(
    paths: Sequence[str | Path],
    *,
    n_jobs: int = -1,
    progress: Callable[[int], None] | None = None,
    max_pixels: int | None = None,
) -> list[FileProperties | None]:
    """:func:`~brainmri.features.provenance.file_properties` of every file, in parallel (None for a file that cannot
    be read)."""
    from joblib import Parallel, delayed

    chunks = [list(paths[s : s + 64]) for s in range(0, len(paths), 64)]
    if n_jobs == 1 or len(chunks) <= 1:
        results = (_measure_chunk(c, max_pixels) for c in chunks)
    else:
        results = Parallel(n_jobs=n_jobs, return_as="generator")(delayed(_measure_chunk)(c, max_pixels) for c in chunks)
    out: list[FileProperties | None] = []
    for chunk in results:
        out += chunk
        if progress:
            progress(len(chunk))
    return out


def _measure_chunk(paths: list, max_pixels: int | None) -> list[FileProperties | None]:
    from brainmri.errors import DataError

    out = []
    for path in paths:
        try:
            out.append(file_properties(path, max_pixels=max_pixels))
        except DataError:
            out.append(None)
    return out


def shortcut_study(
    properties: Sequence[FileProperties | None],
    labels: Sequence[str],
    groups: Sequence[int],
    *,
    seed: int = 0,
    n_jobs: int = -1,
    n_boot: int = 200,
) -> dict:
    """Score, for each property group, a random forest that predicts ``labels`` from those properties alone.

    Parameters
    ----------
    properties : sequence of FileProperties or None
        One per item (:func:`measure_files`); items without (unreadable) are left out.
    labels : sequence of str
    groups : sequence of int
        Group of every item (near-duplicate or look-alike group): a group is never on both sides of a fold.
    seed : int
        Seeds the folds, the forests and the bootstrap: the same seed gives the same figures.

    Returns
    -------
    dict
        ``classes``, ``n_items``, ``folds``, ``chance`` (balanced accuracy and accuracy of a constant guess),
        ``sets`` (per set: ``balanced_accuracy`` and ``accuracy`` with 95% intervals, ``recall`` per class,
        ``top_properties``, ``flagged``), ``by_class`` (the categorical properties' shares per class),
        ``flagged`` (names of the flagged sets) and ``verdict`` (one sentence); or ``skipped`` with the reason.
    """
    keep = np.array([p is not None for p in properties], dtype=bool)
    y = np.asarray(labels, dtype=str)[keep]
    g = np.asarray(groups)[keep]
    kept = [p for p in properties if p is not None]
    classes = sorted(set(y.tolist()))
    n_groups = min((len(set(g[y == c].tolist())) for c in classes), default=0)
    if len(classes) < 2 or n_groups < 2:
        reason = "fewer than 2 classes" if len(classes) < 2 else "a class has fewer than 2 groups"
        return {"skipped": f"{reason}: the labels cannot be cross-validated"}
    folds = min(FOLDS, n_groups)
    X = np.stack([p.values for p in kept])
    counts = Counter(y.tolist())
    out = {
        "classes": classes,
        "n_items": int(len(y)),
        "folds": folds,
        "grouping": "look-alike groups (copies and look-alikes never on both sides)",
        "chance": {"balanced_accuracy": 1 / len(classes), "accuracy": max(counts.values()) / len(y)},
        "sets": {},
    }
    jobs = 1 if len(y) < SMALL else n_jobs
    for name, members in SETS.items():
        columns = [NAMES.index(c) for group in members for c in GROUPS[group]]
        block = _score_set(X[:, columns], y, g, classes, folds, seed, jobs, n_boot, columns)
        block["informational"] = name in INFORMATIONAL
        block["flagged"] = block["flagged"] and not block["informational"]
        out["sets"][name] = block
    out["by_class"] = _by_class(kept, y, classes)
    single = [name for name in GROUPS if out["sets"][name]["flagged"]]
    out["flagged"] = single or (["together"] if out["sets"]["together"]["flagged"] else [])
    out["verdict"] = _verdict(out)
    return out


def _score_set(X, y, g, classes, folds, seed, n_jobs, n_boot, columns) -> dict:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedGroupKFold

    proba = np.zeros((len(y), len(classes)))
    importance = np.zeros(X.shape[1])
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    for train, test in splitter.split(X, y, g):
        forest = RandomForestClassifier(n_estimators=100, min_samples_leaf=2, random_state=seed, n_jobs=n_jobs)
        forest.fit(X[train], y[train])
        cols = [classes.index(c) for c in forest.classes_]
        proba[np.ix_(test, cols)] = forest.predict_proba(X[test])
        importance += forest.feature_importances_ / folds
    scores = classification_metrics(y.tolist(), proba, classes)
    ci = bootstrap_ci(y.tolist(), proba, classes, groups=g, n_boot=n_boot, seed=seed)
    chance = 1 / len(classes)
    block = {
        metric: {"value": scores["metrics"][metric], "ci_low": ci[metric][0], "ci_high": ci[metric][1]}
        for metric in ("balanced_accuracy", "accuracy")
    }
    block["recall"] = {c: scores["per_class"][c]["sensitivity"] for c in classes}
    block["top_properties"] = _top_properties(importance, columns)
    block["flagged"] = bool(ci["balanced_accuracy"][0] > chance + MARGIN)
    return block


def _top_properties(importance: np.ndarray, columns: list[int], k: int = 5) -> list[dict]:
    """The ``k`` properties the forests split on most (impurity importance; the 256 background pixels as one)."""
    names = [NAMES[c] for c in columns]
    merged: dict[str, float] = {}
    for name, value in zip(names, importance, strict=True):
        key = "background thumbnail" if name.startswith("bg_pixel_") else name
        merged[key] = merged.get(key, 0.0) + float(value)
    ranked = sorted(merged.items(), key=lambda kv: -kv[1])[:k]
    return [{"property": name, "importance": round(value, 4)} for name, value in ranked]


def _by_class(kept: list[FileProperties], y: np.ndarray, classes: list[str]) -> dict:
    """Per categorical property: each class's shares of its 3 commonest values, and Cramér's V of the table."""
    out = {}
    for prop in CATEGORICAL:
        values = np.array([p.labels[prop] for p in kept])
        levels = sorted(set(values.tolist()))
        if len(levels) < 2:
            continue
        table = np.array([[np.sum((y == c) & (values == v)) for v in levels] for c in classes], dtype=float)
        shares = {
            c: {
                levels[j]: round(float(table[i, j] / table[i].sum()), 4)
                for j in np.argsort(-table[i], kind="stable")[:3]
                if table[i, j] > 0
            }
            for i, c in enumerate(classes)
        }
        out[prop] = {"cramers_v": round(_cramers_v(table), 4), "shares": shares}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["cramers_v"]))


def _cramers_v(table: np.ndarray) -> float:
    from scipy.stats.contingency import association

    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if min(table.shape) < 2:
        return 0.0
    return float(association(table.astype(np.int64), method="cramer"))


def _verdict(out: dict) -> str:
    chance = out["chance"]["balanced_accuracy"]
    contrast = out["sets"]["contrast"]["balanced_accuracy"]
    note = (
        f" The estimated contrast predicts the labels too (balanced accuracy {contrast['value']:.2f}); lesions move it"
        " as well, so read its per-class shares (by_class) before calling it a shortcut."
        if contrast["ci_low"] > chance + MARGIN
        else ""
    )
    if not out["flagged"]:
        best = max(
            (kv for kv in out["sets"].items() if not kv[1]["informational"]),
            key=lambda kv: kv[1]["balanced_accuracy"]["value"],
        )
        return (
            f"no shortcut found: no property group but the contrast predicts the labels clearly above chance "
            f"(best: {best[0]}, balanced accuracy {best[1]['balanced_accuracy']['value']:.2f} against {chance:.2f})."
            + note
        )
    parts = [
        f"{name} {out['sets'][name]['balanced_accuracy']['value']:.2f}"
        f" ({', '.join(t['property'] for t in out['sets'][name]['top_properties'][:3])})"
        for name in out["flagged"]
    ]
    return (
        f"the labels follow from what is not anatomy: balanced accuracy {'; '.join(parts)} against chance "
        f"{chance:.2f}. A model can score on this collection by recognising its sources; test it on another "
        "source (--test-data)." + note
    )


def format_shortcuts(block: dict) -> list[str]:
    """Terminal lines of a :func:`shortcut_study` block."""
    if "skipped" in block:
        return [f"shortcut audit skipped: {block['skipped']}"]
    chance = block["chance"]
    lines = [
        f"shortcut audit: the label predicted from what is not anatomy (random forest, grouped {block['folds']}-fold "
        f"CV over {block['grouping'].split(' (')[0]}; chance: balanced accuracy {chance['balanced_accuracy']:.2f}, "
        f"accuracy {chance['accuracy']:.2f})",
        f"  {'properties':<15} {'balanced acc. [95% CI]':<24} {'accuracy':<9} carried by",
    ]
    for name, s in block["sets"].items():
        ba = s["balanced_accuracy"]
        mark = "  SHORTCUT" if name in block["flagged"] else ("  (lesions move it too)" if s["informational"] else "")
        top = ", ".join(t["property"] for t in s["top_properties"][:3])
        lines.append(
            f"  {name:<15} {ba['value']:.3f} [{ba['ci_low']:.3f}, {ba['ci_high']:.3f}]   "
            f"{s['accuracy']['value']:<9.3f} {top}{mark}"
        )
    for prop, info in list(block["by_class"].items())[:3]:
        per_class = "; ".join(
            f"{c} " + ", ".join(f"{v} {share:.0%}" for v, share in list(shares.items())[:2])
            for c, shares in info["shares"].items()
        )
        lines.append(f"  by class, {prop} (Cramér's V {info['cramers_v']:.2f}): {per_class}")
    lines.append(f"  {block['verdict']}")
    return lines
