"""Classification metrics and bootstrap intervals: hand-computed cases, agreement with scikit-learn."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from brainmri.errors import ConfigError
from brainmri.evaluation.metrics import METRICS, _scorer, bootstrap_ci, classification_metrics, summarize

CLASSES = ["glioma", "meningioma", "notumor", "pituitary"]


def random_predictions(n: int, *, seed: int, k: int = 4, signal: float = 1.5):
    """``n`` labels over the first ``k`` of CLASSES and softmax probabilities that favour the true class."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += signal
    proba = np.exp(logits)
    proba /= proba.sum(axis=1, keepdims=True)
    return np.array(CLASSES[:k])[y], proba, CLASSES[:k]


def test_two_classes_by_hand():
    # true:      n    n    n    n    p    p
    # predicted: n    n    n    p    p    p        confusion [[3, 1], [0, 2]]
    # accuracy 5/6; recall n 3/4, p 2/2 -> balanced accuracy = sensitivity = 7/8
    # precision n 3/3, p 2/3 -> 5/6; F1 n 2*3/(6+0+1) = 6/7, p 2*2/(4+1+0) = 4/5 -> 29/35
    # specificity n 2/2, p 3/4 -> 7/8
    # AUC of column p: positives .6, .8 vs negatives .1 .2 .3 .6 -> (3 + 0.5 + 4) / 8 = 15/16
    # Brier: squared errors .02 .08 .18 .72 .32 .08 -> 1.4 / 6 = 7/30
    # ECE: confidence bins (1/15 wide) .9 {right}, .8 {right, right}, .7 {right}, .6 {wrong, right}
    #      -> (|1 - .9| + |2 - 1.6| + |1 - .7| + |1 - 1.2|) / 6 = 1/6
    y = ["n", "n", "n", "n", "p", "p"]
    proba = [[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.4, 0.6], [0.4, 0.6], [0.2, 0.8]]
    out = classification_metrics(y, proba, ["n", "p"])
    assert out["confusion"] == {"labels": ["n", "p"], "matrix": [[3, 1], [0, 2]]}
    expected = {
        "accuracy": 5 / 6,
        "balanced_accuracy": 7 / 8,
        "macro_f1": 29 / 35,
        "auc": 15 / 16,
        "sensitivity": 7 / 8,
        "specificity": 7 / 8,
        "precision": 5 / 6,
        "brier": 7 / 30,
        "ece": 1 / 6,
    }
    assert out["metrics"] == pytest.approx(expected)
    assert out["per_class"]["p"] == pytest.approx(
        {"sensitivity": 1.0, "specificity": 3 / 4, "precision": 2 / 3, "f1": 4 / 5, "support": 2}
    )


def test_three_classes_by_hand():
    # true:      a a a b b c
    # predicted: a a b b c c          confusion [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    # accuracy 4/6; recall a 2/3, b 1/2, c 1 -> balanced accuracy 13/18
    # precision a 2/2, b 1/2, c 1/2 -> 2/3; F1 a 4/5, b 2/4, c 2/3 -> 59/90
    # specificity a 3/3, b 3/4 (one a called b), c 4/5 (one b called c) -> 17/20
    y = ["a", "a", "a", "b", "b", "c"]
    proba = [[0.7, 0.2, 0.1], [0.6, 0.3, 0.1], [0.3, 0.5, 0.2], [0.1, 0.6, 0.3], [0.1, 0.4, 0.5], [0.2, 0.2, 0.6]]
    out = classification_metrics(y, proba, ["a", "b", "c"])
    assert out["confusion"]["matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    expected = {
        "accuracy": 4 / 6,
        "balanced_accuracy": 13 / 18,
        "macro_f1": 59 / 90,
        "sensitivity": 13 / 18,
        "specificity": 17 / 20,
        "precision": 2 / 3,
    }
    assert {name: out["metrics"][name] for name in expected} == pytest.approx(expected)
    assert [out["per_class"][c]["support"] for c in "abc"] == [3, 2, 1]


