import math

import numpy as np
import pytest
import torch

from brainmri.errors import ConfigError
from brainmri.training.augment import APPEARANCE, PARTS, PRESETS, augment_batch, augmentation, parse_augment


def test_each_image_draws_its_own_transform_within_range():
    torch.manual_seed(0)
    image = torch.rand(1, 1, 32, 32)
    out = augment_batch(image.repeat(16, 1, 1, 1))
    assert out.shape == (16, 1, 32, 32) and out.dtype == torch.float32
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    distinct = {tuple(o.flatten()[:50].tolist()) for o in out}
    assert len(distinct) == 16


def test_the_same_seed_draws_the_same_augmentation():
    x = torch.rand(4, 1, 24, 24)
    torch.manual_seed(3)
    first = augment_batch(x.clone())
    torch.manual_seed(3)
    assert torch.equal(first, augment_batch(x.clone()))


def test_changes_stay_small():
    torch.manual_seed(0)
    x = torch.zeros(64, 1, 32, 32)
    x[:, :, 8:24, 8:24] = 0.5  # a centred square: rotation, shift and scale move its edges a few pixels only
    out = augment_batch(x)
    assert torch.all(out[:, :, 14:18, 14:18] > 0.3)  # the centre stays inside the square
    assert torch.all(out[:, :, :2, :2] < 0.05)  # the corners stay (near) background


# --- appearance augmentation (TorchIO) -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "setting, parts",
    [
        (False, ()),
        (None, ()),
        (True, ("geometric",)),
        ("geometric", ("geometric",)),
        ("appearance", PRESETS["appearance"]),
        ("gamma, bias-field", ("bias-field", "gamma")),
        ("appearance,gamma", PRESETS["appearance"]),
        ("appearance,tissue-contrast", PARTS),
    ],
)
def test_augment_settings_name_presets_or_parts(setting, parts):
    assert parse_augment(setting) == parts


@pytest.mark.parametrize("setting", ["colour", "gamma,warp", 3, ""])
def test_an_unknown_augment_setting_is_a_one_line_error_listing_the_parts(setting):
    with pytest.raises(
        ConfigError,
        match=r"augment must be true, false, appearance or a comma-separated list of "
        r"geometric, bias-field, gamma, .*; got",
    ):
        parse_augment(setting)


def test_appearance_changes_intensities_per_image_and_keeps_the_range():
    pytest.importorskip("torchio")
    torch.manual_seed(0)
    x = torch.linspace(0, 1, 32 * 32).reshape(1, 1, 32, 32).repeat(32, 1, 1, 1)
    out = augmentation(",".join(APPEARANCE))(x)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
    changed = [not torch.allclose(o, x[0]) for o in out]
    assert 20 <= sum(changed) < 32  # each transform applies with probability 1/4: most images change, not all
    assert len({tuple(o.flatten()[::97].tolist()) for o in out}) > 20  # with draws of their own


def test_appearance_training_is_deterministic_and_touches_training_batches_only(tiny_images, tiny_net, monkeypatch):
    pytest.importorskip("torchio")
    import brainmri.training.augment as augment_module
    from brainmri.models.torch_classifier import TorchClassifier

    X, y, groups = tiny_images
    seen = []
    real = augment_module.appearance_batch

    def spy(x, transform):
        seen.append(x.detach().clone())
        return real(x, transform)

    monkeypatch.setattr(augment_module, "appearance_batch", spy)
    settings = {**tiny_net, "augment": "appearance", "val_fraction": 0.25}
    first = TorchClassifier(**settings, seed=1).fit(X, y, groups)
    n_first = len(seen)
    second = TorchClassifier(**settings, seed=1).fit(X, y, groups)
    geometric = TorchClassifier(**{**tiny_net, "val_fraction": 0.25}, seed=1).fit(X, y, groups)
    state = [m.module_.state_dict() for m in (first, second, geometric)]
    assert all(torch.equal(state[0][k], state[1][k]) for k in state[0])
    assert not all(torch.equal(state[0][k], state[2][k]) for k in state[0])
    # 24 training items in batches of 8, 3 epochs: 9 batches of 8, all from the training part (the 8 items of
    # the validation part are never augmented).
    assert n_first == 9 and all(batch.shape[0] == 8 for batch in seen[:n_first])
    assert len(_train_rows(X, seen[:n_first])) == 24
    n = len(seen)
    first.predict_proba(X)
    assert len(seen) == n  # prediction is never augmented


def _train_rows(X, batches):
    """Rows of X that appeared in some augmented batch."""
    flat = {tuple(np.round(x.numpy().ravel()[::37], 3)) for b in batches for x in b[:, 0]}
    return [k for k, x in enumerate(X) if tuple(np.round(x.ravel()[::37], 3)) in flat]


def test_the_noise_part_is_rician_and_lifts_the_dark_background():
    from brainmri.training.augment import _random_rician_noise

    torch.manual_seed(0)
    noise = _random_rician_noise((0.05, 0.05))
    dark, bright = noise(torch.zeros(1, 256, 256, 1)), noise(torch.full((1, 256, 256, 1), 0.8))
    # A magnitude image: the background rises to sigma * sqrt(pi / 2); bright tissue keeps its level, spread by sigma.
    assert dark.min() >= 0 and abs(dark.mean().item() - 0.05 * math.sqrt(math.pi / 2)) < 0.002
    assert abs(bright.mean().item() - 0.8) < 0.003 and abs(bright.std().item() - 0.05) < 0.002


def test_tissue_contrast_gives_tissues_new_intensities_in_any_order_and_keeps_the_background():
    pytest.importorskip("torchio")
    x = torch.zeros(64, 1, 32, 32)  # background 0, then three tissues as bands of 0.3, 0.6 and 0.9
    for k, level in enumerate((0.3, 0.6, 0.9)):
        x[:, :, 8 + 6 * k : 14 + 6 * k, 4:28] = level
    torch.manual_seed(0)
    out = augmentation("tissue-contrast")(x)
    changed = [not torch.equal(o, x[0]) for o in out]
    assert 20 <= sum(changed) <= 44  # half the images, each with its own draw
    assert torch.all(out[:, :, :8] == 0)  # the background stays black
    bands = out[:, 0, [10, 16, 22], 16]  # the new intensity of each tissue
    assert torch.allclose(out[:, 0, 8:14, 4:28], bands[:, 0, None, None].expand(-1, 6, 24))  # a tissue stays flat
    inverted = (bands[:, 0] > bands[:, 2]).sum()
    assert 8 <= int(inverted) <= 30  # the brightest tissue often becomes darker than the darkest: T1 <-> T2-like
    torch.manual_seed(0)
    assert torch.equal(out, augmentation("tissue-contrast")(x))


def test_appearance_without_torchio_names_the_extra(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "torchio", None)
    with pytest.raises(
        ConfigError, match=r"appearance augmentation \(gamma\) needs TorchIO: pip install 'brainmri\[shift\]'"
    ):
        augmentation("gamma")


def test_train_with_an_unknown_augment_setting_prints_one_error_line(demo_source, tmp_path, error_line):
    from brainmri.cli import main

    code = main(
        [
            "train",
            str(demo_source),
            "--method",
            "ayadi-cnn",
            "--out",
            str(tmp_path / "b"),
            "-q",
            "--params",
            "ayadi-cnn.augment=colour,ayadi-cnn.size=16,ayadi-cnn.epochs=1",
            "--no-validation",
        ]
    )
    assert code == 2
    assert "augment must be true, false, appearance or a comma-separated list of geometric" in error_line("train")
    assert not (tmp_path / "b").exists()
