import numpy as np
import pytest

torch = pytest.importorskip("torch")

from brainmri.data.synthetic import CLASSES, synthetic_slice  # noqa: E402
from brainmri.errors import ConfigError  # noqa: E402
from brainmri.models.classical import glcm_svm  # noqa: E402
from brainmri.models.torch_classifier import TorchClassifier  # noqa: E402
from brainmri.nets.cnn import ayadi_cnn  # noqa: E402
from brainmri.nets.dnn import mlp  # noqa: E402
from brainmri.robust.adapt import adapt_model, adapt_module  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def fitted():
    rng = np.random.default_rng(3)
    X = np.stack([synthetic_slice(c, rng, 32) for c in CLASSES for _ in range(10)]).astype(np.float32)
    y = np.repeat(np.array(CLASSES), 10)
    model = TorchClassifier(
        ayadi_cnn, module_params={"width": 4}, epochs=6, batch_size=8, precision="fp32", device="cpu", seed=0
    ).fit(X, y, np.arange(40))
    return model, X, y


def shifted(X):
    """A synthetic change of scanner: contrast halved, a bright offset."""
    return (0.5 * X + 0.4).astype(np.float32)


def _bn(module):
    return [m for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def test_adabn_replaces_batch_norm_statistics_with_the_test_ones_and_keeps_the_weights(fitted):
    model, X, _ = fitted
    before = {k: v.clone() for k, v in model.module_.state_dict().items()}
    adapted = adapt_module(model.module_, shifted(X), method="adabn", device=torch.device("cpu"), batch_size=40)
    after = adapted.state_dict()
    for name, value in before.items():  # the trained module is untouched
        assert torch.equal(model.module_.state_dict()[name], value)
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in changed)
    # In one batch, the first batch norm's mean is that of the first convolution's outputs on the test images.
    with torch.no_grad():
        conv = model.module_[0](torch.from_numpy(shifted(X)).unsqueeze(1))
    torch.testing.assert_close(_bn(adapted)[0].running_mean, conv.mean((0, 2, 3)), rtol=1e-4, atol=1e-5)


def test_adabn_recovers_accuracy_lost_to_an_intensity_shift(fitted):
    model, X, y = fitted
    plain = (model.predict(shifted(X)) == y).mean()
    adapted = (adapt_model(model, "adabn").predict(shifted(X)) == y).mean()
    assert adapted > plain
    assert model.adapt == "none"  # the fitted model is not changed


def test_tent_moves_only_the_normalisation_affine_parameters(fitted):
    model, X, _ = fitted
    adapted = adapt_module(model.module_, shifted(X), method="tent", device=torch.device("cpu"), batch_size=16)
    before, after = dict(model.module_.named_parameters()), dict(adapted.named_parameters())
    bn_params = {
        f"{n}.{p}"
        for n, m in model.module_.named_modules()
        if isinstance(m, torch.nn.BatchNorm2d)
        for p in ("weight", "bias")
    }
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and moved <= bn_params
    assert not any(p.requires_grad for p in adapted.parameters())


@pytest.mark.parametrize("method", ["adabn", "tent"])
def test_adaptation_is_deterministic_for_a_seed(fitted, method):
    model, X, _ = fitted
    a = adapt_model(model, method).predict_proba(shifted(X))
    b = adapt_model(model, method).predict_proba(shifted(X))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, model.predict_proba(shifted(X)))


def test_a_classical_method_is_refused():
    with pytest.raises(
        ConfigError,
        match=r"--adapt adabn: glcm-svm classifies with CalibratedSVC, not a neural "
        "network .*use --adapt none, or a deep method",
    ):
        adapt_model(glcm_svm(), "adabn", name="glcm-svm")


@pytest.mark.parametrize(
    "builder, method, message",
    [
        (mlp, "adabn", "--adapt adabn: the network of mlp has no batch-norm layers .*use --adapt tent"),
        (
            lambda **kw: torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, kw["num_classes"])),
            "tent",
            "--adapt tent: the network of mlp has no normalisation layers with affine parameters to adapt; use --adapt none",
        ),
    ],
)
def test_a_network_without_the_layers_adapted_is_refused(builder, method, message):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 4)).astype(np.float32)
    y = np.repeat(["a", "b"], 10)
    model = TorchClassifier(builder, epochs=1, batch_size=8, device="cpu").fit(X, y)
    with pytest.raises(ConfigError, match=message):
        adapt_model(model, method, name="mlp")