@pytest.mark.parametrize("k", [2, 3, 4])
@pytest.mark.parametrize("seed", [0, 1])
def test_agrees_with_sklearn(k, seed):
    y, proba, classes = random_predictions(300, seed=seed, k=k)
    pred = np.array(classes)[proba.argmax(axis=1)]
    out = classification_metrics(y, proba, classes)
    auc = (
        skm.roc_auc_score(y == classes[1], proba[:, 1])
        if k == 2
        else skm.roc_auc_score(y, proba, multi_class="ovr", average="macro", labels=classes)
    )
    expected = {
        "accuracy": skm.accuracy_score(y, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(y, pred),
        "macro_f1": skm.f1_score(y, pred, average="macro", labels=classes),
        "auc": auc,
        "sensitivity": skm.recall_score(y, pred, average="macro", labels=classes),
        "precision": skm.precision_score(y, pred, average="macro", labels=classes),
    }
    assert {name: out["metrics"][name] for name in expected} == pytest.approx(expected)
    assert out["confusion"]["matrix"] == skm.confusion_matrix(y, pred, labels=classes).tolist()
    # Specificity of a class is the recall of "not this class".
    specificity = [skm.recall_score(y != c, pred != c) for c in classes]
    assert out["metrics"]["specificity"] == pytest.approx(np.mean(specificity))


def test_tied_scores_match_sklearn_auc():
    y, _, classes = random_predictions(200, seed=3, k=3)
    palette = np.array([[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8], [0.4, 0.4, 0.2], [0.3, 0.3, 0.4]])
    proba = palette[np.random.default_rng(3).integers(0, len(palette), 200)]  # many ties within each column
    expected = np.mean([skm.roc_auc_score(y == c, proba[:, j]) for j, c in enumerate(classes)])
    assert classification_metrics(y, proba, classes)["metrics"]["auc"] == pytest.approx(expected)


def test_weights_equal_repeated_items():
    # A bootstrap resample is scored through item weights; that must equal scoring the repeated items.
    y, proba, classes = random_predictions(60, seed=4)
    weights = np.random.default_rng(5).integers(0, 4, 60)
    scorer, _ = _scorer(y, proba, classes)
    repeated = classification_metrics(np.repeat(y, weights), np.repeat(proba, weights, axis=0), classes)
    assert dict(zip(METRICS, scorer.values(weights), strict=True)) == pytest.approx(repeated["metrics"])


def test_class_absent_from_y_true():
    # Class c never occurs but is predicted once; AUC averages the classes present (a and b).
    y = ["a", "a", "b", "b"]
    proba = [[0.6, 0.3, 0.1], [0.2, 0.3, 0.5], [0.3, 0.6, 0.1], [0.5, 0.4, 0.1]]
    out = classification_metrics(y, proba, ["a", "b", "c"])  # warnings are errors in this suite
    present = np.isin(y, ["a", "b"])
    y_arr, p_arr = np.array(y), np.array(proba)
    expected_auc = np.mean([skm.roc_auc_score(y_arr[present] == c, p_arr[present, j]) for j, c in enumerate("ab")])
    assert out["metrics"]["auc"] == pytest.approx(expected_auc)
    # c has no per-class figures, and no macro average is zero-filled with them: all run over a and b.
    assert out["per_class"]["c"] == {
        "sensitivity": None,
        "specificity": None,
        "precision": None,
        "f1": None,
        "support": 0,
    }
    # Predicted a, c, b, a: recall 1/2 and 1/2, precision 1/2 and 1, F1 1/2 and 2/3, specificity 1/2 and 1.
    assert out["per_class"]["b"] == {
        "sensitivity": 0.5,
        "specificity": 1.0,
        "precision": 1.0,
        "f1": 2 / 3,
        "support": 2,
    }
    expected = {
        "balanced_accuracy": 0.5,
        "sensitivity": 0.5,
        "precision": 3 / 4,
        "macro_f1": 7 / 12,
        "specificity": 3 / 4,
    }
    assert {name: out["metrics"][name] for name in expected} == pytest.approx(expected)
    pred = np.array(["a", "c", "b", "a"])
    assert out["metrics"]["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", labels=["a", "b"]))
    assert out["metrics"]["precision"] == pytest.approx(
        skm.precision_score(y, pred, average="macro", labels=["a", "b"])
    )


