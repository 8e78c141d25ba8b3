import json
import re

import numpy as np
import pytest

from brainmri.cli import main
from brainmri.data.shifts import SHIFTS
from brainmri.data.synthetic import write_demo_data
from brainmri.errors import ConfigError
from brainmri.evaluation.shift import shift_subset
from brainmri.runs.config import BenchmarkConfig

COMMON = ["--methods", "rf", "--cv", "3", "--n-boot", "50", "--size", "48", "--jobs", "1", "-q"]
SHIFTED = ["--shift", "rician-noise,bit-depth", "--shift-severities", "1,5"]


@pytest.fixture(scope="module")
def shift_runs(tmp_path_factory):
    """The same benchmark with and without ``--shift``, sharing one feature cache (the shifted run first)."""
    root = tmp_path_factory.mktemp("shift")
    data = write_demo_data(root / "data", n=9, seed=5, size=64)
    cache = ["--cache-dir", str(root / "cache")]
    assert main(["benchmark", str(data), *COMMON, *cache, *SHIFTED, "--out", str(root / "shifted")]) == 0
    assert main(["benchmark", str(data), *COMMON, *cache, "--out", str(root / "clean")]) == 0
    read = lambda name: json.loads((root / name / "results.json").read_text())  # noqa: E731
    return root, read("shifted"), read("clean")


def test_results_have_a_shift_section_per_method(shift_runs):
    root, shifted, _ = shift_runs
    assert shifted["config"]["shift"] == ["rician-noise", "bit-depth"]
    assert shifted["shift"]["severities"] == [1, 5]
    assert shifted["shift"]["shifts"]["bit-depth"]["levels"] == list(SHIFTS["bit-depth"].levels)
    assert shifted["shift"]["subset"] == "all 36 test items"
    block = shifted["methods"]["rf"]["shift"]
    assert block["n_items"] == 36
    assert set(block["shifts"]) == {"rician-noise", "bit-depth"}
    for by_severity in block["shifts"].values():
        assert set(by_severity) == {"1", "5"}
        for metrics in by_severity.values():
            assert set(metrics) == {"accuracy", "balanced_accuracy", "auc"}
            assert all(m["ci_low"] <= m["value"] <= m["ci_high"] for m in metrics.values())
    mean = block["mean_over_shifts"]
    assert mean["5"]["accuracy"] == pytest.approx(
        np.mean([block["shifts"][n]["5"]["accuracy"]["value"] for n in block["shifts"]])
    )
    assert shifted["methods"]["rf"]["timing_s"]["shifted_tests"] > 0


def test_severe_noise_lowers_accuracy_and_the_clean_score_is_the_clean_run(shift_runs):
    _, shifted, clean = shift_runs
    block = shifted["methods"]["rf"]["shift"]
    clean_accuracy = clean["methods"]["rf"]["metrics"]["accuracy"]["value"]
    # The shifted run's own clean scores are those of a run without shifts on the same cache:
    # the shifted images, cached by their pixels, left no wrong feature rows behind.
    assert shifted["methods"]["rf"]["metrics"] == clean["methods"]["rf"]["metrics"]
    assert block["clean"]["accuracy"]["value"] == pytest.approx(clean_accuracy)
    noise = block["shifts"]["rician-noise"]
    # Noise at a sixth of the intensity range drowns the synthetic lesions: accuracy falls well below clean.
    assert noise["5"]["accuracy"]["value"] < clean_accuracy - 0.15
    assert block["mean_over_shifts"]["5"]["accuracy"] < block["mean_over_shifts"]["clean"]["accuracy"]


def test_the_report_has_the_shift_table_and_plots(shift_runs):
    root, _, _ = shift_runs
    html = (root / "shifted/report.html").read_text()
    section = html[html.index('<h2 id="shift">') : html.index('<h2 id="ood">')]
    assert "Robustness to acquisition shifts" in section and "Mean over shifts" in section
    assert "severity 5 (severe)" in section and "rician-noise" in section and "Rician" in section
    assert section.count("data:image/png;base64") == 2  # the summary bars and rf's accuracy against severity
    assert {p.name for p in (root / "shifted/figures").glob("shift*.png")} == {"shift_summary.png", "shift_rf.png"}
    clean_html = (root / "clean/report.html").read_text()
    assert 'id="shift"' not in clean_html and '"shift"' not in (root / "clean/results.json").read_text()


def test_rerun_reuses_the_shifted_predictions(shift_runs, capsys):
    root, shifted, _ = shift_runs
    data = root / "data"
    argv = [
        "benchmark",
        str(data),
        *COMMON[:-1],
        "--cache-dir",
        str(root / "cache"),
        *SHIFTED,
        "--out",
        str(root / "shifted"),
    ]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "rf fold0 (1/3): done earlier, reusing" in captured.err
    assert "shift rician-noise" not in captured.err
    assert re.search(r"rf: clean \d\.\d{3}, severity 1 \d\.\d{3} \([+-]\d+\.\d\), severity 5 \(severe\)", captured.out)
    rerun = json.loads((root / "shifted/results.json").read_text())
    assert rerun["methods"]["rf"]["shift"] == shifted["methods"]["rf"]["shift"]


