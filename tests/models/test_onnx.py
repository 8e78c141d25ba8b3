"""ONNX export of deep bundles and prediction with ONNX Runtime: agreement with PyTorch, refusals."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from brainmri.cli import main
from brainmri.data.preprocess import Preprocess
from brainmri.errors import ConfigError, DataError
from brainmri.models.bundle import load_model
from brainmri.runs.config import TrainConfig
from brainmri.runs.train import train_bundle
from brainmri.steps import final_step
from brainmri.training.device import cpu_has_bf16

onnx = pytest.importorskip("onnx")
onnxruntime = pytest.importorskip("onnxruntime")
pytest.importorskip("openvino")
pytest.importorskip("torch")

from brainmri.models import onnx as exporting  # noqa: E402  (after the skips: needs torch)
from brainmri.models.onnx import export_onnx  # noqa: E402
from brainmri.models.onnx_runtime import load_onnx  # noqa: E402

#: A tiny ayadi-cnn (32 px, 4 channels wide), predicting in float32 so that its probabilities are ONNX Runtime's.
CNN = {"size": 32, "width": 4, "epochs": 3, "batch_size": 8, "threads": 1, "precision": "fp32"}


def _train(data, out, method, params):
    config = TrainConfig(
        data=str(data), method=method, preprocess=Preprocess(size=64), params=params, validate=False, device="cpu"
    )
    return train_bundle(config, out, n_jobs=1).path


@pytest.fixture(scope="module")
def cnn(demo_source, tmp_path_factory) -> Path:
    """A tiny ayadi-cnn bundle (read-only: copy it to change it)."""
    return _train(demo_source, tmp_path_factory.mktemp("onnx") / "cnn", "ayadi-cnn", CNN)


@pytest.fixture
def cnn_copy(cnn, tmp_path) -> Path:
    return Path(shutil.copytree(cnn, tmp_path / "cnn"))


def _images(data) -> list[str]:
    return sorted(str(p) for p in Path(data).rglob("*.png"))


def test_export_writes_a_checked_graph_of_the_calibrated_probabilities(cnn_copy, demo_source):
    description = export_onnx(cnn_copy)
    path = cnn_copy / "model.onnx"
    assert description["check"]["max_abs_diff"] < 1e-4
    assert description["input"]["shape"] == ["N", 1, 32, 32]
    assert description["classes"] == ["glioma", "meningioma", "notumor", "pituitary"]
    # The file describes itself, and the description beside it says the same plus the file's hash.
    model = onnx.load(str(path))
    assert json.loads({p.key: p.value for p in model.metadata_props}["brainmri"]) == description
    beside = json.loads((cnn_copy / "model.onnx.json").read_text())
    assert {k: v for k, v in beside.items() if k not in ("file", "sha256")} == description
    # Another runtime fed the preprocessed slices gets the bundle's probabilities, temperature included.
    bundle = load_model(cnn_copy)
    paths = _images(demo_source)
    slices = bundle.model.steps[0][1].transform(paths).astype(np.float32)[:, None]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    proba = session.run(None, {"input": slices})[0]
    np.testing.assert_allclose(proba, bundle.predict_proba(paths), atol=1e-5)
    assert bundle.manifest["method"]["fitted"]["temperature"] != 1.0


def test_onnx_bundle_predicts_what_the_bundle_predicts(cnn_copy, demo_source):
    export_onnx(cnn_copy)
    torch_bundle, onnx_bundle = load_model(cnn_copy), load_onnx(cnn_copy, threads=1)
    paths = _images(demo_source)
    np.testing.assert_allclose(onnx_bundle.predict_proba(paths), torch_bundle.predict_proba(paths), atol=1e-5)
    np.testing.assert_array_equal(onnx_bundle.predict(paths), torch_bundle.predict(paths))
    arrays = [np.asarray(np.random.default_rng(k).random((50, 70)) * 255) for k in range(3)]
    np.testing.assert_allclose(onnx_bundle.predict_proba(arrays), torch_bundle.predict_proba(arrays), atol=1e-5)
    assert list(onnx_bundle.classes_) == list(torch_bundle.classes_)
    assert onnx_bundle.manifest == torch_bundle.manifest
    with pytest.raises(ConfigError, match="at least one image"):
        onnx_bundle.predict_proba([])


def test_an_export_that_disagrees_with_pytorch_is_refused_and_nothing_is_written(cnn_copy, monkeypatch):
    make_graph = exporting.torch_graph

    def without_temperature(*args):
        graph = make_graph(*args)
        graph.temperature.fill_(1.0)
        return graph

    monkeypatch.setattr(exporting, "torch_graph", without_temperature)
    before = sorted(p.name for p in cnn_copy.iterdir())
    with pytest.raises(DataError, match=r"differ from PyTorch's by up to .* \(tolerance 0.0001\); nothing was written"):
        export_onnx(cnn_copy)
    assert sorted(p.name for p in cnn_copy.iterdir()) == before


@pytest.mark.slow
@pytest.mark.parametrize(
    "method, params",
    [
        ("fcm-dwt-dnn", {"size": 64, "level": 2, "epochs": 3}),  # FCM-DWT features, then whitened PCA inside the graph
        ("mlp", {"epochs": 3}),  # classical features, then standardisation inside the graph
        ("transfer-finetune", {"size": 32, "epochs": 1, "batch_size": 8, "tta": True, "unfreeze_after": 0}),  # + mirror
    ],
)
def test_other_deep_methods_export_with_their_linear_steps_and_tta(
    demo_source, tmp_path, method, params, one_torch_thread
):
    folder = _train(demo_source, tmp_path / method, method, params)
    description = export_onnx(folder)
    assert description["check"]["max_abs_diff"] < 1e-4
    paths = _images(demo_source)
    bundle = load_model(folder)
    expected = bundle.predict_proba(paths)
    first = bundle.model.steps[0][1].transform(paths[:1])  # what the graph takes: slices, or features before PCA
    assert description["input"]["shape"] == ["N", *([1] if first.ndim == 3 else []), *first.shape[1:]]
    atol = 1e-5 if "bundle_precision" not in description["check"] else 5e-2  # transfer-finetune predicts in bf16
    np.testing.assert_allclose(load_onnx(folder).predict_proba(paths), expected, atol=atol)
    if method == "transfer-finetune":
        assert "mirror (TTA)" in description["output"]["what"]
        # Checked against bf16 too where the CPU computes it (elsewhere PyTorch predicts in float32 as well).
        assert description["check"].get("same_class_bundle_precision", 1.0) == 1.0
        assert ("bundle_precision" in description["check"]) == cpu_has_bf16()


@pytest.fixture(scope="module")
def svm(demo_source, tmp_path_factory) -> Path:
    return _train(demo_source, tmp_path_factory.mktemp("onnx") / "svm", "glcm-svm", {})


def test_a_method_without_a_network_is_refused(svm):
    with pytest.raises(ConfigError, match=r"glcm-svm ends in a CalibratedSVC, not a torch network, so it has no ONNX"):
        export_onnx(svm, svm.parent / "svm.onnx")
    assert not (svm.parent / "svm.onnx").exists()


def _foreign_onnx(path: Path) -> None:
    """A valid ONNX file that brainmri did not write (no brainmri metadata)."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [x],
        [onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(onnx.helper.make_model(graph), str(path))


@pytest.mark.parametrize(
    "target, make, match",
    [
        ("mine.onnx", lambda p: p.write_text("notes"), "an existing file that brainmri did not export"),
        ("mine.onnx", _foreign_onnx, "an existing file that brainmri did not export"),
        (
            "mine.onnx",
            lambda p: p.with_name("mine.onnx.json").write_text("{}"),
            "mine.onnx.json exists and is not a description",
        ),
        ("mine.txt", lambda p: None, "name a .onnx file"),
        ("folder.onnx", lambda p: p.mkdir(), "is a folder"),
    ],
)
def test_files_brainmri_did_not_write_are_never_replaced(cnn, tmp_path, target, make, match):
    out = tmp_path / target
    make(out)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    with pytest.raises(ConfigError, match=match):
        export_onnx(cnn, out)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before


def test_an_earlier_export_is_replaced(cnn, tmp_path):
    out = tmp_path / "model.onnx"
    first = export_onnx(cnn, out)
    (tmp_path / "model.onnx.json").write_text(json.dumps({**first, "created": "earlier"}))
    second = export_onnx(cnn, out)
    assert json.loads((tmp_path / "model.onnx.json").read_text())["created"] == second["created"] != "earlier"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.onnx.json"]


def _retrained(folder: Path) -> None:
    """What training the bundle again does to its manifest (another creation time)."""
    manifest = json.loads((folder / "manifest.json").read_text())
    (folder / "manifest.json").write_text(json.dumps({**manifest, "created": "2030-01-01T00:00:00Z"}))


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda f: (f / "model.onnx").unlink(), r"model.onnx: no such file; export it again"),
        (lambda f: (f / "model.onnx.json").unlink(), r"model.onnx.json: no such file; export it again"),
        (
            lambda f: (f / "model.onnx").write_bytes((f / "model.onnx").read_bytes() + b"\0"),
            r"model.onnx: sha256 differs from model.onnx.json",
        ),
        (lambda f: (f / "model.onnx.json").write_text("[]"), r"not a description of a brainmri ONNX export"),
        (_retrained, r"exported from another bundle, or from an earlier training of"),
    ],
)
def test_a_missing_changed_or_stale_export_is_refused(cnn_copy, damage, match):
    export_onnx(cnn_copy)
    damage(cnn_copy)
    with pytest.raises(DataError, match=match):
        load_onnx(cnn_copy)


