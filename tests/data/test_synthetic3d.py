"""Synthetic volumes with a known answer (``brainmri demo-data --3d``)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from brainmri.cli import main
from brainmri.data.dataset import load_dataset
from brainmri.data.io import read_image
from brainmri.data.synthetic3d import make_template, plant_regions, synthetic_volume
from brainmri.errors import ConfigError


def test_demo_data_3d_writes_volumes_regions_and_masks(tmp_path, capsys):
    out = tmp_path / "vol"
    assert main(["demo-data", "--3d", str(out), "--n", "3", "--size", "16", "-q"]) == 0
    planted = json.loads((out / ".regions" / "planted_regions.json").read_text())
    assert f"atrophy planted in regions {', '.join(map(str, planted['planted_regions']))}" in capsys.readouterr().out
    dataset = load_dataset(out)
    assert dataset.classes == ["atrophy", "control"] and len(dataset) == 6  # .regions and .masks are not classes
    for item in dataset.items:
        volume, meta = read_image(item.path)
        assert volume.shape == (16, 16, 16) and meta.mode == "volume" and volume.max() > 0
    atlas = nib.load(out / ".regions" / "atlas.nii.gz")
    labels = np.asarray(atlas.dataobj)
    assert labels.shape == (16, 16, 16) and set(planted["planted_regions"]) <= set(np.unique(labels))
    np.testing.assert_allclose(atlas.affine, nib.load(dataset.items[0].path).affine)
    masks = sorted(p.relative_to(out / ".masks").as_posix() for p in (out / ".masks").rglob("*.nii.gz"))
    assert masks == [f"atrophy/sub-atrophy00{k}.nii.gz" for k in range(3)]  # controls have nothing planted


def test_the_planted_regions_lose_tissue_in_the_atrophy_class_only():
    template = make_template(24, n_regions=16)
    planted = plant_regions(template, 3, np.random.default_rng(0))
    inside = np.isin(template.labels, planted)
    elsewhere = (template.labels > 0) & ~inside

    def mean_of(atrophy, seed, where):
        volume, _ = synthetic_volume(template, planted, atrophy, np.random.default_rng(seed))
        return volume[where].mean()

    # Planted regions: darker in atrophy subjects than in controls; the rest of the brain: the same within noise.
    ratio = [mean_of(True, s, inside) / mean_of(False, s + 100, inside) for s in range(4)]
    rest = [mean_of(True, s, elsewhere) / mean_of(False, s + 100, elsewhere) for s in range(4)]
    assert max(ratio) < 0.9
    assert 0.9 < np.mean(rest) < 1.1


def test_the_same_seed_gives_the_same_volume():
    template = make_template(16, n_regions=8)
    a = synthetic_volume(template, [1], True, np.random.default_rng([0, 1]))
    b = synthetic_volume(template, [1], True, np.random.default_rng([0, 1]))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--size", "8"], r"--size must be an integer >= 16, got 8"),
        (["--n", "0"], r"--n must be an integer >= 1, got 0"),
    ],
)
def test_bad_demo_volume_settings_are_one_line_errors(tmp_path, capsys, argv, message):
    import re

    assert main(["demo-data", "--3d", str(tmp_path / "v"), *argv]) != 0
    assert re.search(message, capsys.readouterr().err)
    assert not (tmp_path / "v").exists()


def test_too_many_planted_regions_are_refused():
    with pytest.raises(ConfigError, match=r"--planted must be between 1 and \d+ \(regions of at least median size\)"):
        plant_regions(make_template(16, n_regions=8), 50, np.random.default_rng(0))
