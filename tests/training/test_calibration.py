import numpy as np
import pytest
from scipy.special import softmax

from brainmri.training.calibration import fit_temperature


@pytest.mark.parametrize("true_t", [0.5, 1.0, 3.0])
def test_the_temperature_that_generated_the_labels_is_found(true_t):
    rng = np.random.default_rng(0)
    logits = rng.normal(scale=4.0, size=(20000, 3))
    p = softmax(logits / true_t, axis=1)
    y = np.array([rng.choice(3, p=row) for row in p])
    assert fit_temperature(logits, y) == pytest.approx(true_t, rel=0.05)


def test_no_items_leave_the_logits_unchanged():
    assert fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=int)) == 1.0
