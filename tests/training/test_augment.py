import torch

from brainmri.training.augment import augment_batch


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