def test_progress_has_a_line_per_shift(tmp_path, capsys):
    data = write_demo_data(tmp_path / "data", n=8, seed=1, size=48)
    argv = [
        "benchmark",
        str(data),
        *COMMON[:-1],
        "--no-cache",
        "--shift",
        "blur,jpeg",
        "--shift-severities",
        "3",
        "--shift-max-items",
        "6",
        "--out",
        str(tmp_path / "out"),
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    for n, name in enumerate(["blur", "jpeg"], start=1):
        assert f"rf fold0 (1/3): shift {name} ({n}/2): 6 images at severity 3 in " in err
    results = json.loads((tmp_path / "out/results.json").read_text())
    assert results["methods"]["rf"]["shift"]["n_items"] == 3 * 6 <= results["methods"]["rf"]["n_test"]
    assert "a stratified sample of at most 6 per split" in results["shift"]["subset"]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--shift", "blur,fog"], r"--shift: unknown shift 'fog'; choose among all, gamma, window, bias-field, blur"),
        (["--shift", "--shift-severities", "1,7"], r"--shift-severities must be distinct integers from 1 to 5"),
        (
            ["--shift", "--shift-severities", "mild"],
            r"--shift-severities must be distinct integers from 1 to 5 .*'mild'",
        ),
        (["--shift", "--shift-severities", "3,3"], r"--shift-severities must be distinct integers from 1 to 5"),
        (["--shift-severities", "1"], r"--shift-severities only applies with --shift"),
        (["--shift-max-items", "5"], r"--shift-max-items only applies with --shift"),
        (["--shift", "--shift-max-items", "0"], r"--shift-max-items must be a positive integer"),
    ],
)
def test_bad_shift_options_are_one_line_errors(demo_data, tmp_path, extra, message, error_line):
    assert main(["benchmark", str(demo_data), "--out", str(tmp_path / "b"), "--no-cache", "-q", *extra]) == 2
    line = error_line("benchmark")
    assert re.search(message, line), line
    assert not (tmp_path / "b").exists()


def test_a_config_without_shifts_records_no_shift_settings():
    config = BenchmarkConfig(data="d", methods=("rf",))
    assert not any(key.startswith("shift") for key in config.to_dict())
    shifted = BenchmarkConfig(data="d", methods=("rf",), shift=["blur"], shift_severities=[5, 1])
    assert shifted.to_dict()["shift"] == ("blur",) and shifted.to_dict()["shift_severities"] == (1, 5)
    with pytest.raises(ConfigError, match="unknown shift 'snow'"):
        BenchmarkConfig(data="d", methods=("rf",), shift=("snow",))


def test_the_subset_keeps_each_class_share_and_is_seeded():
    labels = np.array(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    test = np.arange(100)
    subset = shift_subset(labels, test, 10, seed=3)
    assert len(subset) == 10 and list(np.unique(labels[subset], return_counts=True)[1]) == [5, 3, 2]
    np.testing.assert_array_equal(subset, shift_subset(labels, test, 10, seed=3))
    assert not np.array_equal(subset, shift_subset(labels, test, 10, seed=4))
    np.testing.assert_array_equal(shift_subset(labels, test[::-1], None, seed=3), test)


def _shift_results(severities, methods=("glcm-svm",)):
    """Hand-made results of a shift run: shift k at severity s has accuracy 0.9 - 0.1 * s - 0.05 * k."""

    def metric(v):
        return {"value": v, "ci_low": v - 0.02, "ci_high": v + 0.02}

    names = list(SHIFTS)[:3]
    shifts = {
        n: {
            str(s): {m: metric(0.9 - 0.1 * s - 0.05 * k) for m in ("accuracy", "balanced_accuracy", "auc")}
            for s in severities
        }
        for k, n in enumerate(names)
    }
    mean = {"clean": {m: 0.95 for m in ("accuracy", "balanced_accuracy", "auc")}}
    mean.update(
        {
            str(s): {
                m: float(np.mean([0.9 - 0.1 * s - 0.05 * k for k in range(3)]))
                for m in ("accuracy", "balanced_accuracy", "auc")
            }
            for s in severities
        }
    )
    block = {
        "n_items": 10,
        "clean": {m: metric(0.95) for m in ("accuracy", "balanced_accuracy", "auc")},
        "shifts": shifts,
        "mean_over_shifts": mean,
    }
    return {"shift": {"severities": list(severities)}, "methods": {m: {"shift": block} for m in methods}}


@pytest.mark.parametrize("severities, methods", [((1, 2, 3, 4, 5), ("glcm-svm",)), ((3,), ("a", "b", "c", "d"))])
def test_shift_figures_draw_the_means_and_every_shift(severities, methods):
    from brainmri.report.charts import figure_png
    from brainmri.report.shift_figures import shift_severity_figure, shift_summary_figure

    results = _shift_results(severities, methods)
    summary = shift_summary_figure(results)
    heights = [round(p.get_height(), 6) for p in summary.axes[0].patches]
    expected = [0.95] * len(methods) + [
        round(results["methods"][methods[0]]["shift"]["mean_over_shifts"][str(s)]["accuracy"], 6)
        for s in severities
        for _ in methods
    ]
    assert heights == expected
    lines = shift_severity_figure(results["methods"][methods[0]]["shift"], severities, "t").axes[0].get_lines()
    assert [line.get_label() for line in lines] == [*list(SHIFTS)[:3], "mean over shifts"]
    assert list(lines[1].get_ydata()) == [0.95, *(0.9 - 0.1 * s - 0.05 for s in severities)]
    assert figure_png(summary).startswith(b"\x89PNG")  # drawn without a layout warning (warnings are errors)
