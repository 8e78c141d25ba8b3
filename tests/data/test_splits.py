"""Leakage-safe splits: grouped stratified k-fold and the official split."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from brainmri.data.audit import analyse
from brainmri.data.dataset import load_dataset
from brainmri.data.splits import group_labels, kfold_splits, official_split
from brainmri.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def grouped(tmp_path_factory, demo_source):
    """Demo data where images 0 and 1 of every class have two duplicates each (an exact copy and a
    brightness change): 10 images and 6 duplicate groups per class (sizes 3, 3, 1, 1, 1, 1)."""
    from PIL import Image

    root = shutil.copytree(demo_source, tmp_path_factory.mktemp("grouped") / "data")
    for cls_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for k in (0, 1):
            original = cls_dir / f"{cls_dir.name}_{k:04d}.png"
            shutil.copy(original, cls_dir / f"copy_{k}.png")
            with Image.open(original) as im:
                brighter = np.clip(np.asarray(im) * 0.9 + 20, 0, 255).astype(np.uint8)
            Image.fromarray(brighter).save(cls_dir / f"bright_{k}.png")
    return analyse(load_dataset(root), n_jobs=1)


@pytest.fixture(scope="module")
def with_subjects(tmp_path_factory, demo_source):
    """A CSV over the demo images with two images per subject (3 subjects per class), and one
    extra row: a copy of subject glioma-s0's image filed under subject glioma-s2."""
    root = shutil.copytree(demo_source, tmp_path_factory.mktemp("subjects") / "data")
    shutil.copy(root / "glioma/glioma_0000.png", root / "glioma/rescan.png")
    rows = ["path,label,subject"]
    for cls_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for k in range(6):
            rows.append(f"{cls_dir.name}/{cls_dir.name}_{k:04d}.png,{cls_dir.name},{cls_dir.name}-s{k // 2}")
    rows.append("glioma/rescan.png,glioma,glioma-s2")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return analyse(load_dataset(root / "manifest.csv"), n_jobs=1)


def _check_folds(analysis, splits, groups, k, tolerance):
    """Every item in exactly one test fold, train and test disjoint and complete, no group
    in two test folds, class proportions of each test fold near the dataset's."""
    n = len(analysis.dataset)
    labels = analysis.dataset.labels
    classes, overall = np.unique(labels, return_counts=True)
    assert len(splits) == k
    assert sorted(np.concatenate([s.test for s in splits]).tolist()) == list(range(n))
    fold_of_group: dict[int, int] = {}
    for f, split in enumerate(splits):
        assert not set(split.train) & set(split.test)
        assert len(split.train) + len(split.test) == n
        for g in np.unique(groups[split.test]):
            assert fold_of_group.setdefault(int(g), f) == f, (
                f"group {g} is in test folds {fold_of_group[int(g)]} and {f}"
            )
        fold_share = np.array([(labels[split.test] == c).sum() for c in classes]) / len(split.test)
        np.testing.assert_allclose(fold_share, overall / n, atol=tolerance)


def test_kfold_keeps_duplicate_groups_together(grouped):
    groups, used = group_labels(grouped)
    assert used == "duplicates"
    assert len(np.unique(groups)) == 24  # 6 groups per class
    splits, used = kfold_splits(grouped, k=3, seed=0)
    assert used == "duplicates"
    assert [s.name for s in splits] == ["fold0", "fold1", "fold2"]
    _check_folds(grouped, splits, groups, k=3, tolerance=0.1)


@pytest.mark.parametrize("k", [2, 3, 6])
def test_kfold_without_duplicates_is_plain_stratified(demo_source, k):
    analysis = analyse(load_dataset(demo_source), n_jobs=1)
    splits, used = kfold_splits(analysis, k=k, seed=3)
    assert used == "duplicates"
    _check_folds(analysis, splits, np.arange(24), k=k, tolerance=1e-9)  # 6 per class divide evenly


def test_kfold_is_deterministic_per_seed(grouped):
    first, _ = kfold_splits(grouped, k=3, seed=1)
    again, _ = kfold_splits(grouped, k=3, seed=1)
    assert all(np.array_equal(a.test, b.test) for a, b in zip(first, again, strict=True))
    other = [kfold_splits(grouped, k=3, seed=s)[0] for s in (2, 3, 4)]
    assert any(not np.array_equal(first[0].test, o[0].test) for o in other)