def test_single_class_gives_nan_auc_and_specificity():
    out = summarize(["a", "a", "a"], [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]], ["a", "b"], n_boot=50)
    assert np.isnan(out["metrics"]["auc"]["value"])
    assert np.isnan(out["metrics"]["auc"]["ci_low"]) and np.isnan(out["metrics"]["auc"]["ci_high"])
    assert out["metrics"]["accuracy"]["value"] == pytest.approx(2 / 3)
    # Nor is specificity defined, with no item of another class; the rates of a alone are the macro averages.
    assert np.isnan(out["metrics"]["specificity"]["value"]) and out["per_class"]["a"]["specificity"] is None
    assert out["per_class"]["b"] == {
        "sensitivity": None,
        "specificity": None,
        "precision": None,
        "f1": None,
        "support": 0,
    }
    assert (
        out["metrics"]["sensitivity"]["value"] == out["metrics"]["balanced_accuracy"]["value"] == pytest.approx(2 / 3)
    )
    assert out["metrics"]["macro_f1"]["value"] == pytest.approx(0.8)  # precision 1, recall 2/3


def test_summarize_is_json_ready():
    y, proba, classes = random_predictions(100, seed=6)
    out = summarize(y, proba, classes, n_boot=20)
    assert set(out) == {"metrics", "per_class", "confusion", "n", "calibration", "bootstrap"} and out["n"] == 100
    assert list(out["metrics"]) == list(METRICS)
    for entry in out["metrics"].values():
        assert set(entry) == {"value", "ci_low", "ci_high"}
        assert all(type(v) is float for v in entry.values())
    assert all(type(v["support"]) is int for v in out["per_class"].values())
    assert json.loads(json.dumps(out)) == out


def test_calibration_by_hand():
    # Confidences .9 (right) and .92 (wrong) share the bin (13/15, 14/15]; .7 and .6 (right) sit alone.
    y = ["a", "b", "b", "b"]
    proba = [[0.9, 0.1], [0.92, 0.08], [0.3, 0.7], [0.4, 0.6]]
    out = summarize(y, proba, ["a", "b"], n_boot=20)
    assert out["metrics"]["ece"]["value"] == pytest.approx(2 / 4 * abs(0.5 - 0.91) + 1 / 4 * 0.3 + 1 / 4 * 0.4)
    assert out["metrics"]["brier"]["value"] == pytest.approx((0.02 + 2 * 0.92**2 + 0.18 + 0.32) / 4)
    calibration = out["calibration"]
    assert calibration["n_bins"] == 15
    assert calibration["mean_confidence"] == pytest.approx((0.9 + 0.92 + 0.7 + 0.6) / 4)
    bins = calibration["bins"]
    assert bins["count"] == [0] * 8 + [1, 0, 1, 0, 0, 2, 0]
    assert [a for a in bins["accuracy"] if a is not None] == [1.0, 1.0, 0.5]
    assert [c for c in bins["confidence"] if c is not None] == pytest.approx([0.6, 0.7, 0.91])
    assert bins["accuracy"][0] is None and bins["confidence"][14] is None  # empty bins


@pytest.mark.parametrize(
    ("confidence", "bin_"),
    [(0.6, 8), (0.6000001, 9), (0.5999999, 8), (1.0, 14), (0.5, 7), (1 / 15 + 0.5, 8)],
)
def test_ece_bins_are_closed_on_the_right(confidence, bin_):
    # Guo et al.'s bin b holds the confidences in ((b - 1) / 15, b / 15]: 0.6 = 9/15 ends bin 8 (0-based).
    out = summarize(["a", "a"], [[confidence, 1 - confidence], [0.5, 0.5]], ["a", "b"], n_boot=1)
    counts = out["calibration"]["bins"]["count"]
    assert counts[bin_] == 1 + (bin_ == 7)


