"""The ant colony sampler: it optimises, samples valid mixed values, is reproducible and learns from a shared study."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest

from brainmri.errors import ConfigError
from brainmri.tuning.aco import ACOSampler
from brainmri.tuning.optimisation_problems import FUNCTIONS

optuna.logging.set_verbosity(optuna.logging.WARNING)


def minimise(sampler, name: str, dim: int, n_trials: int) -> optuna.Study:
    function, bound = FUNCTIONS[name]
    study = optuna.create_study(sampler=sampler)
    study.optimize(
        lambda t: float(function(np.array([t.suggest_float(f"x{i}", -bound, bound) for i in range(dim)]))),
        n_trials=n_trials,
    )
    return study


@pytest.mark.parametrize("name, dim", [("sphere", 2), ("rosenbrock", 10), ("rastrigin", 5), ("ackley", 2)])
def test_beats_random_search_on_the_median_of_20_seeds(name, dim):
    # Same budget and seeds. A quarter lower at least: two random searches' medians differ by up to ~20% here.
    budget = 40
    aco = [minimise(ACOSampler(seed=s), name, dim, budget).best_value for s in range(20)]
    rnd = [minimise(optuna.samplers.RandomSampler(seed=s), name, dim, budget).best_value for s in range(20)]
    assert np.median(aco) < 0.75 * np.median(rnd)


def mixed_objective(trial: optuna.Trial) -> float:
    n = trial.suggest_int("n", 2, 20, step=3)
    lr = trial.suggest_float("lr", 1e-5, 1e-1, log=True)
    width = trial.suggest_int("width", 8, 512, log=True)
    dropout = trial.suggest_float("dropout", 0.0, 0.5, step=0.1)
    kind = trial.suggest_categorical("kind", ["a", "b", None])
    trial.suggest_float("fixed", 1.0, 1.0)
    penalty = 0.0 if kind == "b" else 10.0
    return penalty + (n - 11) ** 2 / 100 + (math.log10(lr) + 3) ** 2 + (math.log2(width) - 6) ** 2 / 10 + dropout


def test_mixed_space_values_are_valid_and_the_best_option_wins():
    sampler = ACOSampler(seed=0, n_startup_trials=5)
    study = optuna.create_study(sampler=sampler)
    study.optimize(mixed_objective, n_trials=60)
    late = [t.params["kind"] for t in study.trials[30:]]
    assert late.count("b") > len(late) / 2  # ACO_MV's rule favours the option of the best trials
    assert study.best_value < 1.0
    # The colony's own proposals (Optuna would silently replace an invalid one by a random value).
    trial = study.ask()
    space = sampler.infer_relative_search_space(study, trial)
    assert set(space) == {"n", "lr", "width", "dropout", "kind"}  # "fixed" has a single value: nothing to sample
    for _ in range(50):
        params = sampler.sample_relative(study, trial, space)
        assert set(params) == set(space)
        for name, value in params.items():
            assert space[name]._contains(space[name].to_internal_repr(value)), (name, value)
        assert isinstance(params["n"], int) and isinstance(params["width"], int)


def test_categorical_only_space():
    def objective(trial):
        return sum(trial.suggest_categorical(f"c{i}", [0, 1, 2, 3]) != 2 for i in range(3))

    study = optuna.create_study(sampler=ACOSampler(seed=0, n_startup_trials=5, de_rate=1.0, local_search_rate=0.0))
    study.optimize(objective, n_trials=40)
    assert study.best_value == 0


def test_conditional_parameters_are_sampled_too():
    def objective(trial):
        kernel = trial.suggest_categorical("kernel", ["rbf", "linear"])
        c = trial.suggest_float("C", 1e-3, 1e3, log=True)
        gamma = trial.suggest_float("gamma", 1e-4, 1.0, log=True) if kernel == "rbf" else 1.0
        return abs(math.log10(c)) + abs(math.log10(gamma) + 2)

    study = optuna.create_study(sampler=ACOSampler(seed=1, n_startup_trials=5))
    study.optimize(objective, n_trials=30)
    gammas = [t.params["gamma"] for t in study.trials if "gamma" in t.params]
    assert gammas and all(1e-4 <= g <= 1.0 for g in gammas)
    assert all(1e-3 <= t.params["C"] <= 1e3 for t in study.trials)


def test_an_integer_shared_by_the_whole_archive_still_moves():
    sampler = ACOSampler(seed=0, local_search_rate=0.0, de_rate=0.0)
    study = optuna.create_study(sampler=sampler)
    dists = {"n": optuna.distributions.IntDistribution(0, 10), "x": optuna.distributions.FloatDistribution(0, 1)}
    for i in range(12):
        study.add_trial(optuna.trial.create_trial(params={"n": 5, "x": i / 12}, distributions=dists, value=float(i)))
    trial = study.ask()
    moved = [sampler.sample_relative(study, trial, dists)["n"] != 5 for _ in range(400)]
    assert 0.01 < np.mean(moved) < 0.1


def test_same_seed_same_trials_other_seed_other_trials():
    def params(seed):
        return [t.params for t in minimise(ACOSampler(seed=seed), "rastrigin", 3, 25).trials]

    assert params(7) == params(7)
    assert params(7) != params(8)


def test_archive_is_rebuilt_from_trials_of_other_workers():
    storage = optuna.storages.InMemoryStorage()
    mine = optuna.create_study(storage=storage, study_name="shared", sampler=ACOSampler(seed=0, archive_size=5))
    mine.optimize(lambda t: t.suggest_float("x", -10, 10) ** 2 + t.suggest_float("y", -10, 10) ** 2, n_trials=20)
    assert all(abs(t.params["x"]) < 9 for t in mine.trials[-5:])  # it converged towards (0, 0)
    # Another worker, with its own sampler on the same storage, finishes five better trials near (9, 9).
    other = optuna.load_study(storage=storage, study_name="shared", sampler=ACOSampler(seed=1))
    dists = {"x": optuna.distributions.FloatDistribution(-10, 10), "y": optuna.distributions.FloatDistribution(-10, 10)}
    for i in range(5):
        other.add_trial(
            optuna.trial.create_trial(
                params={"x": 9.0 + i / 10, "y": 9.0 - i / 10}, distributions=dists, value=-1.0 - i
            )
        )
    # The first sampler's next ants follow them: its archive comes from the study, not from its own memory.
    for _ in range(5):
        trial = mine.ask(dists)
        assert trial.params["x"] > 7 and trial.params["y"] > 7


def test_maximize():
    def objective(trial):
        return -float(FUNCTIONS["sphere"][0](np.array([trial.suggest_float(f"x{i}", -5, 5) for i in range(3)])))

    aco, rnd = [], []
    for seed in range(5):
        for sampler, out in ((ACOSampler(seed=seed), aco), (optuna.samplers.RandomSampler(seed=seed), rnd)):
            study = optuna.create_study(direction="maximize", sampler=sampler)
            study.optimize(objective, n_trials=40)
            out.append(study.best_value)
    assert np.median(aco) > np.median(rnd)
    assert np.median(aco) > -0.5


def test_pruned_and_failed_trials_are_left_out_of_the_archive():
    def objective(trial):
        x = trial.suggest_float("x", -10, 10)
        if x < -2:
            trial.report(-1e6, step=0)  # a tempting intermediate value: the archive must not use it
            raise optuna.TrialPruned()
        if x > 8:
            raise ValueError("this trial fails")
        return (x - 3) ** 2

    study = optuna.create_study(sampler=ACOSampler(seed=0))
    study.optimize(objective, n_trials=60, catch=(ValueError,))
    states = [t.state for t in study.trials]
    assert optuna.trial.TrialState.PRUNED in states[:10] and optuna.trial.TrialState.FAIL in states[:10]
    assert states[30:].count(optuna.trial.TrialState.PRUNED) <= 3
    assert study.best_value < 1e-3


def stagnating(trial):
    """A plateau: once |x| < 1 is found, nothing improves."""
    return float(math.floor(abs(trial.suggest_float("x", -10, 10))))


@pytest.mark.parametrize("patience, far_at_least, far_at_most", [(10, 5, 40), (0, 0, 2)])
def test_restart_explores_again_after_stagnation(patience, far_at_least, far_at_most):
    study = optuna.create_study(sampler=ACOSampler(seed=0, n_startup_trials=5, restart_patience=patience))
    study.optimize(stagnating, n_trials=80)
    far = sum(abs(t.params["x"]) > 2 for t in study.trials[40:])
    assert far_at_least <= far <= far_at_most
    assert study.best_value == 0.0


def test_multi_objective_study_is_refused():
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=ACOSampler(seed=0))
    with pytest.raises(ConfigError, match="2 objectives.*NSGAIISampler"):
        study.optimize(lambda t: (t.suggest_float("x", 0, 1), 1.0), n_trials=1)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"archive_size": 1}, r"archive_size=1: must be an integer >= 2"),
        ({"q": 0}, r"q=0: must be a number > 0"),
        ({"xi": float("nan")}, r"xi=nan: must be a number > 0"),
        ({"n_startup_trials": 1}, r"n_startup_trials=1: must be an integer >= 2"),
        ({"de_rate": 1.5}, r"de_rate=1.5: must be a number in \[0, 1\]"),
        ({"de_rate": 0.6, "local_search_rate": 0.6}, r"local_search_rate \+ de_rate=1.2: must be at most 1"),
        ({"restart_patience": -1}, r"restart_patience=-1: must be None or an integer >= 0"),
    ],
)
def test_bad_settings_are_refused_at_construction(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        ACOSampler(**kwargs)


@pytest.mark.parametrize("name, optimum", [("sphere", 0.0), ("rosenbrock", 1.0), ("rastrigin", 0.0), ("ackley", 0.0)])
def test_optimisation_problems_are_vectorised_with_minimum_zero(name, optimum):
    function, bound = FUNCTIONS[name]
    points = np.random.default_rng(0).uniform(-bound, bound, size=(50, 4))
    values = function(points)
    assert values.shape == (50,) and np.all(values > 0)
    assert np.allclose(values, [function(p) for p in points])
    assert function(np.full(4, optimum)) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("module", ["brainmri.tuning.aco", "brainmri.tuning.optimisation_problems"])
def test_docstring_examples(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
