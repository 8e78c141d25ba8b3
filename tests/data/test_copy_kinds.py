"""Copies that are mirrored, flipped, rotated, re-contrasted, zoomed or re-encoded are found, each named by its kind."""

from __future__ import annotations

import numpy as np
import pytest

from brainmri.data.audit import analyse, audit_report, cross_split_leaks, format_audit
from brainmri.data.dataset import load_dataset
from brainmri.data.duplicates import find_cross_duplicates, find_duplicates
from brainmri.data.fingerprint import ORIENTATIONS, fingerprint, orient, oriented_phashes
from brainmri.data.splits import group_labels, official_split
from brainmri.data.synthetic import CLASSES, synthetic_slice
from brainmri.data.synthetic3d import make_template, synthetic_volume


@pytest.fixture(scope="module")
def originals() -> list[np.ndarray]:
    """Eight distinct synthetic slices (2 per class), 0-255, 128 x 128."""
    return [
        np.round(synthetic_slice(label, np.random.default_rng([11, c, k]), size=128) * 255)
        for c, label in enumerate(CLASSES)
        for k in range(2)
    ]


def _zoomed(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` magnified about its centre by ``factor``, on the same canvas."""
    from scipy.ndimage import zoom

    big = zoom(image, factor, order=1)
    top, left = (big.shape[0] - image.shape[0]) // 2, (big.shape[1] - image.shape[1]) // 2
    return big[top : top + image.shape[0], left : left + image.shape[1]]


def _copies(originals, jpeg_roundtrip) -> list[tuple[int, str, np.ndarray]]:
    """(original index, expected kind, copy) for each kind of copy."""
    return [
        (0, "mirrored", np.fliplr(originals[0])),
        (1, "flipped", np.flipud(originals[1])),
        (2, "rotated", np.rot90(originals[2])),
        (3, "rotated", np.rot90(originals[3], 2)),
        (4, "re-processed", 255 * (originals[4] / 255) ** 0.6),  # re-contrasted (gamma)
        (5, "re-processed", _zoomed(originals[5], 1.05)),
        (6, "re-encoded", jpeg_roundtrip(originals[6].astype(np.uint8), quality=80).astype(np.float32)),
        (7, "mirrored", jpeg_roundtrip(np.fliplr(originals[7]).astype(np.uint8), quality=85).astype(np.float32)),
    ]


def test_the_8_oriented_hashes_are_the_hashes_of_the_oriented_image(originals):
    from brainmri.data.preprocess import resize

    small = resize(resize(originals[0], 64), 32)
    hashes = oriented_phashes(small)
    for g in range(len(ORIENTATIONS)):
        assert hashes[g] == oriented_phashes(np.ascontiguousarray(orient(small, g)))[0], ORIENTATIONS[g][0]
    assert len(set(hashes.tolist())) > 1


def test_every_kind_of_copy_is_found_and_named(originals, jpeg_roundtrip):
    copies = _copies(originals, jpeg_roundtrip)
    images = list(originals) + [c for _, _, c in copies]
    graph = find_duplicates([fingerprint(np.asarray(x, np.float32)) for x in images], radius=8, threshold=0.9)
    n = len(originals)
    found = {
        (int(i), int(j)): str(kind)
        for i, j, kind in zip(graph.pairs["i"], graph.pairs["j"], graph.pairs["kind"], strict=True)
    }
    assert found == {(original, n + k): kind for k, (original, kind, _) in enumerate(copies)}
    assert len(np.unique(graph.cluster_of)) == n  # every copy joined its original, and nothing else was joined


def test_a_copy_zoomed_by_5_percent_needs_the_head_box(originals):
    zoomed = fingerprint(_zoomed(originals[5], 1.05).astype(np.float32))
    plain = fingerprint(originals[5].astype(np.float32))
    frame = float(np.corrcoef(plain.thumbs[0].astype(float), zoomed.thumbs[0].astype(float))[0, 1])
    box = float(np.corrcoef(plain.thumbs[1].astype(float), zoomed.thumbs[1].astype(float))[0, 1])
    assert frame < 0.9 <= box


def test_adjacent_slices_of_a_phantom_are_not_joined():
    # A 64-voxel phantom with its default noise. (Noise-free and sampled at 96 voxels, its smooth anatomy makes
    # adjacent slices correlate at 0.95 in structure, and they are joined, as they were before orientations.)
    template = make_template(64)
    volume, _ = synthetic_volume(template, [], False, np.random.default_rng(0))
    middle = volume.shape[2] // 2
    slices = [np.asarray(volume[:, :, k], np.float32) * 255 for k in range(middle - 3, middle + 4)]
    graph = find_duplicates([fingerprint(s) for s in slices], radius=8, threshold=0.9)
    assert graph.near_clusters == [] and len(graph.pairs["i"]) == 0


def test_a_mirrored_copy_between_datasets_is_found_with_its_kind(originals):
    reference = [fingerprint(x.astype(np.float32)) for x in originals]
    other = [fingerprint(np.fliplr(originals[3]).astype(np.float32)), fingerprint(np.rot90(originals[6], 3))]
    found = find_cross_duplicates(reference, other, radius=8, threshold=0.9)
    assert list(zip(found["i"].tolist(), found["j"].tolist(), found["kind"].tolist(), strict=True)) == [
        (3, 0, "mirrored"),
        (6, 1, "rotated"),
    ]


def test_a_mirrored_copy_across_the_official_split_is_grouped_and_dropped(tmp_path, originals, write_pil):
    for c, label in enumerate(CLASSES):
        for k in range(2):
            write_pil(tmp_path / "Training" / label / f"{k}.png", originals[2 * c + k].astype(np.uint8))
        write_pil(
            tmp_path / "Testing" / label / "new.png",
            np.round(synthetic_slice(label, np.random.default_rng([12, c]), size=128) * 255).astype(np.uint8),
        )
    write_pil(tmp_path / "Testing" / "glioma" / "mirror.png", np.fliplr(originals[0]).astype(np.uint8))
    analysis = analyse(load_dataset(tmp_path), n_jobs=1)
    rel = [analysis.dataset.relpath(it) for it in analysis.dataset.items]
    leaks = cross_split_leaks(analysis)
    assert [(x["test_path"], x["train_path"], x["kind"]) for x in leaks] == [
        ("Testing/glioma/mirror.png", "Training/glioma/0.png", "mirrored")
    ]
    groups, _ = group_labels(analysis, "auto")
    assert groups[rel.index("Testing/glioma/mirror.png")] == groups[rel.index("Training/glioma/0.png")]
    split = official_split(analysis, drop_test_duplicates=True)
    assert rel.index("Testing/glioma/mirror.png") not in split.test and split.dropped == {"glioma": 1}
    report = audit_report(analysis)
    assert report["copy_kinds"] == {"mirrored": 1} and report["leak_kinds"] == {"test": {"mirrored": 1}}
    assert "test, kinds of copy: mirrored 1" in format_audit(report)