@pytest.mark.parametrize("k", [2, 4])
def test_brier_agrees_with_sklearn(k):
    y, proba, classes = random_predictions(300, seed=13, k=k)
    # scale_by_half=False: Brier's original multiclass sum over classes, from 0 to 2.
    expected = skm.brier_score_loss(y, proba, labels=classes, scale_by_half=False)
    assert classification_metrics(y, proba, classes)["metrics"]["brier"] == pytest.approx(expected)


def test_ece_agrees_with_a_direct_loop():
    y, proba, classes = random_predictions(400, seed=14, signal=2.0)
    confidence, right = proba.max(axis=1), np.array(classes)[proba.argmax(axis=1)] == y
    ece = 0.0
    for b in range(15):
        inside = (confidence > b / 15) & (confidence <= (b + 1) / 15)
        if inside.any():
            ece += inside.mean() * abs(right[inside].mean() - confidence[inside].mean())
    assert classification_metrics(y, proba, classes)["metrics"]["ece"] == pytest.approx(ece)


def test_perfect_predictions_have_zero_brier_and_ece():
    out = classification_metrics(["a", "b", "b"], [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], ["a", "b"])
    assert out["metrics"]["brier"] == 0 and out["metrics"]["ece"] == 0


@pytest.mark.parametrize(
    ("groups", "unit", "n_units"),
    [
        (None, "items", 6),
        (np.arange(6), "items", 6),
        ([0, 0, 1, 1, 2, 2], "groups", 3),
        (["x"] * 5 + ["y"], "groups", 2),
    ],
)
def test_summarize_records_what_the_bootstrap_resampled(groups, unit, n_units):
    y = ["a", "a", "a", "b", "b", "b"]
    proba = [[0.9, 0.1], [0.8, 0.2], [0.4, 0.6], [0.3, 0.7], [0.6, 0.4], [0.1, 0.9]]
    out = summarize(y, proba, ["a", "b"], groups=groups, n_boot=30)
    assert out["bootstrap"] == {"method": "percentile", "level": 0.95, "n_boot": 30, "unit": unit, "n_units": n_units}


def test_interval_contains_point_estimate():
    y, proba, classes = random_predictions(500, seed=7)
    out = summarize(y, proba, classes, n_boot=500)
    for name, entry in out["metrics"].items():
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"], name


def test_interval_narrows_with_more_data():
    small = bootstrap_ci(*random_predictions(200, seed=8), n_boot=300)
    large = bootstrap_ci(*random_predictions(2000, seed=8), n_boot=300)
    for name in METRICS:
        assert large[name][1] - large[name][0] < small[name][1] - small[name][0], name


def test_bootstrap_is_deterministic_per_seed():
    data = random_predictions(150, seed=9)
    assert bootstrap_ci(*data, n_boot=100, seed=1) == bootstrap_ci(*data, n_boot=100, seed=1)
    assert bootstrap_ci(*data, n_boot=100, seed=1) != bootstrap_ci(*data, n_boot=100, seed=2)


def test_group_bootstrap_is_wider_when_items_are_duplicated():
    # 40 distinct items, each copied 25 times: the item bootstrap believes it has 1000 independent
    # items, the cluster bootstrap knows it has 40.
    y, proba, classes = random_predictions(40, seed=10, signal=1.0)
    y, proba = np.repeat(y, 25), np.repeat(proba, 25, axis=0)
    groups = np.repeat(np.arange(40), 25)
    items = bootstrap_ci(y, proba, classes, n_boot=300)
    clusters = bootstrap_ci(y, proba, classes, groups=groups, n_boot=300)
    for name in ("accuracy", "balanced_accuracy", "auc"):
        assert clusters[name][1] - clusters[name][0] > 2 * (items[name][1] - items[name][0]), name


