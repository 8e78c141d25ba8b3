"""The checks of attribution maps, on inputs whose answer is known by hand."""

from __future__ import annotations

import numpy as np
import pytest

from brainmri.explain.checks import (
    lesion_share,
    perturbation_curves,
    pointing_game,
    random_map_baseline,
    randomized_copy,
    rank_correlations,
)


def _lesion() -> np.ndarray:
    """Two 8 x 8 masks with a 3 x 3 lesion at rows/columns 2-4."""
    masks = np.zeros((2, 8, 8), dtype=bool)
    masks[:, 2:5, 2:5] = True
    return masks


def test_pointing_game_hits_a_map_whose_maximum_is_inside_and_misses_one_outside():
    maps = np.zeros((2, 8, 8))
    maps[0, 3, 3] = 1.0  # inside the lesion
    maps[1, 7, 7] = 1.0  # outside
    assert pointing_game(maps, _lesion()).tolist() == [True, False]


def test_a_maximum_near_the_lesion_hits_within_the_tolerance_and_so_does_more_of_a_random_map():
    maps = np.zeros((2, 8, 8))
    maps[0, 3, 6] = 1.0  # two pixels right of the lesion (columns 2-4)
    maps[1, 7, 7] = 1.0  # three pixels diagonally from its corner (4, 4): sqrt(18) = 4.2 pixels
    assert pointing_game(maps, _lesion(), tolerance=2).tolist() == [True, False]
    assert pointing_game(maps, _lesion(), tolerance=1).tolist() == [False, False]
    # Within 1 px: the 3 x 3 square grows to 5 x 5 less its 4 corners = 21 pixels of 64.
    assert random_map_baseline(_lesion(), tolerance=1).tolist() == [21 / 64, 21 / 64]


def test_a_constant_map_points_nowhere():
    assert pointing_game(np.ones((2, 8, 8)), np.ones((2, 8, 8), dtype=bool)).tolist() == [False, False]


def test_lesion_share_and_the_random_map_baseline():
    maps = np.zeros((2, 8, 8))
    maps[0, 2:5, 2:5] = 1.0  # all inside
    maps[1, 2:5, 2:5], maps[1, 6, 6] = 1.0, 9.0  # 9 of 18 inside
    maps[1, 0, 0] = -5.0  # negative attribution counts for nothing
    assert lesion_share(maps, _lesion()).tolist() == [1.0, 0.5]
    assert random_map_baseline(_lesion()).tolist() == [9 / 64, 9 / 64]


def test_a_random_map_hits_about_as_often_as_the_baseline_says():
    masks = np.repeat(_lesion()[:1], 4000, axis=0)
    maps = np.random.default_rng(0).random(masks.shape)
    assert pointing_game(maps, masks).mean() == pytest.approx(random_map_baseline(masks).mean(), abs=0.015)


def test_deletion_and_insertion_reward_the_map_that_ranks_the_evidence_first():
    """The 'model' is the mean of the top-left 4 x 4 corner: a map on that corner is faithful, one elsewhere is not."""
    images = np.full((3, 8, 8), 0.5)

    def score(k, perturbed):
        return perturbed[:, :4, :4].mean(axis=(1, 2))

    right, wrong = np.zeros((3, 8, 8)), np.zeros((3, 8, 8))
    right[:, :4, :4] = 1.0
    wrong[:, 4:, 4:] = 1.0
    good = perturbation_curves(score, images, right, steps=4)
    bad = perturbation_curves(score, images, wrong, steps=4)
    # Right map: the first quarter deleted is the corner, so p drops 0.5 -> 0 at once: curve 0.5, 0, 0, 0, 0.
    assert good["deletion"] == [0.5, 0.0, 0.0, 0.0, 0.0]
    assert good["deletion_aopc"] == pytest.approx(0.4)
    assert good["insertion"] == [0.0, 0.5, 0.5, 0.5, 0.5]
    assert good["insertion_auc"] == pytest.approx(0.4375)
    assert bad["deletion_aopc"] < good["random_deletion_aopc"] < good["deletion_aopc"]
    assert bad["insertion_auc"] < good["random_insertion_auc"] < good["insertion_auc"]


def test_rank_correlation_is_one_for_the_same_map_and_undefined_for_a_constant_one():
    a = np.random.default_rng(0).random((2, 6, 6))
    assert rank_correlations(a, a) == pytest.approx([1.0, 1.0])
    assert np.isnan(rank_correlations(a[:1], np.zeros((1, 6, 6)))).all()


def test_randomising_the_weights_changes_the_maps_of_a_network(one_torch_thread):
    torch = pytest.importorskip("torch")
    pytest.importorskip("captum")
    from brainmri.explain.attribution import GradCAM, Saliency
    from brainmri.nets.cnn import ayadi_cnn

    torch.manual_seed(0)
    net = ayadi_cnn(num_classes=2, width=4).eval()
    x = torch.rand(4, 1, 32, 32)
    target = torch.zeros(4, dtype=torch.long)
    randomized = randomized_copy(net, seed=1)
    assert not torch.equal(net[0].weight, randomized[0].weight)
    for method in (Saliency, GradCAM):
        maps = method(net)(x, target)
        assert rank_correlations(maps, method(net)(x, target)) == pytest.approx([1.0] * 4)
        after = rank_correlations(maps, method(randomized)(x, target))
        assert np.nanmean(after) < 0.5
