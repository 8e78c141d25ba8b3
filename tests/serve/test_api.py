"""``POST /predict``, ``GET /model``, ``GET /health`` through FastAPI's test client: answers, and every refusal."""

from __future__ import annotations

import base64
import gzip
import io
import struct
import threading
import zlib

import numpy as np
import pytest
from PIL import Image

from brainmri.data.synthetic import synthetic_slice


def png_bytes(array: np.ndarray, fmt: str = "PNG") -> bytes:
    """``array`` (uint8) encoded as ``fmt`` by Pillow."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format=fmt)
    return buffer.getvalue()


def _files(*items):
    """Multipart ``files`` fields of ``(name, bytes)``; the declared type is always image/png (it must not count)."""
    return [("files", (name, data, "image/png")) for name, data in items]


def _glioma(size: int = 64) -> np.ndarray:
    return (synthetic_slice("glioma", np.random.default_rng(0), size=size) * 255).round().astype(np.uint8)


def _dicom(write_dicom, tmp_path, **kwargs) -> bytes:
    return write_dicom(tmp_path / "x.dcm", _glioma().astype(np.uint16), **kwargs).read_bytes()


def _nifti(write_nifti, tmp_path, volume, name="x.nii") -> bytes:
    return write_nifti(tmp_path / name, volume).read_bytes()


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


#: A valid PNG header declaring 30000 x 30000 pixels (900 MP, 3.6 GB as float32) with 1 KB of data.
BOMB_PNG = (
    b"\x89PNG\r\n\x1a\n"
    + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", 30000, 30000, 8, 0, 0, 0, 0))
    + _png_chunk(b"IDAT", zlib.compress(bytes(1024)))
    + _png_chunk(b"IEND", b"")
)


@pytest.mark.parametrize("kind", ["png", "jpeg", "dicom", "nifti", "nifti-gz"])
def test_predict_reads_each_format_by_content_as_brainmri_reads_the_file(
    kind, stand_in, client_of, write_pil, write_dicom, write_nifti, tmp_path
):
    from brainmri.data.io import read_image

    image = _glioma()
    path = {
        "png": lambda: write_pil(tmp_path / "x.png", image),
        "jpeg": lambda: write_pil(tmp_path / "x.jpg", image),
        "dicom": lambda: write_dicom(tmp_path / "x.dcm", image.astype(np.uint16) * 16),
        "nifti": lambda: write_nifti(tmp_path / "x.nii", image[:, :, None].astype(np.float32)),
        "nifti-gz": lambda: write_nifti(tmp_path / "x.nii.gz", image[:, :, None].astype(np.float32)),
    }[kind]()
    response = client_of(stand_in).post(
        "/predict", files=_files(("upload.bin", path.read_bytes()))
    )  # the name says nothing
    assert response.status_code == 200, response.text
    [seen] = stand_in.seen
    assert np.array_equal(seen, read_image(path)[0])  # the pixels brainmri predict would read from the file
    p = stand_in.glioma(seen)
    assert response.json()["predictions"] == [
        {
            "filename": "upload.bin",
            "predicted": "notumor",
            "heatmap": None,
            "probabilities": {"glioma": p, "notumor": 1 - p},
        }
    ]


def test_predict_gives_the_bundles_probabilities_model_name_and_version(
    cnn_model, client_of, tmp_path, write_pil, one_torch_thread
):
    path = write_pil(tmp_path / "x.png", _glioma())
    body = client_of(cnn_model).post("/predict", files=_files(("x.png", path.read_bytes()))).json()
    assert body["model"] == {"name": "cnn", "method": "ayadi-cnn", "version": body["model"]["version"]}
    assert len(body["model"]["version"]) == 12
    [one] = body["predictions"]
    assert list(one["probabilities"]) == ["glioma", "meningioma", "notumor", "pituitary"]
    assert list(one["probabilities"].values()) == pytest.approx(cnn_model.predict_proba([path])[0], abs=1e-9)
    assert one["predicted"] == max(one["probabilities"], key=one["probabilities"].get)
    assert "not a diagnostic device" in body["disclaimer"]


def test_predict_answers_each_of_several_images_in_order(stand_in, client_of):
    images = [
        (synthetic_slice(c, np.random.default_rng(k), size=64) * 255).astype(np.uint8)
        for k, c in enumerate(["glioma", "notumor", "pituitary"])
    ]
    response = client_of(stand_in).post(
        "/predict", files=_files(*[(f"{k}.png", png_bytes(im)) for k, im in enumerate(images)])
    )
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert [p["filename"] for p in predictions] == ["0.png", "1.png", "2.png"]
    assert [p["probabilities"]["glioma"] for p in predictions] == [
        stand_in.glioma(im.astype(np.float32)) for im in images
    ]
    assert len({p["probabilities"]["glioma"] for p in predictions}) == 3


def test_heatmap_is_a_gradcam_overlay_on_the_image_the_model_saw(cnn_model, client_of, one_torch_thread):
    response = client_of(cnn_model).post("/predict?heatmap=true", files=_files(("a.png", png_bytes(_glioma()))))
    assert response.status_code == 200
    heatmap = response.json()["predictions"][0]["heatmap"]
    assert heatmap["method"] == "gradcam"
    with Image.open(io.BytesIO(base64.b64decode(heatmap["image_png"]))) as im:
        seen = np.asarray(im)
        assert im.format == "PNG" and im.size == (32, 32) and im.mode == "L"  # the model's 32 px input
    with Image.open(io.BytesIO(base64.b64decode(heatmap["overlay_png"]))) as im:
        overlay = np.asarray(im).astype(int)
        assert im.size == (32, 32) and im.mode == "RGB"
    gray = np.repeat(seen[..., None].astype(int), 3, axis=-1)
    coloured = np.abs(overlay - gray).sum(axis=-1) > 0
    assert 0 < coloured.mean() < 1  # the map colours where the model looked, and leaves the rest gray


def test_model_describes_the_bundle(cnn_model, client_of):
    body = client_of(cnn_model).get("/model").json()
    manifest = cnn_model.manifest
    assert body["name"] == "cnn" and body["classes"] == manifest["classes"]
    assert body["method"]["name"] == "ayadi-cnn" and body["method"]["reference"] == manifest["method"]["reference"]
    assert body["preprocess"] == manifest["preprocess"] and body["input_size"] == [32, 32]
    assert body["validation"] == manifest["validation"] and body["explanation"] == "gradcam"
    assert "not a diagnostic device" in body["disclaimer"]


def test_health_says_ok_and_how_busy(stand_in, client_of):
    body = client_of(stand_in, workers=2, queue_size=3).get("/health").json()
    assert body == {"status": "ok", "model": "stand-in", "version": body["version"], "busy": 0, "capacity": 5}


@pytest.mark.parametrize(
    "make, status, match",
    [
        (lambda t, w: {"content": b""}, 400, "empty body"),
        (lambda t, w: {"files": _files(("a.png", b""))}, 400, r"files\[0\] \('a.png'\): empty file"),
        (
            lambda t, w: {"data": {"other": "x"}, "files": [("other", ("a.png", b"x", "image/png"))]},
            400,
            "no file in the field 'files'",
        ),
        (
            lambda t, w: {"content": b"--x\r\nbroken", "headers": {"content-type": "multipart/form-data"}},
            400,
            "malformed multipart",
        ),
        (
            lambda t, w: {"content": png_bytes(_glioma()), "headers": {"content-type": "image/png"}},
            415,
            "Content-Type image/png: send the images as multipart/form-data",
        ),
        (
            lambda t, w: {"files": _files(("scan.png", b"GIF89a" + bytes(100)))},
            415,
            r"not a PNG, JPEG, DICOM .*it begins b'GIF89a",
        ),
        (lambda t, w: {"files": _files(("a.png", b"%PDF-1.4 not an image"))}, 415, "the file name does not count"),
        (
            lambda t, w: {
                "files": _files(("big.png", png_bytes(np.random.default_rng(0).integers(0, 256, (300, 300)))))
            },
            413,
            "request body above the limit of 0.05 MiB",
        ),
        (
            lambda t, w: {"files": _files(*[(f"{k}.png", png_bytes(_glioma(16))) for k in range(4)])},
            413,
            "more than 3 files in one request",
        ),
        (
            lambda t, w: {"files": _files(("bomb.png", BOMB_PNG))},
            413,
            "png image of 900,000,000 pixels, above the limit",
        ),
        (
            lambda t, w: {"files": _files(("bomb.nii.gz", gzip.compress(_nifti_header(2000))))},
            413,
            "nifti-gz image of 8,000,000,000 pixels",
        ),
        (
            lambda t, w: {"files": _files(("cut.png", png_bytes(_glioma())[:200]))},
            422,
            r"files\[0\] \('cut.png'\): cannot decode",
        ),
        (
            lambda t, w: {
                "files": _files(("colour.png", png_bytes(np.dstack([_glioma(), np.zeros((64, 64)), _glioma()]))))
            },
            422,
            "colour content",
        ),
        (
            lambda t, w: {"files": _files(("sr.dcm", _dicom(w[0], t, pixel_data=False)))},
            422,
            "DICOM file has no pixel data",
        ),
        (
            lambda t, w: {"files": _files(("vol.nii", _nifti(w[1], t, np.ones((8, 8, 3), np.float32))))},
            422,
            "a nifti volume or series of shape 8x8x3, not one slice",
        ),
        # Issue 20: a uniform image was answered 200 with a confident class.
        (
            lambda t, w: {"files": _files(("black.png", png_bytes(np.zeros((64, 64)))))},
            422,
            r"files\[0\] \('black.png'\): blank image: every pixel is 0 \(no anatomy\); send an MRI slice",
        ),
        (
            lambda t, w: {"files": _files(("dot.png", png_bytes(np.full((1, 1), 90))))},
            422,
            r"1x1 image is too small to be an MRI slice \(a side below 16 px\); send an MRI slice",
        ),
        (
            lambda t, w: {"files": _files(("zero.nii", _nifti(w[1], t, np.zeros((32, 32, 1), np.float32))))},
            422,
            "blank image: every pixel is 0",
        ),
    ],
)
def test_bad_input_is_a_documented_json_error_never_a_500(
    make, status, match, stand_in, client_of, tmp_path, write_dicom, write_nifti
):
    import re

    client = client_of(stand_in, max_upload_mb=0.05, max_files=3)
    response = client.post("/predict", **make(tmp_path, (write_dicom, write_nifti)))
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert re.search(match, response.json()["detail"]), response.json()
    documented = client.get("/openapi.json").json()["paths"]["/predict"]["post"]["responses"]
    assert str(status) in documented
    assert stand_in.seen == []  # nothing reached the model


def test_a_chunked_body_is_cut_off_at_the_limit(stand_in, client_of):
    def chunks():  # no Content-Length: the server counts what arrives
        for _ in range(100):
            yield bytes(1024)

    response = client_of(stand_in, max_upload_mb=0.01).post(
        "/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert response.status_code == 413 and "above the limit of 0.01 MiB" in response.json()["detail"]


def _nifti_header(side: int) -> bytes:
    """A NIfTI-1 header declaring a ``side``^3 float32 volume, followed by a few bytes of data."""
    from nibabel.nifti1 import Nifti1Header

    header = Nifti1Header()
    header.set_data_shape((side, side, side))
    header.set_data_dtype(np.float32)
    header["magic"] = b"n+1"
    header["vox_offset"] = 352
    return header.binaryblock + bytes(4) + bytes(64)


def test_heatmap_of_a_model_without_one_is_refused(stand_in, client_of):
    response = client_of(stand_in).post("/predict?heatmap=true", files=_files(("a.png", png_bytes(_glioma()))))
    assert response.status_code == 422
    assert response.json()["detail"] == (
        "heatmap=true: this model is not a brainmri bundle, so it has no heatmaps; ask without heatmap"
    )


def test_invalid_query_is_a_422_with_one_line(stand_in, client_of):
    response = client_of(stand_in).post("/predict?heatmap=maybe", files=_files(("a.png", png_bytes(_glioma()))))
    assert response.status_code == 422
    assert response.json() == {
        "detail": "invalid request (query.heatmap: Input should be a valid boolean, unable to interpret input)"
    }


@pytest.mark.parametrize("path, method", [("/predict", "post"), ("/model", "get"), ("/health", "get")])
@pytest.mark.parametrize(
    "sent, says",
    [(None, "missing token"), ("Bearer wrong-token-123", "wrong token"), ("Basic c2VjcmV0LXRva2Vu", "missing token")],
)
def test_with_a_token_every_api_call_needs_it(path, method, sent, says, stand_in, client_of):
    client = client_of(stand_in, token="secret-token")
    headers = {"Authorization": sent} if sent else {}
    files = _files(("a.png", png_bytes(_glioma()))) if method == "post" else None
    refused = client.request(method, path, headers=headers, files=files)
    assert refused.status_code == 401 and refused.headers["www-authenticate"].startswith("Bearer")
    assert refused.json()["detail"].startswith(f"{says}: send the header 'Authorization: Bearer <token>'")
    allowed = client.request(method, path, headers={"Authorization": "Bearer secret-token"}, files=files)
    assert allowed.status_code == 200
    assert client.get("/").status_code == 200  # the page itself asks for the token


def test_a_full_queue_answers_503_with_retry_after_while_health_still_answers(stand_in, client_of):
    client = client_of(stand_in, workers=1, queue_size=0)
    stand_in.gate.clear()
    first = {}
    thread = threading.Thread(
        target=lambda: first.update(r=client.post("/predict", files=_files(("a.png", png_bytes(_glioma())))))
    )
    thread.start()
    try:
        assert stand_in.started.wait(10)  # the first request is being computed
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["busy"] == 1
        busy = client.post("/predict", files=_files(("b.png", png_bytes(_glioma()))))
        assert busy.status_code == 503 and int(busy.headers["retry-after"]) >= 1
        assert busy.json()["detail"].startswith("busy: 1 requests are being computed or waiting")
    finally:
        stand_in.gate.set()
        thread.join(10)
    assert first["r"].status_code == 200
    assert client.post("/predict", files=_files(("c.png", png_bytes(_glioma())))).status_code == 200


def test_nothing_is_written_outside_a_temporary_folder_nor_kept(stand_in, client_of, tmp_path, monkeypatch, listing):
    import tempfile

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    client = client_of(stand_in)
    seen_during = []
    original = stand_in.predict_proba
    stand_in.predict_proba = lambda images: (seen_during.append(listing(scratch)), original(images))[1]
    assert client.post("/predict", files=_files(("a.png", png_bytes(_glioma())))).status_code == 200
    assert client.post("/predict", files=_files(("cut.png", png_bytes(_glioma())[:200]))).status_code == 422
    assert listing(scratch) == {}
    assert seen_during == [{}]  # the upload's temporary file is gone before the model runs


def test_keep_uploads_keeps_each_predicted_upload_and_its_result(stand_in, client_of, tmp_path):
    import json

    kept = tmp_path / "kept"
    client = client_of(stand_in, keep_uploads=str(kept))
    data = png_bytes(_glioma())
    assert client.post("/predict", files=_files(("a.png", data), ("b.jpg", data))).status_code == 200
    [folder] = kept.iterdir()
    assert sorted(p.name for p in folder.iterdir()) == ["0.png", "1.png", "result.json"]
    assert (folder / "0.png").read_bytes() == data
    result = json.loads((folder / "result.json").read_text())
    assert [p["filename"] for p in result["predictions"]] == ["a.png", "b.jpg"]
    assert result["predictions"][0]["predicted"] == "notumor"


def test_the_page_loads_nothing_from_another_host(stand_in, client_of):
    import re

    from brainmri.serve.app import STATIC

    client = client_of(stand_in)
    page = client.get("/")
    assert page.status_code == 200 and "not a diagnostic device" in page.text
    assert page.headers["content-security-policy"].startswith("default-src 'self'")
    for path in STATIC.iterdir():
        text = path.read_text()
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text, re.I), path.name
        assert client.get(f"/static/{path.name}").status_code == 200
    assert client.get("/docs").status_code == 404  # FastAPI's docs would load scripts from a CDN


def test_another_predictor_is_served_with_the_heatmaps_of_its_bundle(stand_in, cnn_model, client_of, one_torch_thread):
    # How an ONNX runtime predictor is served: its probabilities, and the maps of the bundle it was exported from.
    from fastapi.testclient import TestClient

    from brainmri.serve.app import create_app

    with TestClient(create_app(stand_in, explain=cnn_model)) as client:
        response = client.post("/predict?heatmap=true", files=_files(("a.png", png_bytes(_glioma()))))
        assert client.get("/model").json()["explanation"] == "gradcam"
    [one] = response.json()["predictions"]
    assert one["probabilities"]["glioma"] == pytest.approx(stand_in.glioma(_glioma().astype(np.float32)))
    assert one["heatmap"]["method"] == "gradcam"


@pytest.mark.slow
def test_a_classical_bundle_is_explained_by_occlusion(demo_source, tmp_path, client_of):
    from brainmri.cli import main
    from brainmri.models.bundle import load_model

    assert (
        main(
            [
                "train",
                str(demo_source),
                "--out",
                str(tmp_path / "svm"),
                "--method",
                "ovo-svm",
                "--size",
                "32",
                "--no-cache",
                "--no-validation",
                "--jobs",
                "1",
                "-q",
            ]
        )
        == 0
    )
    client = client_of(load_model(tmp_path / "svm"))
    assert client.get("/model").json()["explanation"] == "occlusion"
    response = client.post("/predict?heatmap=true", files=_files(("a.png", png_bytes(_glioma()))))
    assert response.status_code == 200
    heatmap = response.json()["predictions"][0]["heatmap"]
    assert heatmap["method"] == "occlusion"
    with Image.open(io.BytesIO(base64.b64decode(heatmap["overlay_png"]))) as im:
        assert im.size == (32, 32)
