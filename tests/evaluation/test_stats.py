"""Significance tests: McNemar, the Nadeau-Bengio corrected t-test, Holm's adjustment."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from brainmri.errors import ConfigError
from brainmri.evaluation.stats import corrected_resampled_ttest, holm, mcnemar


def paired(n11: int, n01: int, n10: int, n00: int) -> tuple[np.ndarray, np.ndarray]:
    """Correctness of A and B with the given counts (n01: A right and B wrong, n10: A wrong and B right)."""
    a = np.repeat([True, True, False, False], [n11, n01, n10, n00])
    b = np.repeat([True, False, True, False], [n11, n01, n10, n00])
    return a, b


def test_mcnemar_by_hand():
    # 12 discordant items, 2 going B's way: P(X <= 2) for X ~ Bin(12, 1/2) is (1 + 12 + 66) / 4096,
    # two-sided p = 158 / 4096. Continuity-corrected chi-square (|10 - 2| - 1)^2 / 12 = 49 / 12.
    out = mcnemar(*paired(20, 10, 2, 5))
    assert (out["n01"], out["n10"]) == (10, 2)
    assert out["p_value"] == pytest.approx(stats.binomtest(2, 12).pvalue)
    assert out["p_value"] == pytest.approx(158 / 4096)
    assert out["statistic"] == pytest.approx(49 / 12)


def test_mcnemar_is_symmetric_and_accepts_integers():
    a, b = paired(3, 1, 7, 2)
    forward, backward = mcnemar(a, b), mcnemar(b.astype(int), a.astype(int))
    assert (backward["n01"], backward["n10"]) == (forward["n10"], forward["n01"])
    assert backward["p_value"] == forward["p_value"]


@pytest.mark.parametrize(("counts", "statistic"), [((5, 0, 0, 3), 0.0), ((5, 4, 4, 3), 0.0)])
def test_mcnemar_without_evidence(counts, statistic):
    out = mcnemar(*paired(*counts))
    assert out["p_value"] == 1.0
    assert out["statistic"] == statistic


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        ([True, False], [True], "same items, got lengths 2 and 1"),
        ([[True, False]], [[True, False]], "correct_a must be a 1-D array"),
        ([0, 2], [1, 0], r"correct_a must hold only True/False .*\[0, 2\]"),
        ([True, False], ["yes", "no"], "correct_b must hold only True/False"),
    ],
)
def test_mcnemar_invalid(a, b, match):
    with pytest.raises(ConfigError, match=match):
        mcnemar(a, b)


def test_corrected_ttest_by_hand():
    # d = [.02, .02, -.01, .04, .05]: mean .024, sample variance 2.12e-3 / 4 = 5.3e-4.
    # Correction 1/5 + 200/800 = .45, so t = .024 / sqrt(.45 * 5.3e-4) = 1.55405...
    a = [0.80, 0.82, 0.79, 0.81, 0.85]
    b = [0.78, 0.80, 0.80, 0.77, 0.80]
    out = corrected_resampled_ttest(a, b, n_train=800, n_test=200)
    t = 0.024 / math.sqrt(0.45 * 5.3e-4)
    assert out["mean_difference"] == pytest.approx(0.024)
    assert out["statistic"] == pytest.approx(t)
    assert out["statistic"] == pytest.approx(1.55405, abs=1e-5)
    assert out["p_value"] == pytest.approx(2 * stats.t.sf(t, 4))
    assert out["df"] == 4


def test_corrected_ttest_uses_each_folds_own_sizes():
    # d = [.125, .375]: mean .25, sample variance .03125. Folds of 75/25 and 100/25 items give
    # r = (1/3 + 1/4) / 2 = 7/24, t = .25 / sqrt((1/2 + 7/24) * .03125) = 1.58944 with 1 df.
    out = corrected_resampled_ttest([0.875, 0.875], [0.75, 0.5], n_train=[75, 100], n_test=[25, 25])
    assert out["size_ratio"] == pytest.approx(7 / 24)
    assert out["statistic"] == pytest.approx(0.25 / math.sqrt(19 / 24 * 0.03125))
    assert out["statistic"] == pytest.approx(1.58944, abs=1e-5)
    assert out["p_value"] == pytest.approx(2 * stats.t.sf(1.5894388, 1))
    # The first fold's sizes alone (r = 1/3) would give another statistic.
    first = corrected_resampled_ttest([0.875, 0.875], [0.75, 0.5], n_train=75, n_test=25)
    assert first["statistic"] == pytest.approx(0.25 / math.sqrt(5 / 6 * 0.03125))
    assert first["statistic"] != pytest.approx(out["statistic"])


def test_corrected_ttest_is_more_conservative_than_paired_ttest():
    rng = np.random.default_rng(0)
    a = rng.normal(0.8, 0.02, 10)
    b = a - rng.normal(0.01, 0.01, 10)
    plain = stats.ttest_rel(a, b)
    out = corrected_resampled_ttest(a, b, n_train=900, n_test=100)
    # Only the variance changes: from var/k to (1/k + n_test/n_train) var.
    assert out["statistic"] == pytest.approx(plain.statistic * math.sqrt(0.1 / (0.1 + 100 / 900)))
    assert out["p_value"] > plain.pvalue


@pytest.mark.parametrize(
    ("a", "b", "statistic", "p_value"),
    [
        # Binary fractions, so that every difference is exactly the same float.
        ([0.75, 0.5, 0.875], [0.75, 0.5, 0.875], math.nan, 1.0),
        ([0.75, 0.5, 0.875], [0.625, 0.375, 0.75], math.inf, 0.0),
        ([0.625, 0.375, 0.75], [0.75, 0.5, 0.875], -math.inf, 0.0),
    ],
)
def test_corrected_ttest_zero_variance(a, b, statistic, p_value):
    out = corrected_resampled_ttest(a, b, n_train=20, n_test=10)
    assert out["p_value"] == p_value
    if math.isnan(statistic):
        assert math.isnan(out["statistic"])
    else:
        assert out["statistic"] == statistic


@pytest.mark.parametrize(
    ("a", "b", "kwargs", "match"),
    [
        ([0.8], [0.7], {}, "at least 2 folds, got 1"),
        ([0.8, 0.9], [0.7], {}, r"one score per fold, got shapes \(2,\) and \(1,\)"),
        ([0.8, np.nan], [0.7, 0.6], {}, "must be finite"),
        ([0.8, 0.9], [0.7, 0.6], {"n_train": 0}, "n_train must hold positive integers .*got 0"),
        ([0.8, 0.9], [0.7, 0.6], {"n_test": 2.5}, "n_test must hold positive integers .*got 2.5"),
        ([0.8, 0.9], [0.7, 0.6], {"n_test": [20, 0]}, "n_test must hold positive integers .*got 0"),
        (
            [0.8, 0.9],
            [0.7, 0.6],
            {"n_train": [80, 80, 80]},
            r"n_train must be one size or one size per fold \(2\), got 3",
        ),
    ],
)
def test_corrected_ttest_invalid(a, b, kwargs, match):
    with pytest.raises(ConfigError, match=match):
        corrected_resampled_ttest(a, b, **{"n_train": 80, "n_test": 20, **kwargs})


@pytest.mark.parametrize(
    ("p", "expected"),
    [
        # Sorted .005 .01 .03 .04 -> x4 .02, x3 .03, x2 .06, x1 .04 -> running max .02 .03 .06 .06.
        ([0.01, 0.04, 0.03, 0.005], [0.03, 0.06, 0.06, 0.02]),
        ([0.5, 0.6], [1.0, 1.0]),
        ([0.02, 0.02], [0.04, 0.04]),
        ([0.3], [0.3]),
        ([], []),
    ],
)
def test_holm(p, expected):
    assert holm(p) == pytest.approx(expected)


@pytest.mark.parametrize(
    ("p", "match"),
    [([0.1, 1.2], r"in \[0, 1\], got \[1.2\]"), ([0.1, np.nan], r"got \[nan\]"), ([[0.1]], "1-D")],
)
def test_holm_invalid(p, match):
    with pytest.raises(ConfigError, match=match):
        holm(p)
