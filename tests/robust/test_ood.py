import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from brainmri.errors import DataError
from brainmri.robust.ood import FLAG_QUANTILE, MahalanobisOOD, fit_ood, predict_with_ood


@pytest.fixture(scope="module")
def gaussian():
    rng = np.random.default_rng(0)
    y = np.repeat(["a", "b"], 300)
    Z = rng.normal(size=(600, 8)) + np.where(y == "a", 0.0, 4.0)[:, None]
    return MahalanobisOOD(seed=0).fit(Z, y), rng


def test_training_like_items_are_rarely_flagged_and_far_ones_always(gaussian):
    ood, rng = gaussian
    like = rng.normal(size=(2000, 8)) + rng.choice([0.0, 4.0], size=(2000, 1))
    far = rng.normal(size=(200, 8)) + 10.0
    assert 0.45 < ood.score(like).mean() < 0.55  # calibrated: a training-like item is at a uniform percentile
    assert ood.flag(like).mean() < 2 * (1 - FLAG_QUANTILE)
    assert ood.flag(far).all() and (ood.score(far) == 1.0).all()


def test_the_detector_round_trips_through_its_arrays(gaussian):
    ood, rng = gaussian
    Z = rng.normal(size=(10, 8)) * 3
    again = MahalanobisOOD.from_arrays(ood.to_arrays())
    np.testing.assert_array_equal(again.score(Z), ood.score(Z))
    assert again.unit_ == ood.unit_


def test_too_few_training_items_per_class_are_refused():
    with pytest.raises(
        DataError,
        match=r"out-of-distribution score: needs at least 2 training items per class, "
        r"got \{'a': 3, 'b': 1\}",
    ):
        MahalanobisOOD().fit(np.zeros((4, 2)), ["a", "a", "a", "b"])


@pytest.fixture(scope="module")
def network():
    """A tiny ayadi-cnn trained on 40 synthetic 32 x 32 slices (its last map is 2 x 2), with its training data."""
    pytest.importorskip("torch")
    from brainmri.data.synthetic import CLASSES, synthetic_slice
    from brainmri.models.torch_classifier import TorchClassifier
    from brainmri.nets.cnn import ayadi_cnn

    rng = np.random.default_rng(5)
    X = np.stack([synthetic_slice(c, rng, 32) for c in CLASSES for _ in range(10)]).astype(np.float32)
    y = np.repeat(np.array(CLASSES), 10)
    model = TorchClassifier(
        ayadi_cnn, module_params={"width": 4}, epochs=4, batch_size=8, precision="fp32", device="cpu", threads=1
    ).fit(X, y)
    return model, X, y


def test_a_network_scores_noise_and_shifted_images_higher_than_clean_ones(network):
    from brainmri.data.synthetic import CLASSES, synthetic_slice

    model, X, y = network
    rng = np.random.default_rng(6)
    ood = fit_ood(model, X, y)
    clean = np.stack([synthetic_slice(c, rng, 32) for c in CLASSES for _ in range(5)]).astype(np.float32)
    noise = rng.uniform(0, 1, size=clean.shape).astype(np.float32)
    inverted = (1 - clean).astype(np.float32)
    proba, d_clean = predict_with_ood(model, ood, clean)
    np.testing.assert_allclose(proba, model.predict_proba(clean))
    for other in (noise, inverted):
        d_other = predict_with_ood(model, ood, other)[1]
        auc = roc_auc_score(np.r_[np.zeros(len(clean)), np.ones(len(other))], np.r_[d_clean, d_other])
        assert auc > 0.9


def test_a_network_with_a_global_pool_has_a_spread_detector_that_older_detectors_ignore(network):
    import torch

    from brainmri.robust.ood import OODDetector

    model, X, y = network
    Z = model.embed(X)
    width = model.embedding_width
    assert Z.shape == (len(X), 2 * width)
    # the spread: the standard deviation over the 2 x 2 positions of the map the global pool reduces
    module = model.module_
    with torch.no_grad():
        maps = module[: [type(m).__name__ for m in module].index("AdaptiveAvgPool2d")](torch.as_tensor(X[:, None]))
    np.testing.assert_allclose(Z[:, width:], maps.flatten(2).std(2, correction=0).numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(Z[:, :width], maps.mean((2, 3)).numpy(), rtol=1e-4, atol=1e-5)
    ood = fit_ood(model, X, y)
    assert sorted(ood.detectors_) == ["acquisition", "embedding", "spread"]
    assert "and of its spread" in ood.summary()["method"]
    # a detector fitted before the spread (the embedding alone) reads its own columns of the wider embedding
    older = OODDetector(acquisition=False).fit(Z[:, :width], X, y)
    np.testing.assert_array_equal(older.distance(Z), older.distance(Z[:, :width]))


def test_acquisition_descriptors_of_images_in_memory_are_the_same_on_several_threads():
    from brainmri.data.synthetic import synthetic_slice
    from brainmri.robust.ood import OODDetector

    rng = np.random.default_rng(0)
    images = [synthetic_slice("glioma", rng, 96) * 255 for _ in range(7)]
    serial = OODDetector(n_jobs=1).describe(images)
    threaded = OODDetector(n_jobs=3).describe(images)
    assert serial.shape == (7, 14)
    np.testing.assert_array_equal(threaded, serial)  # in input order, nothing lost or repeated
    np.testing.assert_array_equal(OODDetector(n_jobs=3).describe(images[:1]), serial[:1])


def test_mahalanobis_distance_matches_its_definition():
    from brainmri.robust.ood import _distance

    rng = np.random.default_rng(0)
    Z, means = rng.normal(size=(5, 4)), rng.normal(size=(3, 4))
    A = rng.normal(size=(4, 4))
    precision = A @ A.T
    expected = [min(float((z - m) @ precision @ (z - m)) for m in means) for z in Z]
    np.testing.assert_allclose(_distance(Z, means, precision), expected, rtol=1e-12)