def test_each_item_its_own_group_is_the_item_bootstrap():
    data = random_predictions(80, seed=11)
    assert bootstrap_ci(*data, groups=np.arange(80), n_boot=50) == bootstrap_ci(*data, n_boot=50)


def test_alpha_sets_the_interval_level():
    data = random_predictions(200, seed=12)
    wide, narrow = bootstrap_ci(*data, alpha=0.01, n_boot=200), bootstrap_ci(*data, alpha=0.5, n_boot=200)
    assert wide["accuracy"][0] < narrow["accuracy"][0] < narrow["accuracy"][1] < wide["accuracy"][1]


GOOD = (["a", "b", "a"], [[0.9, 0.1], [0.3, 0.7], [0.6, 0.4]], ["a", "b"])


@pytest.mark.parametrize(
    ("y", "proba", "classes", "match"),
    [
        (GOOD[0], GOOD[1], ["a"], "at least two distinct"),
        (GOOD[0], GOOD[1], ["a", "a"], "at least two distinct"),
        ([], np.empty((0, 2)), GOOD[2], "non-empty"),
        (GOOD[0], [[0.9, 0.1], [0.3, 0.7]], GOOD[2], r"shape \(n_items, n_classes\) = \(3, 2\)"),
        (GOOD[0], GOOD[1], ["a", "b", "c"], r"= \(3, 3\)"),
        (GOOD[0], [[np.nan, 0.1], [0.3, 0.7], [0.6, 0.4]], GOOD[2], "finite"),
        (
            GOOD[0],
            [[1.2, -0.2], [0.3, 0.7], [0.6, 0.4]],
            GOOD[2],
            r"probabilities in \[0, 1\], got values from -0.2 to 1.2",
        ),
        (GOOD[0], [[0.9, 0.1], [0.3, 0.6], [0.6, 0.4]], GOOD[2], r"sum to 1 .* got 0.9 in row 1; pass predict_proba"),
        (["a", "b", "x"], GOOD[1], GOOD[2], r"not in classes .*\['x'\]"),
    ],
)
def test_invalid_inputs(y, proba, classes, match):
    with pytest.raises(ConfigError, match=match):
        classification_metrics(y, proba, classes)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_boot": 0}, "n_boot must be a positive integer"),
        ({"n_boot": 10.5}, "n_boot must be a positive integer"),
        ({"alpha": 1.5}, "alpha must lie strictly between 0 and 1"),
        ({"alpha": 0}, "alpha must lie strictly between 0 and 1"),
        ({"groups": [0, 1]}, r"one group id per item \(3\)"),
    ],
)
def test_invalid_bootstrap_settings(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        bootstrap_ci(*GOOD, **kwargs)


# ---------------------------------------------------------------- the benchmark's intervals


def _duplicated_benchmark(kind: str, grouping: str):
    """A 2-fold benchmark of ``rf`` on 40 distinct images each copied 5 times, predictions given (no training)."""
    from brainmri.data.splits import Split
    from brainmri.runs.config import BenchmarkConfig
    from brainmri.runs.plan import Plan

    y, proba, classes = random_predictions(40, seed=15, signal=1.0)
    y, proba = np.repeat(y, 5), np.repeat(proba, 5, axis=0)
    clusters = np.repeat(np.arange(40), 5)
    groups = np.arange(200) if grouping == "none" else clusters
    folds = [np.flatnonzero(clusters < 20), np.flatnonzero(clusters >= 20)]
    splits = [Split(f"fold{k}", train=folds[1 - k], test=folds[k]) for k in range(2)]
    protocol = {"kind": kind, "folds": 2, "grouping": grouping, "n_groups": len(np.unique(groups)), "notes": []}
    plan = Plan(
        np.array([f"{k}.png" for k in range(200)]),
        y,
        [f"{k}.png" for k in range(200)],
        groups,
        splits,
        protocol,
        {},
        {},
        {},
    )
    units = {
        "rf": [
            {
                "method": "rf",
                "fold": s.name,
                "test": s.test.tolist(),
                "classes": classes,
                "proba": proba[s.test].tolist(),
                "fit_s": 1.0,
                "predict_s": 0.1,
                "params": {},
            }
            for s in splits
        ]
    }
    config = BenchmarkConfig(data="data", methods=("rf",), cv=2, n_boot=300)
    return config, plan, units, (y, proba, classes, groups)


@pytest.mark.parametrize(
    ("kind", "grouping", "unit", "n_units", "names"),
    [
        ("cv", "duplicates", "groups", 40, "near-duplicate clusters"),
        ("cv", "subject+similar", "groups", 40, "subjects joined with their look-alike groups"),
        ("official", "official split", "groups", 40, "near-duplicate clusters"),
        ("cv", "none", "items", 200, None),
    ],
)
def test_benchmark_resamples_groups_when_there_are_groups(kind, grouping, unit, n_units, names):
    from brainmri.runs.summary import summarize_units

    config, plan, units, (y, proba, classes, groups) = _duplicated_benchmark(kind, grouping)
    entry = summarize_units(config, plan, units)[0]["methods"]["rf"]
    assert entry["bootstrap"] == {
        "method": "percentile",
        "level": 0.95,
        "n_boot": 300,
        "unit": unit,
        "n_units": n_units,
        "groups": names,
    }
    cluster = bootstrap_ci(y, proba, classes, groups=groups, n_boot=300)
    item = bootstrap_ci(y, proba, classes, n_boot=300)
    reported = {name: (m["ci_low"], m["ci_high"]) for name, m in entry["metrics"].items()}
    assert reported == (cluster if unit == "groups" else item)
    if unit == "groups":
        # 5 copies of each image: the cluster intervals must be much wider than the item ones
        width = {name: high - low for name, (low, high) in reported.items()}
        assert width["accuracy"] > 1.5 * (item["accuracy"][1] - item["accuracy"][0])


def test_benchmark_reports_calibration_per_method_and_fold():
    from brainmri.runs.summary import summarize_units

    config, plan, units, (y, proba, classes, _) = _duplicated_benchmark("cv", "duplicates")
    entry = summarize_units(config, plan, units)[0]["methods"]["rf"]
    assert entry["calibration"] == summarize(y, proba, classes, n_boot=1)["calibration"]
    for fold, split in zip(entry["per_fold"], plan.splits, strict=True):
        expected = classification_metrics(y[split.test], proba[split.test], classes)["metrics"]
        assert (fold["n_train"], fold["n_test"]) == (100, 100)
        assert {k: fold[k] for k in ("brier", "ece")} == pytest.approx({k: expected[k] for k in ("brier", "ece")})


def test_terminal_table_shows_calibration_and_states_the_intervals():
    from brainmri.report.terminal import format_results
    from brainmri.runs.summary import summarize_units

    results = summarize_units(*_duplicated_benchmark("cv", "duplicates")[:3])[0]
    lines = format_results(results).splitlines()
    assert (
        lines[1] == "intervals: 95% percentile bootstrap, 300 resamples, over 40 groups (near-duplicate clusters); "
        "(low): lower is better"
    )
    assert lines[2].split() == [
        "method",
        "accuracy",
        "bal_acc",
        "macro_f1",
        "auc",
        "brier(low)",
        "ece(low)",
        "sensitivity",
        "specificity",
        "precision",
    ]
    m = results["methods"]["rf"]
    ece = m["metrics"]["ece"]
    assert f"{ece['value']:.3f} [{ece['ci_low']:.3f},{ece['ci_high']:.3f}]" in lines[4]
    assert (
        f"  rf: mean confidence {m['calibration']['mean_confidence']:.3f} at accuracy "
        f"{m['metrics']['accuracy']['value']:.3f}, ECE {ece['value']:.3f}"
    ) in lines
