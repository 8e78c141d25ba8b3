"""Source- and class-balanced sampling (training parameter ``sampling``)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from brainmri.errors import ConfigError  # noqa: E402
from brainmri.models.torch_classifier import TorchClassifier  # noqa: E402
from brainmri.training.sampling import expected_class_counts, sampling_weights  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def test_each_source_and_each_class_in_it_gets_an_equal_share():
    y = np.array([0] * 60 + [1] * 20 + [0] * 5 + [1] * 15)
    sources = np.array(["big"] * 80 + ["small"] * 20)
    w = sampling_weights(y, sources, "source")
    assert w.sum() == pytest.approx(1.0)
    for source in ("big", "small"):
        assert w[sources == source].sum() == pytest.approx(0.5)
        for c in (0, 1):
            assert w[(sources == source) & (y == c)].sum() == pytest.approx(0.25)
    by_class = sampling_weights(y, None, "class")
    assert [by_class[y == c].sum() for c in (0, 1)] == pytest.approx([0.5, 0.5])
    assert sampling_weights(y, sources, "shuffle") is None
    assert expected_class_counts(y, w, 2).tolist() == pytest.approx([50.0, 50.0])  # what the class weights divide by


@pytest.mark.parametrize(
    "sources, found",
    [(None, "no sources"), (np.array(["a"] * 4), r"one source \(a\)")],
)
def test_source_sampling_without_two_sources_is_refused_with_the_fix(sources, found):
    with pytest.raises(
        ConfigError,
        match=f"sampling=source needs training items from at least two sources, got {found}; "
        "give DATA a manifest with a source column, or add --extra-data",
    ):
        sampling_weights(np.array([0, 1, 0, 1]), sources, "source")


def _seen_share_of_small_source(sampling: str) -> float:
    """The share of training draws that came from the small source (item ids ride in the first feature)."""
    n_big, n_small = 180, 20
    rng = np.random.default_rng(0)
    ids = np.arange(n_big + n_small, dtype=np.float32)
    y = np.array(["a", "b"] * ((n_big + n_small) // 2))
    X = np.column_stack([ids, rng.normal(size=len(ids))]).astype(np.float32)
    sources = np.array(["big"] * n_big + ["small"] * n_small)
    seen = []

    def recording(*, num_classes, input_shape):
        net = torch.nn.Linear(input_shape[0], num_classes)
        net.register_forward_pre_hook(lambda m, args: seen.extend(args[0][:, 0].tolist()) if m.training else None)
        return net

    TorchClassifier(recording, epochs=3, batch_size=20, device="cpu", sampling=sampling, ema_decay=None).fit(
        X, y, sources=sources
    )
    return float(np.mean(np.asarray(seen) >= n_big))


def test_source_sampling_shows_the_network_each_source_equally_often():
    assert _seen_share_of_small_source("shuffle") == pytest.approx(0.1, abs=0.03)
    assert _seen_share_of_small_source("source") == pytest.approx(0.5, abs=0.08)