def test_missing_onnxruntime_names_the_extra(cnn, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(
        ConfigError, match=r"onnxruntime is missing\); install them with: pip install 'brainmri\[onnx\]'"
    ):
        export_onnx(cnn, tmp_path / "model.onnx")


def test_cli_export_reports_the_check(cnn, demo_source, tmp_path, capsys):
    out = tmp_path / "exported" / "cnn.onnx"
    assert main(["export", str(cnn), "--onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out} (ayadi-cnn): input N x 1 x 32 x 32 float32, output probabilities of 4 classes" in printed
    assert "checked on 8 synthetic slices" in printed and "(tolerance 0.0001)" in printed
    assert load_onnx(cnn, out).predict(_images(demo_source)[:2]).shape == (2,)


def test_cli_export_refuses_a_classical_bundle_in_one_line(svm, error_line):
    assert main(["export", str(svm), "--onnx"]) == 2
    assert "not a torch network" in error_line("export")
    assert not (svm / "model.onnx").exists()


def test_onnx_bundle_scores_out_of_distribution_like_the_bundle(cnn_copy, demo_source):
    export_onnx(cnn_copy)
    torch_bundle, onnx_bundle = load_model(cnn_copy), load_onnx(cnn_copy, threads=1)
    paths = _images(demo_source)
    proba, ood = onnx_bundle.predict_with_ood(paths)
    expected_proba, expected_ood = torch_bundle.predict_with_ood(paths)
    np.testing.assert_allclose(proba, expected_proba, atol=1e-5)
    np.testing.assert_allclose(ood, expected_ood, atol=1e-3)  # the embedding is the graph's second output


def _predict_json(bundle, data, out, cache, *extra) -> dict:
    argv = ["predict", str(bundle), str(data), "--out", str(out), "--cache-dir", str(cache), "--threads", "1", "-q"]
    assert main([*argv, *extra]) == 0
    return json.loads(out.read_text())


def test_predict_picks_onnx_runtime_exports_once_into_the_cache_and_agrees_with_pytorch(
    cnn, demo_source, tmp_path, capsys
):
    cache = tmp_path / "cache"
    before = sorted(p.name for p in cnn.iterdir())
    auto = _predict_json(cnn, demo_source, tmp_path / "a.json", cache)
    [export] = list((cache / "onnx").glob("*/model.onnx"))  # keyed by the bundle's manifest hash
    assert sorted(p.name for p in cnn.iterdir()) == before  # nothing written into the bundle
    speed = json.loads(export.with_name("speed.json").read_text())  # every runtime timed at first use
    assert {"torch_ms", "onnx_ms", "openvino_ms"} <= set(speed)
    fastest = min(["torch", "onnx", "openvino"], key=lambda name: speed[f"{name}_ms"])
    words = {"torch": "PyTorch (the fastest here: PyTorch ", "onnx": "ONNX Runtime", "openvino": "OpenVINO"}[fastest]
    assert auto["runtime"].startswith(words) and f"({words}" in capsys.readouterr().out
    made = export.stat().st_mtime_ns
    again = _predict_json(cnn, demo_source, tmp_path / "b.json", cache, "--runtime", "onnx")
    assert again["runtime"] == "ONNX Runtime"
    assert export.stat().st_mtime_ns == made  # loaded from the cache, not exported again
    vino = _predict_json(cnn, demo_source, tmp_path / "v.json", cache, "--runtime", "openvino")
    assert vino["runtime"] == "OpenVINO" and export.stat().st_mtime_ns == made  # the same export, compiled
    torch_run = _predict_json(cnn, demo_source, tmp_path / "t.json", cache, "--runtime", "torch")
    assert torch_run["runtime"] == "PyTorch"
    for doc in (auto, again, vino):  # float32 everywhere: this network computes in float32 in PyTorch
        for got, want in zip(doc["predictions"], torch_run["predictions"], strict=True):
            assert got["predicted"] == want["predicted"]
            assert max(abs(got["proba"][c] - want["proba"][c]) for c in want["proba"]) < 1e-4
            assert abs(got["ood_score"] - want["ood_score"]) < 1e-3


def test_predict_takes_pytorch_where_onnx_runtime_cannot_run_and_says_why(
    cnn, demo_source, tmp_path, capsys, error_line
):
    cache = tmp_path / "cache"
    adapted = _predict_json(cnn, demo_source, tmp_path / "a.json", cache, "--adapt", "adabn")
    assert adapted["runtime"] == "PyTorch (--adapt adabn adapts the PyTorch network)"
    assert not cache.exists()
    argv = ["predict", str(cnn), str(demo_source), "--cache-dir", str(cache), "--runtime", "onnx", "--adapt", "tent"]
    assert main(argv) == 2
    assert "--runtime onnx: --adapt tent adapts the PyTorch network; use --runtime torch" in error_line("predict")


@pytest.mark.parametrize(
    "times, chosen, engine",
    [
        ((1.0, 2.0, 3.0), "PyTorch (the fastest here: PyTorch 1.0, ONNX Runtime 2.0, OpenVINO 3.0 ms", None),
        ((2.0, 1.0, 3.0), "ONNX Runtime", "InferenceSession"),
        ((2.0, 3.0, 1.0), "OpenVINO", "OpenVinoSession"),
    ],
)
def test_auto_takes_the_runtime_measured_fastest_at_first_use(cnn, tmp_path, times, chosen, engine):
    from brainmri.models.runtimes import load_for_prediction, onnx_cache_path

    export = onnx_cache_path(cnn, tmp_path)
    load_for_prediction(cnn, cache_dir=tmp_path, device="cpu")  # exports and times
    speed = dict(zip(["torch_ms", "onnx_ms", "openvino_ms"], times, strict=True))
    export.with_name("speed.json").write_text(json.dumps({"images": 32, **speed}))
    bundle, runtime = load_for_prediction(cnn, cache_dir=tmp_path, device="cpu")
    assert runtime.startswith(chosen)
    assert type(getattr(final_step(bundle.model), "session", None)).__name__ == (engine or "NoneType")
    # A timing without OpenVINO's (written before it was installed) is measured again, with it.
    export.with_name("speed.json").write_text(json.dumps({"images": 32, "torch_ms": 1.0, "onnx_ms": 2.0}))
    load_for_prediction(cnn, cache_dir=tmp_path, device="cpu")
    assert "openvino_ms" in json.loads(export.with_name("speed.json").read_text())


def test_int8_graph_is_kept_with_its_figures_and_predicts_like_float32(cnn_copy, demo_source, monkeypatch):
    from brainmri.models import quantise

    monkeypatch.setattr(quantise, "MIN_AGREEMENT", 0.0)  # the tiny test network's calls are close to ties
    monkeypatch.setattr(quantise, "MAX_ACCURACY_DROP", 1.0)
    description = quantise.quantise_onnx(cnn_copy, demo_source, n_calibration=8, n_check=16)
    q = description["quantisation"]
    assert q["n_check"] == 16 and 0 <= q["agreement"] <= 1 and q["calibration"] == str(demo_source)
    assert q["accuracy_drop"] == pytest.approx(q["accuracy_fp32"] - q["accuracy_int8"])
    path = cnn_copy / "model.int8.onnx"
    graph = onnx.load(str(path))
    assert any(node.op_type == "QuantizeLinear" for node in graph.graph.node)  # really quantised
    int8 = load_onnx(cnn_copy, path, threads=1)  # checked like any export of this bundle
    paths = _images(demo_source)
    assert np.abs(int8.predict_proba(paths) - load_model(cnn_copy).predict_proba(paths)).max() < 0.25
    out = cnn_copy.parent / "int8.json"  # predict with it: --onnx-file
    doc = _predict_json(cnn_copy, demo_source, out, cnn_copy.parent / "cache", "--onnx-file", str(path))
    assert doc["runtime"] == "ONNX Runtime (model.int8.onnx)"
    expected = int8.predict_proba(paths)
    got = {p["path"]: [p["proba"][c] for c in int8.classes_] for p in doc["predictions"]}
    np.testing.assert_allclose([got[p] for p in paths], expected, atol=1e-6)


def test_int8_graph_that_disagrees_with_float32_is_refused_with_the_figures(cnn_copy, demo_source, monkeypatch):
    from brainmri.models import quantise

    monkeypatch.setattr(quantise, "MIN_AGREEMENT", 1.01)  # no graph can pass
    with pytest.raises(
        DataError,
        match=r"the int8 graph calls the float32 graph's class on .*% of 16 check images "
        r"\(at least 101.0% needed\) .* nothing was written",
    ):
        quantise.quantise_onnx(cnn_copy, demo_source, n_calibration=8, n_check=16)
    assert not (cnn_copy / "model.int8.onnx").exists() and not (cnn_copy / "model.int8.onnx.json").exists()
    with pytest.raises(DataError, match=r"--calibration .*: 24 images of the bundle's classes .* 1000 needed"):
        quantise.quantise_onnx(cnn_copy, demo_source, n_calibration=500, n_check=500)


def test_predict_onnx_file_is_refused_where_pytorch_must_run(cnn_copy, demo_source, error_line):
    export_onnx(cnn_copy)
    argv = ["predict", str(cnn_copy), str(demo_source), "--onnx-file", str(cnn_copy / "model.onnx")]
    assert main([*argv, "--runtime", "torch"]) == 2
    assert "--runtime torch predicts with the bundle's own network; leave --onnx-file out" in error_line("predict")
    assert main([*argv, "--adapt", "adabn"]) == 2
    assert "--adapt adabn adapts the PyTorch network; leave --onnx-file out" in error_line("predict")


def test_cli_int8_export_needs_int8_for_calibration(cnn, demo_source, error_line):
    assert main(["export", str(cnn), "--onnx", "--calibration", str(demo_source)]) == 2
    assert "--calibration only applies with --int8; add --int8 or remove it" in error_line("export")


def test_auto_predicts_with_pytorch_when_the_cache_cannot_be_written(cnn, tmp_path):
    from brainmri.models.runtimes import load_for_prediction

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the cache folder would be")
    bundle, runtime = load_for_prediction(cnn, cache_dir=blocked, device="cpu")
    assert runtime == "PyTorch (the ONNX export failed)" and type(bundle).__name__ == "Bundle"
    with pytest.raises((OSError, ConfigError)):
        load_for_prediction(cnn, runtime="onnx", cache_dir=blocked, device="cpu")


def test_a_damaged_cached_export_is_made_again(cnn, tmp_path):
    from brainmri.models.runtimes import load_for_prediction, onnx_cache_path

    load_for_prediction(cnn, runtime="onnx", cache_dir=tmp_path, device="cpu")
    export = onnx_cache_path(cnn, tmp_path)
    export.write_bytes(export.read_bytes()[:100])  # truncated
    bundle, runtime = load_for_prediction(cnn, runtime="onnx", cache_dir=tmp_path, device="cpu")
    assert runtime == "ONNX Runtime" and export.stat().st_size > 100


_NO_TORCH = (
    "import sys\n"
    "from brainmri.cli import main\n"
    "rc = main()\n"  # the command line of the process, as the brainmri script runs it
    "print('IMPORTED', sorted(m for m in ('torch', 'onnx') if m in sys.modules))\n"
    "sys.exit(rc)\n"
)


@pytest.mark.parametrize("runtime", ["onnx", "openvino", "auto"])
def test_a_cached_export_predicts_in_a_fresh_process_without_importing_torch(
    runtime, cnn, demo_source, tmp_path, one_torch_thread
):
    import subprocess

    from brainmri.models.runtimes import onnx_cache_path
    from brainmri.training.device import surely_cpu

    if not surely_cpu("auto"):
        pytest.skip("a GPU may be here: brainmri asks torch where the network runs")
    cache = tmp_path / "cache"
    want = _predict_json(cnn, demo_source, tmp_path / "t.json", cache, "--runtime", "torch")
    _predict_json(cnn, demo_source, tmp_path / "first.json", cache, "--runtime", "onnx")  # exports into the cache
    speed = {"images": 32, "torch_ms": 3.0, "onnx_ms": 1.0, "openvino_ms": 2.0}  # auto: ONNX Runtime the fastest
    onnx_cache_path(cnn, cache).with_name("speed.json").write_text(json.dumps(speed))
    out = tmp_path / "p.json"
    argv = ["predict", str(cnn), str(demo_source), "--out", str(out), "--cache-dir", str(cache), "--runtime", runtime]
    done = subprocess.run([sys.executable, "-c", _NO_TORCH, *argv], capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr
    assert "IMPORTED []" in done.stdout
    got = json.loads(out.read_text())
    assert got["runtime"] == ("OpenVINO" if runtime == "openvino" else "ONNX Runtime")
    for row, ref in zip(got["predictions"], want["predictions"], strict=True):
        assert row["predicted"] == ref["predicted"]
        assert max(abs(row["proba"][c] - ref["proba"][c]) for c in ref["proba"]) < 1e-4
        assert abs(row["ood_score"] - ref["ood_score"]) < 1e-3
    assert "time: starting (interpreter, command line)" in done.stdout
