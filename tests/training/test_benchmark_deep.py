"""A deep method in the benchmark runner: settings, progress, history, learning curves and refusals."""

import json
import sys

import numpy as np
import pytest
import torch

from brainmri.cli import main
from brainmri.data.preprocess import Preprocess
from brainmri.errors import ConfigError
from brainmri.models.catalog import get_method
from brainmri.runs.benchmark import run_benchmark
from brainmri.runs.config import BenchmarkConfig, parse_params

TINY = {"size": 32, "width": 4, "epochs": 2, "batch_size": 8}


def config(data, **kw):
    base = dict(
        data=str(data),
        methods=("ayadi-cnn",),
        cv=2,
        n_boot=20,
        preprocess=Preprocess(size=48),
        params={"ayadi-cnn": TINY},
    )
    return BenchmarkConfig(**{**base, **kw})


@pytest.mark.slow
def test_a_deep_method_runs_like_any_other_and_leaves_its_learning_curves(demo_data, tmp_path):
    lines = []
    results = run_benchmark(
        config(demo_data, methods=("ayadi-cnn", "glcm-svm")),
        tmp_path / "out",
        n_jobs=1,
        device="cpu",
        on_event=lines.append,
    )
    entry = results["methods"]["ayadi-cnn"]
    assert set(entry["history"]) == {"fold0", "fold1"}
    assert all([r["epoch"] for r in h] == [1, 2] for h in entry["history"].values())
    assert "history" not in results["methods"]["glcm-svm"]
    assert entry["params"]["fold0"]["inner_cv"].startswith("StratifiedGroupKFold holdout")
    assert results["config"]["params"] == {"ayadi-cnn": TINY}
    assert any("ayadi-cnn fold0 (1/2): epoch 2/2 train loss" in line for line in lines)
    out = tmp_path / "out"
    assert (out / "units" / "ayadi-cnn" / "fold0.work" / "training_log.csv").exists()
    assert (out / "figures" / "learning_ayadi-cnn.png").exists()
    assert "learning curves of ayadi-cnn" in (out / "report.html").read_text()
    np.testing.assert_allclose(
        np.sum(json.loads((out / "units" / "ayadi-cnn" / "fold1.json").read_text())["proba"], 1), 1.0, atol=1e-5
    )


@pytest.mark.parametrize(
    "params, message",
    [
        (
            {"ayadi-cnn": {"epoch": 3}},
            r"--params ayadi-cnn.epoch: ayadi-cnn has no setting 'epoch'; its settings: size, epochs",
        ),
        ({"glcm-svm": {"C": 1}}, r"--params names method 'glcm-svm', which is not among --methods"),
    ],
)
def test_unknown_settings_are_refused_before_anything_is_written(demo_data, tmp_path, params, message):
    with pytest.raises(ConfigError, match=message):
        run_benchmark(config(demo_data, params=params), tmp_path / "out", n_jobs=1)
    assert not (tmp_path / "out").exists()


def test_a_classical_method_refuses_a_setting_it_does_not_have():
    with pytest.raises(ConfigError, match="glcm-svm has no setting 'Cee'; its settings: kernel, C, gamma, degree"):
        get_method("glcm-svm").check_params({"Cee": 1})


def test_a_deep_method_without_torch_names_the_extra(demo_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ConfigError, match=r"ayadi-cnn needs PyTorch.*pip install 'brainmri\[deep\]'"):
        run_benchmark(config(demo_data), tmp_path / "out", n_jobs=1)
    assert not (tmp_path / "out").exists()


def test_cuda_without_a_gpu_stops_the_command_in_one_line(demo_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    status = main(
        [
            "benchmark",
            str(demo_data),
            "--methods",
            "ayadi-cnn",
            "--device",
            "cuda",
            "--out",
            str(tmp_path / "out"),
            "--no-cache",
            "-q",
        ]
    )
    err = capsys.readouterr().err
    assert status == 2 and err.count("\n") == 1
    assert "--device cuda: torch sees no CUDA GPU" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "text, expected",
    [
        ("ayadi-cnn.epochs=5", {"ayadi-cnn": {"epochs": 5}}),
        (
            "ayadi-cnn.lr=1e-3, ayadi-cnn.precision=fp32,mlp.patience=null",
            {"ayadi-cnn": {"lr": 0.001, "precision": "fp32"}, "mlp": {"patience": None}},
        ),
        ("ayadi-cnn.augment=false", {"ayadi-cnn": {"augment": False}}),
        (None, None),
    ],
)
def test_inline_params(text, expected):
    assert parse_params(text) == expected


def test_params_from_a_json_file(tmp_path):
    path = tmp_path / "p.json"
    path.write_text('{"ayadi-cnn": {"epochs": 4}}')
    assert parse_params(str(path)) == {"ayadi-cnn": {"epochs": 4}}
    path.write_text('{"ayadi-cnn": 4}')
    with pytest.raises(ConfigError, match=r"p.json: expected a JSON object such as"):
        parse_params(str(path))


@pytest.mark.parametrize("text", ["epochs=5", "ayadi-cnn.epochs", "ayadi-cnn.=3", ".epochs=3"])
def test_malformed_inline_params_are_refused(text):
    with pytest.raises(ConfigError, match=r"--params: '.*' is not of the form method.setting=value"):
        parse_params(text)


def test_classical_methods_never_import_torch():
    import subprocess

    code = (
        "import sys; from brainmri.models.catalog import available_methods; "
        "from brainmri.runs import benchmark; from brainmri.training import loop; "
        "[s.build() for s in available_methods().values() if s.family == 'classical']; "
        "print('torch' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
