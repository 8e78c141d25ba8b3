"""``brainmri benchmark`` with the out-of-distribution score and ``--adapt``."""

import csv
import json

import pytest

from brainmri.cli import main
from brainmri.data.synthetic import write_demo_data

COMMON = [
    "--cv",
    "2",
    "--n-boot",
    "20",
    "--size",
    "48",
    "--jobs",
    "1",
    "--no-cache",
    "-q",
    "--shift",
    "rician-noise",
    "--shift-severities",
    "1,5",
]
TINY_CNN = "ayadi-cnn.size=32,ayadi-cnn.epochs=2,ayadi-cnn.width=4,ayadi-cnn.batch_size=8,ayadi-cnn.threads=1"


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return write_demo_data(tmp_path_factory.mktemp("robust") / "data", n=9, seed=5, size=64)


@pytest.mark.slow
def test_the_ood_score_separates_severe_noise_from_clean_images(data, tmp_path):
    assert main(["benchmark", str(data), "--methods", "rf", *COMMON, "--out", str(tmp_path / "out")]) == 0
    ood = json.loads((tmp_path / "out/results.json").read_text())["methods"]["rf"]["ood"]
    assert ood["shift"]["severity"] == 5 and ood["shift"]["auc"] > 0.9
    assert "embedding and of the image's acquisition descriptors" in ood["detector"]
    assert ood["shift"]["auc_per_shift"] == {"rician-noise": ood["shift"]["auc"]}
    assert ood["test_flagged"] < ood["shift"]["flagged"]
    with open(tmp_path / "out/predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 36 and all(0 <= float(r["ood_score"]) <= 1 for r in rows)
    report = (tmp_path / "out/report.html").read_text()
    assert '<h2 id="ood">Unlike the training data' in report and "above the 95th training percentile" in report
    assert f'<td class="num">{ood["shift"]["auc"]:.3f}</td>' in report


@pytest.mark.slow
def test_adapt_runs_the_deep_method_adapted_and_records_it(data, tmp_path, one_torch_thread):
    out = tmp_path / "out"
    assert (
        main(
            [
                "benchmark",
                str(data),
                "--methods",
                "ayadi-cnn",
                "--params",
                TINY_CNN,
                *COMMON,
                "--adapt",
                "adabn",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    results = json.loads((out / "results.json").read_text())
    assert results["config"]["adapt"] == "adabn"
    assert set(results["methods"]["ayadi-cnn"]["shift"]["shifts"]) == {"rician-noise"}


@pytest.mark.slow
def test_several_adaptations_test_one_trained_network_each_way_and_compare_them(data, tmp_path, one_torch_thread):
    def run(adapt):
        out = tmp_path / adapt
        assert (
            main(
                [
                    "benchmark",
                    str(data),
                    "--methods",
                    "ayadi-cnn",
                    "--params",
                    TINY_CNN,
                    *COMMON,
                    "--adapt",
                    adapt,
                    "--out",
                    str(out),
                ]
            )
            == 0
        )
        return json.loads((out / "results.json").read_text())

    both, plain, adabn = run("none,adabn"), run("none"), run("adabn")
    methods = both["methods"]
    assert list(methods) == ["ayadi-cnn", "ayadi-cnn+adabn"]
    for name, alone in (("ayadi-cnn", plain), ("ayadi-cnn+adabn", adabn)):  # each as if run on its own
        for block in ("metrics", "shift", "confusion"):
            assert methods[name][block] == alone["methods"]["ayadi-cnn"][block]
    assert methods["ayadi-cnn"]["metrics"] != methods["ayadi-cnn+adabn"]["metrics"]
    assert methods["ayadi-cnn+adabn"]["timing_s"]["fit"] == methods["ayadi-cnn"]["timing_s"]["fit"]  # trained once
    assert methods["ayadi-cnn+adabn"]["history"] == methods["ayadi-cnn"]["history"]
    assert [(c["a"], c["b"]) for c in both["comparisons"]][0] in {
        ("ayadi-cnn", "ayadi-cnn+adabn"),
        ("ayadi-cnn+adabn", "ayadi-cnn"),
    }


@pytest.mark.parametrize(
    "adapt, message",
    [
        ("none,none", "--adapt 'none,none': an adaptation is named twice"),
        ("none,bn", "--adapt 'bn': unknown test-time adaptation; valid: none, adabn, tent"),
    ],
)
def test_a_bad_list_of_adaptations_is_refused_before_reading(data, tmp_path, error_line, adapt, message):
    assert main(["benchmark", str(data), "--methods", "ayadi-cnn", "--adapt", adapt, "--out", str(tmp_path / "o")]) == 2
    assert message in error_line("benchmark")
    assert not (tmp_path / "o").exists()


def test_adapt_is_refused_for_a_classical_method_before_reading(data, tmp_path, error_line):
    assert main(["benchmark", str(data), "--methods", "rf", "--adapt", "tent", "--out", str(tmp_path / "o")]) == 2
    assert "--adapt tent: rf classifies with CalibratedForest, not a neural network" in error_line("benchmark")
    assert not (tmp_path / "o").exists()