def test_an_unknown_adaptation_is_refused(fitted):
    with pytest.raises(ConfigError, match=r"--adapt 'bn': unknown test-time adaptation; valid: none, adabn, tent"):
        adapt_model(fitted[0], "bn")


@pytest.mark.slow
def test_predict_adapts_a_deep_bundle_without_changing_it(demo_source, tmp_path, capsys):
    import csv
    import io
    import json

    from brainmri.cli import main

    model = tmp_path / "cnn"
    assert (
        main(
            [
                "train",
                str(demo_source),
                "--method",
                "ayadi-cnn",
                "--params",
                "ayadi-cnn.size=32,ayadi-cnn.epochs=2,ayadi-cnn.width=4,ayadi-cnn.batch_size=8,ayadi-cnn.threads=1",
                "--no-cache",
                "--jobs",
                "1",
                "--no-validation",
                "-q",
                "--out",
                str(model),
            ]
        )
        == 0
    )
    files = {p.name: p.read_bytes() for p in model.iterdir()}
    capsys.readouterr()

    def predict(*extra):
        assert main(["predict", str(model), str(demo_source), "-q", *extra]) == 0
        return [
            [float(v) for k, v in row.items() if k.startswith("p_")]
            for row in csv.DictReader(io.StringIO(capsys.readouterr().out))
        ]

    plain, adapted = predict(), predict("--adapt", "tent", "--seed", "1")
    assert adapted == predict("--adapt", "tent", "--seed", "1") and adapted != plain
    assert {p.name: p.read_bytes() for p in model.iterdir()} == files  # the bundle on disk is as trained
    out = tmp_path / "p.json"
    assert main(["predict", str(model), str(demo_source), "-q", "--adapt", "adabn", "--out", str(out)]) == 0
    document = json.loads(out.read_text())
    assert document["adapt"] == "adabn"
    # both calls are reported, with how far the adaptation moved them and the accuracy of each on labelled images
    said = capsys.readouterr().out
    rows = document["predictions"]
    classes = document["classes"]
    as_trained = [classes[max(range(len(p)), key=p.__getitem__)] for p in plain]
    assert [r["predicted_as_trained"] for r in rows] == as_trained
    changed = sum(r["predicted"] != r["predicted_as_trained"] for r in rows) / len(rows)
    check = document["adaptation"]
    assert check["method"] == "adabn" and check["calls_changed"] == pytest.approx(changed, abs=1e-4)
    assert f"adabn changed {100 * changed:.1f}% of the calls" in said
    right = sum(r["predicted_as_trained"] == r["label"] for r in rows) / len(rows)
    assert f"accuracy as trained {right:.3f}" in said
    assert all(f"risk: {risk}" in said for risk in check["risks"])


@pytest.mark.parametrize(
    "as_trained, adapted, unlike, batch_size, risks",
    [
        (["a"] * 40, ["a"] * 40, [True] * 40, 64, []),
        (["a"] * 40, ["a"] * 30 + ["b"] * 10, [True] * 40, 64, ["changed 25.0% of the calls"]),
        (["a"] * 40, ["a"] * 40, [True] * 40, 16, ["batches of 16 images (fewer than 32)"]),
        (["a"] * 40, ["a"] * 40, [False] * 30 + [True] * 10, 64, ["only 25.0% of the images look unlike"]),
        (
            ["a", "b"] * 20,
            ["a"] * 39 + ["b"],
            [True] * 40,
            64,
            ["changed", "97.5% of the calls are a (as trained: 50.0%)"],
        ),
    ],
)
def test_the_adaptation_check_states_the_risks_the_data_show(as_trained, adapted, unlike, batch_size, risks):
    from brainmri.robust.adapt import adaptation_check

    check = adaptation_check(as_trained, adapted, unlike, method="tent", batch_size=batch_size)
    assert len(check["risks"]) == len(risks)
    assert all(expected in said for expected, said in zip(risks, check["risks"], strict=True))
