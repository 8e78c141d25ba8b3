import pytest

torch = pytest.importorskip("torch")

from brainmri.nets.cnn import ayadi_cnn  # noqa: E402


def test_ayadi_cnn_has_ten_convolutions_with_32_to_256_channels():
    net = ayadi_cnn(num_classes=4)
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 10
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128, 256, 256, 256, 256]
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in net) == 5
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net) == 10
    assert [m.p for m in net if isinstance(m, torch.nn.Dropout)] == [0.3]


@pytest.mark.parametrize("size", [32, 64, 128])
def test_any_reduced_input_size_gives_one_logit_per_class(size):
    net = ayadi_cnn(num_classes=3, width=4).eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 1, size, size)).shape == (2, 3)


def test_width_and_channels_are_options():
    net = ayadi_cnn(num_classes=2, in_channels=3, width=8, dropout=0.5)
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    assert convs[0].in_channels == 3 and convs[-1].out_channels == 64
    assert net[-1].out_features == 2
