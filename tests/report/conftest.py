"""A benchmark outcome to report on: ``results`` shaped like results.json, plus pooled predictions.

``make_benchmark(...)`` builds both from seeded random predictions, so the
confusion matrices, accuracies and calibration agree with the probabilities
drawn.
"""

from __future__ import annotations

import numpy as np
import pytest

from brainmri.evaluation.metrics import summarize

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]
METHODS = {
    "glcm-svm": 0.9,
    "multifeature-rf": 0.8,
    "wavelet-knn": 0.6,
}
REFERENCE_URL = "https://doi.org/10.1000/example.2013"


def _predictions(classes: list[str], skill: float, n_per_class: int, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(len(classes)), n_per_class)
    logits = rng.normal(size=(len(y), len(classes)))
    logits[np.arange(len(y)), y] += 3 * skill
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return {"y_true": [classes[k] for k in y], "proba": proba, "classes": list(classes)}


def _ci(value: float) -> dict:
    return {"value": value, "ci_low": max(value - 0.02, 0.0), "ci_high": min(value + 0.02, 1.0)}


def _method(pred: dict, *, name: str, split: str, folds: int) -> dict:
    classes = pred["classes"]
    scored = summarize(pred["y_true"], pred["proba"], classes, n_boot=1)
    y = np.array([classes.index(t) for t in pred["y_true"]])
    guess = pred["proba"].argmax(axis=1)
    matrix = np.zeros((len(classes), len(classes)), dtype=int)
    np.add.at(matrix, (y, guess), 1)
    accuracy = float(np.mean(guess == y))
    metrics = {
        "accuracy": _ci(accuracy),
        "balanced_accuracy": _ci(accuracy - 0.01),
        "macro_f1": _ci(accuracy - 0.015),
        "auc": _ci(min(accuracy + 0.04, 0.999)),
        "sensitivity": _ci(accuracy - 0.01),
        "specificity": _ci(min(accuracy + 0.05, 0.999)),
        "precision": _ci(accuracy - 0.005),
        "brier": _ci(scored["metrics"]["brier"]["value"]),
        "ece": _ci(scored["metrics"]["ece"]["value"]),
    }
    per_class = {
        c: {
            "sensitivity": matrix[k, k] / matrix[k].sum() if matrix[k].sum() else float("nan"),
            "specificity": 0.95,
            "precision": matrix[k, k] / matrix[:, k].sum() if matrix[:, k].sum() else float("nan"),
            "f1": 0.9,
            "support": int(matrix[k].sum()),
        }
        for k, c in enumerate(classes)
    }
    method = {
        "summary": f"{name}: texture features and a classifier",
        "reference": f"Doe J., Roe R. (2013) A study of {name}. J. Imaging 4:1-9. {REFERENCE_URL}",
        "metrics": metrics,
        "per_class": per_class,
        "confusion": {"labels": classes, "matrix": matrix.tolist()},
        "per_fold": [
            {
                "fold": f"fold{k}",
                "n_train": len(y) - len(y) // folds - k % 2,
                "n_test": len(y) // folds + k % 2,
                "accuracy": accuracy + 0.01 * (k - 1),
                "balanced_accuracy": accuracy,
                "macro_f1": accuracy - 0.01,
                "auc": float("nan") if k == 0 else 0.97,
            }
            for k in range(folds)
        ],
        "timing_s": {"fit": 12.3, "predict": 1.2, "total": 13.5},
        "calibration": scored["calibration"],
        "bootstrap": {
            "method": "percentile",
            "level": 0.95,
            "n_boot": 1000,
            "unit": "groups",
            "n_units": 374,
            "groups": "near-duplicate clusters",
        },
        "params": {"C": 100, "kernel": "rbf"} if "svm" in name else {},
    }
    if split == "official":
        method["metrics_deduplicated"] = {k: _ci(v["value"] - 0.07) for k, v in metrics.items()}
    return method


def build_benchmark(
    *,
    methods: dict[str, float] | None = None,
    classes: list[str] | None = None,
    split: str = "cv",
    n_per_class: int = 30,
) -> tuple[dict, dict]:
    """``(results, predictions)`` of a benchmark of ``methods`` (name -> skill) on ``classes``."""
    methods = METHODS if methods is None else methods
    classes = CLASSES if classes is None else classes
    folds = 5 if split == "cv" else 1
    predictions = {
        name: _predictions(classes, skill, n_per_class, seed) for seed, (name, skill) in enumerate(methods.items())
    }
    names = list(methods)
    counts = {c: n_per_class for c in classes}
    results = {
        "brainmri_version": "0.1.0",
        "created": "2026-11-26T12:00:00Z",
        "config": {
            "data": "/data/brain-tumor-mri",
            "methods": names,
            "seed": 0,
            "cv": 5 if split == "cv" else None,
            "split": split,
            "group_similar": False,
            "drop_test_duplicates": False,
            "test_data": None,
            "label_map": None,
            "preprocess": {"crop": True, "size": 224, "clip_percentiles": [0.5, 99.5]},
            "duplicates": {"hash_radius": 8, "near_threshold": 0.9},
            "n_boot": 1000,
        },
        "protocol": {
            "kind": split,
            "folds": folds,
            "grouping": "duplicates" if split == "cv" else "none",
            "n_groups": 374,
            "subjects_known": False,
            "dropped_duplicates": {"notumor": 395, "glioma": 12} if split == "official" else {},
            "label_map": {"glioma": "tumor", "notumor": "no tumor"} if split == "official" else None,
            "notes": ["subject ids are absent: folds group near-duplicate clusters instead of patients"],
        },
        "dataset": {
            "path": "/data/brain-tumor-mri",
            "n_items": n_per_class * len(classes) * (2 if split == "official" else 1),
            "classes": classes,
            "counts": {"train": counts, "test": counts} if split == "official" else {"all": counts},
            "test_data": None,
        },
        "audit": {
            "n_unreadable": 0,
            "exact_duplicate_clusters": 300,
            "exact_duplicate_images": 726,
            "near_duplicate_clusters": 358,
            "near_duplicate_images": 1844,
            "largest_cluster_size": 28,
            "conflicting_label_clusters": 0,
            "cross_split_leaks": 551,
            "leaks_per_class": {
                "test": {classes[-1]: {"leaking": 395, "of": 405}, classes[0]: {"leaking": 156, "of": 300}}
            },
        },
        "methods": {name: _method(predictions[name], name=name, split=split, folds=folds) for name in names},
        "comparisons": [
            {
                "a": a,
                "b": b,
                "mcnemar": {"n01": 40, "n10": 12 + k, "p_value": 0.0001 * 10**k, "statistic": 14.0},
                "t_test": {"mean_difference": 0.03, "statistic": 3.1, "p_value": 0.03, "df": 4}
                if split == "cv"
                else None,
                "decided_by": "t_test" if split == "cv" else "mcnemar",
                "p_adjusted": min(0.0002 * 100**k, 1.0),
                "significant": 0.0002 * 100**k < 0.05,
            }
            for k, (a, b) in enumerate((a, b) for i, a in enumerate(names) for b in names[i + 1 :])
        ],
        "alpha": 0.05,
    }
    return results, predictions


@pytest.fixture(scope="session")
def make_benchmark():
    """``make_benchmark(methods=..., classes=..., split="cv"|"official")`` -> ``(results, predictions)``."""
    return build_benchmark
