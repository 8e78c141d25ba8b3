"""Risk-coverage curves: the accuracy kept when abstaining on the items of highest score."""

from __future__ import annotations

import doctest

import numpy as np
import pytest

from brainmri.evaluation import selective
from brainmri.evaluation.selective import risk_coverage


def test_a_score_that_ranks_every_error_last_gives_a_rising_curve_and_a_useless_one_a_flat_curve():
    right = np.array([True] * 8 + [False] * 2)
    useful = risk_coverage(right, np.arange(10.0))  # the two wrong calls have the highest scores
    assert useful["accuracy"][:8] == [1.0] * 8 and useful["accuracy"][-1] == 0.8
    flat = risk_coverage(np.tile([True, True, True, True, False], 2), np.zeros(10))
    assert flat["accuracy"][4] == flat["accuracy"][9] == 0.8  # no ranking: half the items keep the overall 4 in 5


def test_ties_are_broken_by_input_order_and_tiny_coverages_keep_one_item():
    out = risk_coverage([False, True], [0.5, 0.5], coverages=(0.1, 1.0))
    assert out["accuracy"] == [0.0, 0.5]


def test_no_items_and_bad_shapes():
    assert risk_coverage([], []) == {"coverage": [], "accuracy": [], "mean_accuracy": None}
    with pytest.raises(ValueError, match="1-D arrays of one length"):
        risk_coverage([True, False], [0.1])


def test_docstring_examples():
    result = doctest.testmod(selective)
    assert result.attempted > 0 and result.failed == 0
