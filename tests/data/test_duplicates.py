"""Fingerprints, the Hamming-radius join, structure similarity and duplicate clusters."""

from __future__ import annotations

import numpy as np
import pytest

from brainmri.data.duplicates import (
    DuplicateParams,
    clusters_from_labels,
    components,
    find_cross_duplicates,
    find_duplicates,
    structure_similarity,
)
from brainmri.data.fingerprint import THUMB, fingerprint
from brainmri.data.hash_join import candidate_pairs, hamming
from brainmri.data.synthetic import CLASSES, synthetic_slice
from brainmri.errors import ConfigError


@pytest.fixture(scope="module")
def slices() -> list[np.ndarray]:
    """Twelve distinct synthetic slices (3 per class), 0-255 scale, 64 x 64."""
    return [
        synthetic_slice(label, np.random.default_rng([7, c, k]), size=64) * 255
        for c, label in enumerate(CLASSES)
        for k in range(3)
    ]


# ---------------------------------------------------------------- Hamming distance and the radius join


@pytest.mark.parametrize(
    "a, b, expected",
    [(0b1011, 0b0001, 2), (0, 0, 0), (0, 2**64 - 1, 64), (0xF0F0, 0x0F0F, 16), (1 << 63, 0, 1)],
)
def test_hamming(a, b, expected):
    assert hamming(np.array([a], np.uint64), np.array([b], np.uint64)).tolist() == [expected]


