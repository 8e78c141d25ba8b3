"""The acquisition detector of the out-of-distribution score (:mod:`brainmri.features.acquisition`)."""

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from brainmri.data.shifts import shift_image
from brainmri.data.synthetic import CLASSES, synthetic_slice
from brainmri.features.acquisition import AcquisitionDescriptors
from brainmri.robust.ood import FLAG_QUANTILE, MahalanobisOOD, OODDetector


def _images(rng, n):
    labels = np.repeat(np.array(CLASSES), n // len(CLASSES))
    return np.stack([synthetic_slice(c, rng, 64) for c in labels]).astype(np.float32), labels


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(0)
    images, labels = _images(rng, 240)
    # An embedding that no acquisition change moves: a copy keeps its image's embedding (see below).
    Z = rng.normal(size=(len(images), 4)) + (np.searchsorted(CLASSES, labels) * 3.0)[:, None]
    return OODDetector(seed=0).fit(Z, images, labels), rng


@pytest.mark.parametrize("shift", ["blur", "rician-noise", "resolution"])
def test_a_shifted_copy_with_a_typical_embedding_is_flagged(fitted, shift):
    ood, rng = fitted
    images, labels = _images(np.random.default_rng(1), 40)
    Z = rng.normal(size=(len(images), 4)) + (np.searchsorted(CLASSES, labels) * 3.0)[:, None]
    copies = np.stack([shift_image(x, shift, 5, seed=0) for x in images])
    embedding = ood.detectors_["embedding"]
    # the embedding alone sees the copies as training-like: flagged at about the calibrated rate, no more
    assert embedding.flag(Z).mean() <= 2 * (1 - FLAG_QUANTILE)
    clean, shifted = ood.distance(Z, ood.describe(images)), ood.distance(Z, ood.describe(copies))
    truth = np.r_[np.zeros(len(clean)), np.ones(len(shifted))]
    assert roc_auc_score(truth, np.r_[clean, shifted]) >= 0.99  # every copy farther than (almost) every original
    assert (ood.score_distance(shifted) > FLAG_QUANTILE).mean() >= 0.5  # severity 5 noise: 0.6 flagged, the others all
    assert (clean > ood.unit_).mean() <= 0.05  # the unit: the 99th training percentile


def test_clean_items_are_flagged_at_about_the_calibrated_rate(fitted):
    ood, rng = fitted
    images, labels = _images(np.random.default_rng(2), 400)
    Z = rng.normal(size=(len(images), 4)) + (np.searchsorted(CLASSES, labels) * 3.0)[:, None]
    score = ood.score(Z, ood.describe(images))
    assert (score > FLAG_QUANTILE).mean() <= 4 * (1 - FLAG_QUANTILE)
    assert 0.35 < score.mean() < 0.65  # about uniform: a training-like item sits at a uniform percentile


def test_the_detector_round_trips_and_reads_a_detector_saved_before_the_descriptors(fitted):
    ood, rng = fitted
    images, labels = _images(np.random.default_rng(3), 8)
    Z = rng.normal(size=(8, 4)) * 2
    again = OODDetector.from_arrays(ood.to_arrays())
    np.testing.assert_array_equal(again.score(Z, again.describe(images)), ood.score(Z, ood.describe(images)))
    old = MahalanobisOOD(seed=0).fit(rng.normal(size=(100, 4)), np.repeat(["a", "b"], 50))
    loaded = OODDetector.from_arrays(old.to_arrays())
    assert loaded.describe(images) is None and sorted(loaded.detectors_) == ["embedding"]
    np.testing.assert_allclose(loaded.score(Z), old.score(Z))
    np.testing.assert_array_equal(loaded.score(Z) > FLAG_QUANTILE, old.flag(Z))


def test_descriptors_see_sharpness_noise_and_bit_depth():
    image = synthetic_slice("glioma", np.random.default_rng(4), 64)
    names = AcquisitionDescriptors().fit().feature_names_
    d = dict(zip(names, AcquisitionDescriptors().fit().transform([image])[0], strict=True))
    blurred = dict(
        zip(names, AcquisitionDescriptors().fit().transform([shift_image(image, "blur", 5)])[0], strict=True)
    )
    coarse = dict(
        zip(names, AcquisitionDescriptors().fit().transform([shift_image(image, "bit-depth", 5)])[0], strict=True)
    )
    assert blurred["laplacian"] < d["laplacian"] and blurred["hf_share"] < d["hf_share"]
    assert blurred["noise"] < d["noise"]
    assert np.exp(coarse["grey_levels"]) == pytest.approx(4)


def test_the_grey_level_count_is_the_number_of_distinct_8_bit_levels():
    rng = np.random.default_rng(0)
    images = [rng.random((64, 80)) ** k for k in (1, 2, 5)] + [np.round(rng.random((50, 50)) * 3) / 3]
    columns = AcquisitionDescriptors().fit().transform(images)
    counted = [len(np.unique(np.round(np.clip(image, 0, 1) * 255))) for image in images]
    assert np.array_equal(columns[:, 13], np.log(counted))  # the same numbers as np.unique's count, to the bit
    assert counted[-1] == 4