def test_kfold_by_subject(with_subjects):
    groups, used = group_labels(with_subjects)
    assert used == "subject"
    assert len(np.unique(groups)) == 12
    splits, used = kfold_splits(with_subjects, k=3, seed=0)
    assert used == "subject"
    _check_folds(with_subjects, splits, groups, k=3, tolerance=0.1)


def test_subjects_joined_with_duplicate_clusters(with_subjects):
    items = with_subjects.dataset.items
    groups, used = group_labels(with_subjects, "duplicates")
    assert used == "subject+duplicates"
    subject = np.array([it.subject for it in items])
    # the rescan copies s0's image under s2, so glioma-s0 and glioma-s2 become one group
    assert len(np.unique(groups[np.isin(subject, ["glioma-s0", "glioma-s2"])])) == 1
    assert len(np.unique(groups)) == 11
    splits, _ = kfold_splits(with_subjects, k=2, grouping="duplicates", seed=0)
    _check_folds(with_subjects, splits, groups, k=2, tolerance=0.15)


def test_similar_grouping_is_coarser_than_duplicates(grouped):
    strict, _ = group_labels(grouped, "duplicates")
    similar, used = group_labels(grouped, "similar")
    assert used == "similar"
    for g in np.unique(strict):
        assert len(np.unique(similar[strict == g])) == 1


def test_grouping_none_puts_every_item_alone(grouped):
    groups, used = group_labels(grouped, "none")
    assert used == "none"
    np.testing.assert_array_equal(groups, np.arange(40))


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"k": 1}, ConfigError, r"--cv must be an integer >= 2, got 1"),
        ({"k": 2.0}, ConfigError, r"--cv must be an integer >= 2, got 2\.0"),
        (
            {"grouping": "patients"},
            ConfigError,
            r"grouping must be one of auto, subject, duplicates, similar, none, source, got 'patients'",
        ),
        (
            {"grouping": "subject"},
            ConfigError,
            r"grouping 'subject' needs a subject id for every item; add a subject column",
        ),
    ],
)
def test_kfold_rejects(grouped, kwargs, error, message):
    with pytest.raises(error, match=message):
        kfold_splits(grouped, **kwargs)


def test_kfold_with_fewer_groups_than_folds_warns_and_keeps_every_item(grouped, caplog):
    splits, _ = kfold_splits(grouped, k=7)
    assert "class 'glioma' has 6 independent groups of images, fewer than the 7 folds" in caplog.text
    tested = np.concatenate([s.test for s in splits])
    assert sorted(tested.tolist()) == list(range(40))


# ---------------------------------------------------------------- official split


@pytest.fixture
def leaky_analysis(leaky_split):
    return analyse(load_dataset(leaky_split), n_jobs=1)


def test_official_split_uses_the_folders(leaky_analysis):
    split = official_split(leaky_analysis)
    items = leaky_analysis.dataset.items
    assert split.name == "official" and split.dropped == {}
    assert {items[i].split for i in split.train} == {"train"} and len(split.train) == 16
    assert {items[i].split for i in split.test} == {"test"} and len(split.test) == 10


def test_official_split_drops_test_duplicates_of_training_items(leaky_analysis):
    split = official_split(leaky_analysis, drop_test_duplicates=True)
    ds = leaky_analysis.dataset
    assert split.dropped == {"glioma": 1, "notumor": 1}
    assert len(split.test) == 8 and len(split.train) == 16
    kept = {ds.relpath(ds.items[i]) for i in split.test}
    assert "Testing/glioma/copy_of_glioma_0000.png" not in kept
    assert "Testing/notumor/reencoded_notumor_0001.jpg" not in kept


def test_official_split_falls_back_to_validation(tmp_path, demo_source):
    for cls_dir in sorted(p for p in demo_source.iterdir() if p.is_dir()):
        for k, src in enumerate(sorted(cls_dir.iterdir())):
            dest = tmp_path / ("train" if k < 4 else "val") / cls_dir.name / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)
    analysis = analyse(load_dataset(tmp_path), n_jobs=1)
    split = official_split(analysis)
    assert {analysis.dataset.items[i].split for i in split.test} == {"val"} and len(split.test) == 8


def test_official_split_needs_split_folders(demo_source):
    with pytest.raises(DataError, match=r"--split official needs train and test folders .*; use --cv K instead"):
        official_split(analyse(load_dataset(demo_source), n_jobs=1))
