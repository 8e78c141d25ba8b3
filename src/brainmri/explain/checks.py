"""Numbers that check attribution maps, rather than pictures to trust.

* **Known answer** (:func:`pointing_game`, :func:`lesion_share`): where the
  lesion is known (the synthetic data plants it), a map should point into
  it. The pointing game (Zhang et al. 2018) scores a hit when the map's
  maximum lies inside the lesion (or within a tolerance of it); the lesion share is the part of the
  positive attribution that falls inside it. A map of random values hits
  with probability equal to the share of the image the hit region covers,
  and puts the lesion's share of the image inside it on average: :func:`random_map_baseline` is that
  expectation, computed exactly rather than sampled.
* **Faithfulness** (:func:`perturbation_curves`): deleting the pixels a map
  ranks first should lower the class probability fast (deletion, area over
  the perturbation curve, AOPC; Samek et al. 2017), and inserting them into
  a black image should raise it fast (insertion, area under the curve;
  Petsiuk et al. 2018), both compared with a random ranking of the pixels.
* **Sanity** (:func:`randomized_copy`, :func:`rank_correlations`): a map
  that barely changes when the network's weights are replaced by random
  ones explains the image, not the model (Adebayo et al. 2018). The
  Spearman rank correlation between the maps of the trained and the
  randomised network should be low.

:func:`format_checks` writes the checks of an ``explain.json`` as lines of text.

References
----------
J. Zhang et al., "Top-down neural attention by excitation backprop", IJCV
126:1084-1102, 2018, DOI 10.1007/s11263-017-1059-x.
W. Samek et al., "Evaluating the visualization of what a deep neural network
has learned", IEEE TNNLS 28(11):2660-2673, 2017, DOI 10.1109/TNNLS.2016.2599820.
V. Petsiuk, A. Das and K. Saenko, "RISE: Randomized input sampling for
explanation of black-box models", BMVC 2018, arXiv:1806.07421.
J. Adebayo et al., "Sanity checks for saliency maps", NeurIPS 2018,
arXiv:1810.03292.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np


def pointing_game(maps: np.ndarray, masks: np.ndarray, *, tolerance: float = 0) -> np.ndarray:
    """Whether the maximum of each map lies inside its mask, or within ``tolerance`` pixels of it.

    Zhang et al. (2018) count a hit within 15 pixels of the object on 224 px
    images, since a map's maximum is a point while a coarse map (Grad-CAM's
    is 1/16 of the image side) can only point to within a cell.

    Parameters
    ----------
    maps : ndarray, shape (n, H, W)
    masks : ndarray of bool, shape (n, H, W)
    tolerance : float
        Distance in pixels from the mask that still counts as a hit.

    Returns
    -------
    ndarray of bool, shape (n,)
        A constant map (no maximum) is a miss.

    >>> m = np.zeros((2, 3, 3)); m[0, 0, 0] = 1; m[1, 2, 2] = 1
    >>> mask = np.zeros((2, 3, 3), bool); mask[:, 0, 0] = True
    >>> pointing_game(m, mask).tolist(), pointing_game(m, mask, tolerance=3).tolist()
    ([True, False], [True, True])
    """
    flat = maps.reshape(len(maps), -1)
    top = flat.argmax(axis=1)
    hit = near(masks, tolerance).reshape(len(masks), -1)[np.arange(len(flat)), top]
    return hit & (flat.max(axis=1) > flat.min(axis=1))


def near(masks: np.ndarray, tolerance: float) -> np.ndarray:
    """The pixels within ``tolerance`` pixels (Euclidean) of each mask, the mask included.

    >>> near(np.eye(3, dtype=bool)[None], 1).astype(int)[0].tolist()
    [[1, 1, 0], [1, 1, 1], [0, 1, 1]]
    """
    if tolerance <= 0:
        return masks
    from scipy.ndimage import distance_transform_edt

    return np.stack([distance_transform_edt(~m) <= tolerance if m.any() else m for m in masks])


def lesion_share(maps: np.ndarray, masks: np.ndarray) -> np.ndarray:
    """Share of each map's positive attribution that lies inside its mask.

    Returns
    -------
    ndarray of float, shape (n,)
        In [0, 1]; 0 for a map without positive values.

    >>> m = np.array([[[3.0, 1.0], [-2.0, 0.0]]]); mask = np.array([[[True, False], [True, False]]])
    >>> lesion_share(m, mask).tolist()
    [0.75]
    """
    positive = np.clip(maps, 0, None).reshape(len(maps), -1)
    total = positive.sum(axis=1)
    inside = (positive * masks.reshape(len(masks), -1)).sum(axis=1)
    return np.divide(inside, total, out=np.zeros_like(total, dtype=float), where=total > 0)


def random_map_baseline(masks: np.ndarray, *, tolerance: float = 0) -> np.ndarray:
    """Pointing-game hit probability of a map of random values: the share of the image within ``tolerance`` of the lesion.

    With ``tolerance=0`` it is also the lesion share such a map has on average.

    >>> random_map_baseline(np.array([[[True, False], [False, False]]])).tolist()
    [0.25]
    """
    return near(masks, tolerance).reshape(len(masks), -1).mean(axis=1)


def perturbation_curves(
    score: Callable[[int, np.ndarray], np.ndarray],
    images: np.ndarray,
    maps: np.ndarray,
    *,
    steps: int = 10,
    seed: int = 0,
) -> dict:
    """Deletion and insertion curves of ``maps``, and of a random ranking of the pixels.

    Pixels are ranked by the map (largest first). Step ``k`` of ``steps``
    sets the first ``k / steps`` of them to black (deletion), or starts from
    a black image and restores them (insertion).

    Parameters
    ----------
    score : callable
        ``score(k, perturbed)``: the probability of the class explained in
        image ``k``, ``(m,)``, for ``m`` perturbed copies ``(m, H, W)`` of it.
    images : ndarray, shape (n, H, W)
        The images as the model sees them (preprocessed).
    maps : ndarray, shape (n, H, W)
    steps : int
    seed : int
        Seed of the random ranking (ties of the map are broken randomly too).

    Returns
    -------
    dict
        ``deletion_aopc`` = mean over images and ``k = 0..steps`` of
        ``p(x) - p(x with k/steps deleted)`` (higher is better);
        ``insertion_auc`` = mean area under ``p`` against the inserted share
        (higher is better); the same two for the random ranking
        (``random_deletion_aopc``, ``random_insertion_auc``); and the mean
        curves (``deletion``, ``insertion``, ``random_deletion``,
        ``random_insertion``, ``steps + 1`` values each).
    """
    rng = np.random.default_rng(seed)
    fractions = np.linspace(0, 1, steps + 1)
    curves = {k: [] for k in ("deletion", "insertion", "random_deletion", "random_insertion")}
    for index, (image, attribution) in enumerate(zip(images, maps, strict=True)):
        flat = image.ravel()
        jitter = rng.random(flat.size)  # breaks ties of flat maps at random, not in raster order
        for prefix, order in (
            ("", np.lexsort((jitter, -attribution.ravel()))),
            ("random_", rng.permutation(flat.size)),
        ):
            counts = (fractions * flat.size).round().astype(int)
            deleted = np.repeat(flat[None], len(counts), axis=0)
            inserted = np.zeros_like(deleted)
            for row, count in enumerate(counts):
                deleted[row, order[:count]] = 0
                inserted[row, order[:count]] = flat[order[:count]]
            shape = (len(counts), *image.shape)
            p = score(index, np.concatenate([deleted.reshape(shape), inserted.reshape(shape)]))
            curves[f"{prefix}deletion"].append(p[: len(counts)])
            curves[f"{prefix}insertion"].append(p[len(counts) :])
    out: dict = {}
    for prefix in ("", "random_"):
        deletion, insertion = np.array(curves[f"{prefix}deletion"]), np.array(curves[f"{prefix}insertion"])
        out[f"{prefix}deletion_aopc"] = float((deletion[:, :1] - deletion).mean())
        out[f"{prefix}insertion_auc"] = float(np.trapezoid(insertion, fractions, axis=1).mean())
    out.update({name: np.array(values).mean(axis=0).round(6).tolist() for name, values in curves.items()})
    return out


def randomized_copy(module, *, seed: int = 0):
    """A copy of ``module`` with every parameter and buffer re-initialised (Adebayo et al.'s full randomisation).

    Each layer with ``reset_parameters`` (convolutions, linear layers, batch
    norm: weights and running statistics) draws new values, under
    ``torch.manual_seed(seed)``; ``module`` itself is unchanged.
    """
    import torch

    randomized = copy.deepcopy(module)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for layer in randomized.modules():
            if hasattr(layer, "reset_running_stats"):
                layer.reset_running_stats()
            if hasattr(layer, "reset_parameters"):
                layer.reset_parameters()
    return randomized.eval()


def rank_correlations(maps: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of the absolute values of each pair of maps.

    Absolute values, as Adebayo et al. (2018) compare them, so that a map
    whose sign flips still counts as the same map. NaN where a map is
    constant (no ranking).

    >>> a = np.arange(4.0).reshape(1, 2, 2)
    >>> rank_correlations(a, a).tolist(), rank_correlations(a, -a[:, ::-1]).round(3).tolist()
    ([1.0], [-0.6])
    """
    from scipy.stats import rankdata

    out = np.full(len(maps), np.nan)
    for k, (a, b) in enumerate(zip(maps, others, strict=True)):
        ra, rb = rankdata(np.abs(a).ravel()), rankdata(np.abs(b).ravel())
        if ra.std() > 0 and rb.std() > 0:
            out[k] = float(np.corrcoef(ra, rb)[0, 1])
    return out


def format_checks(document: dict) -> list[str]:
    """The checks of an ``explain.json`` document as lines of text."""
    lines = [
        f"{document['method']}: {document['timing']['n_images']} maps in {document['timing']['seconds']:.1f} s "
        f"({document['timing']['images_per_s']} images/s, reading and overlays included)"
    ]
    checks = document["checks"]
    known = checks.get("known_answer", {})
    if "pointing_game" in known:
        lines.append(
            f"known answer ({known['n_images']} images with a lesion mask): pointing game "
            f"{known['pointing_game']:.1%} within {known['tolerance_px']} px (random map "
            f"{known['random_map_pointing_game']:.1%}), {known['pointing_game_strict']:.1%} strictly inside "
            f"(random map {known['random_map_pointing_game_strict']:.1%}); lesion share "
            f"{known['lesion_share']:.1%} (random map {known['random_map_lesion_share']:.1%})"
        )
    elif known:
        lines.append(f"known answer skipped: {known['skipped']}")
    curves = checks.get("deletion_insertion")
    if curves:
        lines.append(
            f"deletion AOPC {curves['deletion_aopc']:.3f} (random ranking {curves['random_deletion_aopc']:.3f}), "
            f"insertion AUC {curves['insertion_auc']:.3f} (random ranking {curves['random_insertion_auc']:.3f}); "
            f"{curves['n_images']} images, higher is better"
        )
    sanity = checks.get("randomisation")
    if sanity and "skipped" in sanity:
        lines.append(f"randomisation check skipped: {sanity['skipped']}")
    elif sanity:
        mean = "undefined" if sanity["spearman_mean"] is None else f"{sanity['spearman_mean']:.3f}"
        lines.append(
            f"randomisation check: Spearman rank correlation with random weights {mean} "
            f"({sanity['n_images']} images, {sanity['n_undefined']} constant maps; low is good)"
        )
    return lines
