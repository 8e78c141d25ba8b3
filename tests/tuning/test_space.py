import warnings

import pytest

optuna = pytest.importorskip("optuna")

from brainmri.errors import ConfigError  # noqa: E402
from brainmri.models.catalog import available_methods, get_method
from brainmri.tuning.space import load_space, suggest  # noqa: E402
from brainmri.tuning.study import SAMPLERS, make_pruner, make_sampler, parse_samplers, redact  # noqa: E402


@pytest.mark.parametrize("name", list(available_methods()))
def test_every_method_declares_a_space_of_its_own_settings(name):
    spec = get_method(name)
    space = load_space(spec)
    assert space and set(space) <= set(spec.settings())
    # Every value of the space builds the method (no setting the builder refuses).
    for draw in ("low", "high"):
        params = {
            k: (e["choices"][0 if draw == "low" else -1] if e["type"] == "categorical" else e[draw])
            for k, e in space.items()
        }
        spec.check_params(params)


@pytest.mark.parametrize("sampler", SAMPLERS)
def test_every_optuna_sampler_searches_a_mixed_space_without_warnings(sampler):
    """Each sampler draws valid values of the glcm-svm space (a categorical, an int, log floats), seeded."""
    space = load_space(get_method("glcm-svm"))

    def objective(trial):
        params = suggest(trial, space)
        assert params["kernel"] in ("linear", "rbf", "poly") and 2 <= params["degree"] <= 3
        assert 0.01 <= params["C"] <= 300 and 0.00025 <= params["gamma"] <= 0.1
        return -abs(params["C"] - 1) - params["degree"]

    runs = []
    for _ in range(2):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            optuna.logging.set_verbosity(optuna.logging.ERROR)
            study = optuna.create_study(
                direction="maximize", sampler=make_sampler(sampler, seed=3), pruner=make_pruner("none")
            )
            study.optimize(objective, n_trials=4)
        runs.append([t.params for t in study.trials])
    assert runs[0] == runs[1]  # same seed, same configurations


def test_a_space_file_replaces_the_declared_space(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(
        '{"C": {"type": "float", "low": 1, "high": 10, "log": true}, "kernel": {"type": "categorical", '
        '"choices": ["rbf"]}}'
    )
    assert load_space(get_method("glcm-svm"), path) == {
        "C": {"type": "float", "low": 1, "high": 10, "log": True},
        "kernel": {"type": "categorical", "choices": ["rbf"]},
    }


@pytest.mark.parametrize(
    "text, message",
    [
        ("[]", r"expected a non-empty JSON object"),
        ("{", r"not a JSON object of setting -> range"),
        (
            '{"C": {"type": "normal", "low": 1, "high": 2}}',
            r"C must be an object with \"type\" one of float, int, categorical",
        ),
        ('{"degree": {"type": "int", "low": 2.5, "high": 3}}', r"degree needs int \"low\" and \"high\", got low=2.5"),
        (
            '{"degree": {"type": "int", "low": 3, "high": 3}}',
            r"degree has an empty range \(low 3 must be below high 3\)",
        ),
        ('{"kernel": {"type": "categorical", "choices": [["rbf"]]}}', r"kernel choices must be numbers, strings"),
    ],
)
def test_a_bad_space_file_is_refused(tmp_path, text, message):
    path = tmp_path / "space.json"
    path.write_text(text)
    with pytest.raises(ConfigError, match=r"--space .*space.json: " + message):
        load_space(get_method("glcm-svm"), path)


@pytest.mark.parametrize(
    "text, message",
    [
        ("tpe", r"--compare needs at least two different samplers, got 'tpe'"),
        ("tpe,tpe", r"--compare needs at least two different samplers"),
        ("tpe,sgd", r"--sampler 'sgd' is not a sampler; choose one of aco, tpe"),
    ],
)
def test_bad_compare_lists_are_refused(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_samplers(text)


def test_passwords_never_reach_messages():
    assert redact("postgresql://tuner:s3cret@db:5432/studies") == "postgresql://tuner:***@db:5432/studies"
    assert redact("postgresql://tuner@db/studies") == "postgresql://tuner@db/studies"