def _hashes_with_near_pairs(seed: int, n_base: int = 60, n_copies: int = 4) -> np.ndarray:
    """Random 64-bit hashes plus copies of each with 0-14 random bits flipped, so every radius has pairs."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 2**63, n_base, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, n_base, dtype=np.uint64)
    out = [base]
    for _ in range(n_copies):
        flips = np.zeros(n_base, np.uint64)
        for row, n_flip in enumerate(rng.integers(0, 15, n_base)):
            for bit in rng.choice(64, n_flip, replace=False):
                flips[row] |= np.uint64(1) << np.uint64(bit)
        out.append(base ^ flips)
    hashes = np.concatenate(out)
    return hashes[rng.permutation(len(hashes))]


def _brute_force(hashes: np.ndarray, radius: int):
    i, j = np.triu_indices(len(hashes), k=1)
    d = hamming(hashes[i], hashes[j])
    keep = d <= radius
    return i[keep], j[keep], d[keep]


@pytest.mark.parametrize("radius", [0, 1, 3, 4, 6, 8, 10, 13])
@pytest.mark.parametrize("seed", [0, 1])
def test_candidate_pairs_equals_brute_force(seed, radius):
    hashes = _hashes_with_near_pairs(seed)
    i, j, d = candidate_pairs(hashes, radius)
    bi, bj, bd = _brute_force(hashes, radius)
    assert len(bi) > 0 or radius == 0
    np.testing.assert_array_equal(i, bi)  # triu_indices is sorted by (i, j), as candidate_pairs promises
    np.testing.assert_array_equal(j, bj)
    np.testing.assert_array_equal(d, bd)


def test_candidate_pairs_finds_identical_hashes_once():
    hashes = np.array([5, 5, 5, 1 << 40], np.uint64)
    i, j, d = candidate_pairs(hashes, 0)
    assert list(zip(i.tolist(), j.tolist(), d.tolist(), strict=True)) == [(0, 1, 0), (0, 2, 0), (1, 2, 0)]


@pytest.mark.parametrize("hashes", [np.zeros(0, np.uint64), np.array([7], np.uint64)], ids=["empty", "one"])
def test_candidate_pairs_with_no_possible_pair(hashes):
    i, j, d = candidate_pairs(hashes, 8)
    assert len(i) == len(j) == len(d) == 0


# ---------------------------------------------------------------- fingerprints and similarity


def test_fingerprint_fields(slices):
    fp = fingerprint(slices[0])
    assert isinstance(fp.phash, np.uint64)
    assert fp.thumb.shape == (THUMB * THUMB,) and fp.thumb.dtype == np.float16
    thumb = fp.thumb.astype(np.float64)
    assert abs(thumb.mean()) < 1e-2 and abs(thumb.std() - 1) < 1e-2  # z-scored
    assert len(fp.pixel_hash) == 32


def test_pixel_hash_depends_on_pixels_and_shape():
    image = np.arange(16, dtype=np.float32).reshape(4, 4)
    assert fingerprint(image).pixel_hash == fingerprint(image.copy()).pixel_hash
    assert fingerprint(image).pixel_hash != fingerprint(image.reshape(2, 8)).pixel_hash
    changed = image.copy()
    changed[0, 0] += 1
    assert fingerprint(image).pixel_hash != fingerprint(changed).pixel_hash


def test_fingerprint_ignores_brightness_and_contrast(slices):
    a = fingerprint(slices[0])
    b = fingerprint(slices[0] * 0.6 + 40)
    assert a.pixel_hash != b.pixel_hash
    assert hamming(np.array([a.phash]), np.array([b.phash]))[0] <= 2
    np.testing.assert_allclose(a.thumb.astype(np.float32), b.thumb.astype(np.float32), atol=0.02)


def test_constant_image_has_a_zero_structure_thumb():
    assert not fingerprint(np.full((32, 32), 9.0, np.float32)).thumb.any()


def test_volume_is_fingerprinted_by_its_middle_slice_on_the_last_axis(slices):
    volume = np.stack([slices[0], slices[5], slices[9]], axis=-1)
    np.testing.assert_array_equal(fingerprint(volume).thumb, fingerprint(slices[5]).thumb)


def test_structure_similarity_is_pearson_correlation(slices):
    thumbs = np.stack([fingerprint(s).thumb for s in slices[:4]]).astype(np.float32)
    i, j = np.array([0, 0, 2, 1]), np.array([1, 3, 3, 2])
    expected = [np.corrcoef(thumbs[a], thumbs[b])[0, 1] for a, b in zip(i, j, strict=True)]
    np.testing.assert_allclose(structure_similarity(thumbs, i, j), expected, atol=1e-3)
    assert structure_similarity(thumbs, np.zeros(0, int), np.zeros(0, int)).shape == (0,)


# ---------------------------------------------------------------- grouping


@pytest.mark.parametrize(
    "n, i, j, expected",
    [
        (4, [0], [2], [0, 1, 0, 2]),
        (3, [], [], [0, 1, 2]),
        (5, [0, 1, 3], [1, 2, 4], [0, 0, 0, 1, 1]),  # chains join
    ],
)
def test_components(n, i, j, expected):
    assert components(n, np.array(i, int), np.array(j, int)).tolist() == expected


def test_clusters_from_labels_largest_first_singletons_dropped():
    assert clusters_from_labels(np.array([3, 1, 3, 2, 1, 3, 0])) == [[0, 2, 5], [1, 4]]


def test_distinct_images_are_not_joined(slices):
    graph = find_duplicates([fingerprint(s) for s in slices], radius=10, threshold=0.9)
    assert graph.exact_clusters == [] and graph.near_clusters == []
    assert len(np.unique(graph.cluster_of)) == len(slices)
    assert len(graph.pairs["i"]) == 0


def test_exact_and_near_duplicates_are_found(slices, jpeg_roundtrip):
    images = list(slices)
    images.append(slices[1].copy())  # 12: exact copy of 1
    images.append(slices[1].copy())  # 13: exact copy of 1
    images.append(np.clip(slices[4] * 0.7 + 30, 0, 255))  # 14: brightness/contrast change of 4
    images.append(
        jpeg_roundtrip(np.round(slices[8]).astype(np.uint8), quality=85).astype(np.float32)
    )  # 15: re-encode of 8
    graph = find_duplicates([fingerprint(x) for x in images], radius=8, threshold=0.9)
    assert graph.exact_clusters == [[1, 12, 13]]
    assert graph.near_clusters == [[4, 14], [8, 15]]
    cluster = graph.cluster_of
    assert cluster[1] == cluster[12] == cluster[13]
    assert len(np.unique(cluster)) == len(slices)  # every added image joined its original, nothing else joined
    pairs = {
        (int(a), int(b)): bool(e)
        for a, b, e in zip(graph.pairs["i"], graph.pairs["j"], graph.pairs["exact"], strict=True)
    }
    assert pairs == {(1, 12): True, (1, 13): True, (4, 14): False, (8, 15): False}
    near = ~graph.pairs["exact"]
    assert (graph.pairs["similarity"][near] >= 0.9).all()
    assert (graph.pairs["distance"][~near] == 0).all()


def test_threshold_and_radius_decide_confirmation(slices, jpeg_roundtrip):
    original = np.round(slices[3]).astype(np.uint8)
    fps = [
        fingerprint(original.astype(np.float32)),
        fingerprint(jpeg_roundtrip(original, quality=75).astype(np.float32)),
    ]
    found = find_duplicates(fps, radius=8, threshold=0.0).pairs  # the pair's best view and orientation
    similarity, distance = float(found["similarity"][0]), int(found["distance"][0])
    assert 0.9 < similarity < 0.999 and distance <= 2 and found["kind"].tolist() == ["re-encoded"]
    assert find_duplicates(fps, radius=distance, threshold=similarity - 1e-3).near_clusters == [[0, 1]]
    assert find_duplicates(fps, radius=distance, threshold=similarity + 1e-3).near_clusters == []


def test_find_duplicates_on_nothing():
    graph = find_duplicates([], radius=8, threshold=0.9)
    assert graph.n == 0 and graph.exact_clusters == [] and graph.near_clusters == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"hash_radius": 32}, r"hash_radius must be an integer in 0\.\.31 \(bits of a 64-bit hash\), got 32"),
        ({"hash_radius": -1}, r"hash_radius must be an integer in 0\.\.31"),
        ({"similar_radius": 2.5}, r"similar_radius must be an integer in 0\.\.31 .*got 2\.5"),
        ({"near_threshold": 1.5}, r"near_threshold is a correlation and must lie in \[-1, 1\], got 1\.5"),
        ({"similar_threshold": -2.0}, r"similar_threshold is a correlation and must lie in \[-1, 1\], got -2\.0"),
    ],
)
def test_duplicate_params_reject(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        DuplicateParams(**kwargs)


def test_duplicate_params_defaults():
    assert DuplicateParams().to_dict() == {
        "hash_radius": 8,
        "near_threshold": 0.9,
        "similar_radius": 10,
        "similar_threshold": 0.7,
    }


# ---------------------------------------------------------------- copies between two datasets


def _jpeg_resized(image: np.ndarray, size: tuple[int, int], *, shift_px: float = 0.0) -> np.ndarray:
    """``image`` (0-255) moved right by ``shift_px`` pixels, resized to ``size`` (W, H) and JPEG re-encoded."""
    import io

    from PIL import Image
    from scipy.ndimage import shift

    moved = np.clip(shift(image.astype(np.float32), (0, shift_px), order=1, mode="nearest"), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(moved).resize(size, Image.BILINEAR).save(buffer, format="JPEG", quality=90)
    buffer.seek(0)
    with Image.open(buffer) as im:
        return np.asarray(im).astype(np.float32)


def test_cross_duplicates_tolerate_the_misregistration_of_another_publishers_resize():
    # A 128-px slice copied by "another publisher": moved by 1 px (half a 64-px thumbnail pixel),
    # resized to 96 x 80 and re-encoded. Unshifted, its structure correlation falls below the threshold.
    originals = [
        synthetic_slice(label, np.random.default_rng([3, c]), size=128) * 255 for c, label in enumerate(CLASSES)
    ]
    copy = _jpeg_resized(originals[1].astype(np.uint8), (96, 80), shift_px=1.0)
    reference, other = [fingerprint(im) for im in originals], [fingerprint(copy)]
    thumbs = np.stack([reference[1].thumb, other[0].thumb])
    assert structure_similarity(thumbs, np.array([0]), np.array([1]))[0] < 0.9
    found = find_cross_duplicates(reference, other, radius=8, threshold=0.9)
    assert found["i"].tolist() == [1] and found["j"].tolist() == [0]
    assert found["similarity"][0] > 0.95 and not found["exact"][0]


def test_cross_duplicates_report_exact_copies_and_only_pairs_across_the_sets(slices):
    reference = [fingerprint(im) for im in slices[:6]] + [fingerprint(slices[0])]  # a copy inside the reference
    other = [fingerprint(slices[0]), fingerprint(slices[8]), fingerprint(slices[8])]  # a copy inside the other set
    found = find_cross_duplicates(reference, other, radius=8, threshold=0.9)
    assert list(zip(found["i"].tolist(), found["j"].tolist(), strict=True)) == [(0, 0), (6, 0)]
    assert found["exact"].tolist() == [True, True] and found["similarity"].tolist() == [1.0, 1.0]
    assert found["distance"].tolist() == [0, 0]


def test_cross_duplicates_of_an_empty_set():
    found = find_cross_duplicates([], [], radius=8, threshold=0.9)
    assert all(len(v) == 0 for v in found.values())
