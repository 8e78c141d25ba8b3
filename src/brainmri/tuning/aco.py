"""An improved ant colony optimiser (IACO) as an Optuna sampler.

Mehnatkesh et al. (2023) tuned a pretrained ResNet for brain MRI with an
"improved ant colony optimiser"; :class:`ACOSampler` makes that search
available to every brainmri method through Optuna, offline (OptunaHub's
samplers cannot be fetched here). It is the continuous ant colony
optimiser ACO_R extended to mixed spaces as in ACO_MV, plus three
improvements from the IACO literature; :class:`ACOSampler`'s docstring says
exactly which, with references.

The sampler keeps no state besides its random number generator: the solution
archive is rebuilt from the study's completed trials every time a trial
starts, so several processes (or machines, with an RDB storage) sampling the
same study all learn from every trial.
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from brainmri.errors import ConfigError

try:
    from optuna.distributions import CategoricalDistribution, IntDistribution
    from optuna.samplers import BaseSampler, RandomSampler
    from optuna.search_space import IntersectionSearchSpace
    from optuna.study import StudyDirection
    from optuna.trial import TrialState
except ImportError as exc:  # pragma: no cover - depends on the installation
    raise ConfigError(
        "the ant colony sampler needs Optuna, which is not installed; install it with pip install 'brainmri[tune]'"
    ) from exc

if TYPE_CHECKING:
    from optuna.distributions import BaseDistribution
    from optuna.study import Study
    from optuna.trial import FrozenTrial

logger = logging.getLogger(__name__)

#: Differential-evolution constants: the weight F of both difference vectors and the crossover rate CR
#: (Storn and Price 1997 recommend F = 0.5 and CR in [0.3, 0.9]).
_DE_WEIGHT = 0.5
_DE_CROSSOVER = 0.5
#: A local-search ant samples around the best solution with this fraction of the colony's spread.
_LOCAL_SCALE = 0.25


class ACOSampler(BaseSampler):
    """Improved ant colony optimisation (IACO) for mixed search spaces.

    Every trial is one ant. The archive holds the ``archive_size`` best
    completed trials of the study, ranked best first; rank ``l`` (0-based)
    weighs ``w_l = exp(-l**2 / (2 q**2 k**2)) / (q k sqrt(2 pi))`` where ``k``
    is the archive's current size (it grows with the study up to
    ``archive_size``). Numerical parameters live in the unit cube (log scales
    and integer cells mapped linearly, see below). An ant draws a guide
    solution with probability proportional to ``w_l`` and then moves in one of
    three ways:

    1. **ACO_R move** (Socha and Dorigo 2008), probability
       ``1 - local_search_rate - de_rate``: each numerical coordinate ``i`` is
       drawn from a Gaussian centred on the guide ``s_g`` with standard
       deviation ``xi * sum_e |s_e,i - s_g,i| / (k - 1)``, the archive's mean
       distance to the guide; values that leave the cube are reflected back.
    2. **Local search around the best** (the intensification step of
       IACO_R-LS, Liao et al. 2011), probability ``local_search_rate``: the
       guide is the best solution, the spread is ``_LOCAL_SCALE`` times the
       ACO_R spread around it, and the categorical choices are the best's.
       This replaces IACO_R-LS's Powell/Mtsls1 local search, which needs many
       sequential evaluations, by single samples that fit Optuna's one trial
       per ant.
    3. **Differential-evolution move** (DE/current-to-best/1/bin, Storn and
       Price 1997), probability ``de_rate``: the mutant
       ``s_g + F (s_best - s_g) + F (s_r1 - s_r2)`` (two other archive members
       ``r1``, ``r2``; ``F = 0.5``) replaces each coordinate of the ACO_R
       sample with probability ``CR = 0.5`` (at least one coordinate). The
       difference vector follows the valleys that the archive has found,
       which axis-aligned Gaussians cannot (Rosenbrock).

    Mixed spaces follow ACO_MV (Liao et al. 2014): integers and stepped
    floats are relaxed to the continuous interval ``[low - step/2, high +
    step/2]`` and rounded to the grid after sampling (so every value has the
    same width), and their spread never falls below a quarter of a grid cell
    (our addition: a value that the whole archive shares still moves to a
    neighbour in about 5% of the ants, where plain ACO_R would freeze it for
    good); log-scale parameters are sampled on ``log`` of that interval;
    a categorical parameter with options ``v_1..v_c`` picks ``v_j`` with
    probability proportional to ``w_{r_j} / u_j + q / eta``, where ``w_{r_j}``
    is the weight of the best archive member using ``v_j``, ``u_j`` the number
    of archive members using it and ``eta`` the number of options that no
    member uses (the first term is 0 for such an option, the second is
    dropped when ``eta`` is 0) - their eq. 4.

    **Restarts on stagnation** (the restart of IACO_R-LS, Liao et al. 2011):
    walking through the completed trials in order, when the best value since
    the last restart has not improved for ``restart_patience`` trials the
    colony restarts: the next ``n_startup_trials`` trials are drawn at
    random, and the archive is rebuilt from the trials since the restart plus
    the best trial of the whole study (so nothing good is lost). Because the
    walk uses the trials only, every worker sharing a study agrees on it.

    Only the parameters present with the same distribution in every
    completed trial (Optuna's intersection search space) are sampled by the
    colony; the others (conditional parameters, and all parameters during the
    first ``n_startup_trials`` trials) come from ``independent_sampler``.
    Pruned, failed and running trials are not in the archive (their value is
    missing or not comparable with a finished trial's), and do not count
    towards ``n_startup_trials``.

    Parameters
    ----------
    archive_size : int, default=20
        ``k``: the most completed trials the colony learns from, at least 2.
    q : float, default=0.1
        Locality of the search, > 0: small values make the best-ranked
        solutions the guides almost always (greedy), large values spread the
        choice over the whole archive. Also the exploration weight of unused
        categorical options.
    xi : float, default=0.7
        Spread of the Gaussian kernels relative to the archive's own spread,
        > 0; smaller converges faster (Socha and Dorigo's ``xi``, "pheromone
        evaporation").
    n_startup_trials : int, default=10
        Random trials before the colony starts (and after each restart), >= 2
        (a colony needs two solutions to measure its spread).
    local_search_rate, de_rate : float, default=0.2
        Probabilities of a local-search and of a differential-evolution ant,
        each in [0, 1] with a sum at most 1. Both 0 gives plain ACO_R/ACO_MV.
    restart_patience : int or None, default=None
        Completed trials without improvement that trigger a restart; None
        (default) means ``max(50, 10 * d)`` for ``d`` sampled parameters, 0
        turns restarts off.
    seed : int or None, default=None
        Seed of the random number generator (and of the default independent
        sampler). Workers that share a study should get different seeds.
    independent_sampler : optuna.samplers.BaseSampler or None, default=None
        Sampler for the startup trials and for parameters outside the
        intersection search space; default ``RandomSampler(seed=seed)``.

    Raises
    ------
    ConfigError
        If a parameter is out of its range (at construction), or if the
        study has more than one objective (when sampling).

    Notes
    -----
    Many workers can share one study: each rebuilds the archive from the
    storage when its trial starts, so every finished trial of every worker
    guides the next ants. Running trials are not considered (no "constant
    liar"), so workers that start at the same moment draw from the same
    archive, independently. As with Optuna's own samplers, use one instance
    per study (it caches the study's search space).

    References
    ----------
    K. Socha and M. Dorigo, "Ant colony optimization for continuous domains",
    European Journal of Operational Research 185(3):1155-1173, 2008.
    DOI: 10.1016/j.ejor.2006.06.046

    T. Liao, K. Socha, M. A. Montes de Oca, T. Stützle and M. Dorigo, "Ant
    colony optimization for mixed-variable optimization problems", IEEE
    Transactions on Evolutionary Computation 18(4):503-518, 2014.
    DOI: 10.1109/TEVC.2013.2281531

    T. Liao, M. A. Montes de Oca, D. Aydın, T. Stützle and M. Dorigo, "An
    incremental ant colony algorithm with local search for continuous
    optimization", Proceedings of GECCO 2011, ACM, 125-132 (DOI not checked:
    written offline).

    R. Storn and K. Price, "Differential evolution - a simple and efficient
    heuristic for global optimization over continuous spaces", Journal of
    Global Optimization 11:341-359, 1997. DOI: 10.1023/A:1008202821328

    S. Mehnatkesh, S. M. J. Jalali, A. Khosravi and S. Nahavandi, "An intelligent
    driven deep residual learning framework for brain tumor classification
    using MRI images", Expert Systems with Applications 213:119087, 2023.
    DOI: 10.1016/j.eswa.2022.119087

    Examples
    --------
    >>> import optuna
    >>> optuna.logging.set_verbosity(optuna.logging.WARNING)
    >>> study = optuna.create_study(sampler=ACOSampler(seed=0))
    >>> study.optimize(lambda t: t.suggest_float("x", -5, 5) ** 2, n_trials=40)
    >>> study.best_value < 0.05
    True
    """

    def __init__(
        self,
        *,
        archive_size: int = 20,
        q: float = 0.1,
        xi: float = 0.7,
        n_startup_trials: int = 10,
        local_search_rate: float = 0.2,
        de_rate: float = 0.2,
        restart_patience: int | None = None,
        seed: int | None = None,
        independent_sampler: BaseSampler | None = None,
    ) -> None:
        _check(archive_size, "archive_size", "an integer >= 2", isinstance(archive_size, int) and archive_size >= 2)
        _check(q, "q", "a number > 0", _is_number(q) and q > 0)
        _check(xi, "xi", "a number > 0", _is_number(xi) and xi > 0)
        _check(
            n_startup_trials,
            "n_startup_trials",
            "an integer >= 2",
            isinstance(n_startup_trials, int) and n_startup_trials >= 2,
        )
        for name, rate in (("local_search_rate", local_search_rate), ("de_rate", de_rate)):
            _check(rate, name, "a number in [0, 1]", _is_number(rate) and 0 <= rate <= 1)
        _check(
            local_search_rate + de_rate, "local_search_rate + de_rate", "at most 1", local_search_rate + de_rate <= 1
        )
        _check(
            restart_patience,
            "restart_patience",
            "None or an integer >= 0",
            restart_patience is None or (isinstance(restart_patience, int) and restart_patience >= 0),
        )
        self.archive_size = archive_size
        self.q = q
        self.xi = xi
        self.n_startup_trials = n_startup_trials
        self.local_search_rate = local_search_rate
        self.de_rate = de_rate
        self.restart_patience = restart_patience
        self._rng = np.random.default_rng(seed)
        self._independent_sampler = independent_sampler or RandomSampler(seed=seed)
        self._search_space = IntersectionSearchSpace()

    def reseed_rng(self) -> None:
        """Give the generator fresh entropy (Optuna calls this for each thread of ``n_jobs > 1``)."""
        self._rng = np.random.default_rng()
        self._independent_sampler.reseed_rng()

    def infer_relative_search_space(self, study: Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        """Parameters that every completed trial has with the same distribution, single values left out."""
        if len(study.directions) > 1:
            raise ConfigError(
                f"study {study.study_name!r} has {len(study.directions)} objectives; ACOSampler "
                "optimises one: use a multi-objective sampler such as NSGAIISampler"
            )
        return {name: dist for name, dist in self._search_space.calculate(study).items() if not dist.single()}

    def sample_relative(
        self, study: Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        """One ant: the parameters of ``search_space`` sampled from the archive of completed trials."""
        if not search_space:
            return {}
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        # Trials that another worker finished since infer_relative_search_space may lack a parameter or use another range.
        trials = [t for t in trials if all(t.distributions.get(name) == d for name, d in search_space.items())]
        sign = -1.0 if study.direction == StudyDirection.MAXIMIZE else 1.0
        losses = np.array([sign * t.value for t in trials], dtype=float)
        archive = self._archive(losses, len(search_space))
        if archive is None:
            return {}
        space = _UnitSpace(search_space)
        unit, choice = space.encode([trials[i] for i in archive])
        return space.decode(*self._ant(unit, choice, space))

    def sample_independent(
        self, study: Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        """A parameter outside the colony's search space, from ``independent_sampler``."""
        return self._independent_sampler.sample_independent(study, trial, param_name, param_distribution)

    def before_trial(self, study: Study, trial: FrozenTrial) -> None:
        self._independent_sampler.before_trial(study, trial)

    def after_trial(self, study: Study, trial: FrozenTrial, state: TrialState, values: list[float] | None) -> None:
        self._independent_sampler.after_trial(study, trial, state, values)

    def _archive(self, losses: np.ndarray, n_params: int) -> np.ndarray | None:
        """Indices of the archive's trials, best first, or None while the colony (re)starts at random.

        ``losses`` are the completed trials' values in trial order, negated when maximising.
        """
        patience = max(50, 10 * n_params) if self.restart_patience is None else self.restart_patience
        start, best, waited = 0, math.inf, 0
        for i, loss in enumerate(losses):
            best, waited = (loss, 0) if loss < best else (best, waited + 1)
            if patience and waited >= patience:
                start, best, waited = i + 1, math.inf, 0
        if len(losses) - start < self.n_startup_trials:
            return None
        if start:
            logger.debug("colony restarted after trial %d of the completed trials", start)
        candidates = np.arange(start, len(losses))
        ranked = candidates[np.argsort(losses[candidates], kind="stable")][: self.archive_size]
        elite = int(np.argmin(losses))
        if elite not in ranked:
            ranked = np.concatenate([[elite], ranked[: self.archive_size - 1]])
        return ranked

    def _ant(self, unit: np.ndarray, choice: np.ndarray, space: _UnitSpace) -> tuple[np.ndarray, np.ndarray]:
        """A new solution from the archive (``unit`` in [0, 1], ``choice`` indices), ranked best first."""
        rng = self._rng
        k = len(unit)
        ranks = np.arange(k)
        weights = np.exp(-(ranks**2) / (2 * (self.q * k) ** 2)) / (self.q * k * math.sqrt(2 * math.pi))
        move = rng.random()
        local = move < self.local_search_rate
        guide = 0 if local else rng.choice(k, p=weights / weights.sum())
        spread = np.maximum(self.xi * np.abs(unit - unit[guide]).sum(axis=0) / (k - 1), space.min_spread)
        if local:
            spread = _LOCAL_SCALE * spread
        new = unit[guide] + spread * rng.standard_normal(unit.shape[1])
        if move >= 1 - self.de_rate and k >= 3 and unit.shape[1]:
            r1, r2 = rng.choice(np.delete(ranks, guide), size=2, replace=False)
            mutant = unit[guide] + _DE_WEIGHT * (unit[0] - unit[guide]) + _DE_WEIGHT * (unit[r1] - unit[r2])
            cross = rng.random(unit.shape[1]) < _DE_CROSSOVER
            cross[rng.integers(unit.shape[1])] = True
            new = np.where(cross, mutant, new)
        new = 1 - np.abs(np.mod(new, 2) - 1)  # reflect into [0, 1]
        if local:
            return new, choice[0].copy()
        return new, np.array(
            [_categorical_choice(choice[:, j], n, weights, self.q, rng) for j, n in enumerate(space.n_choices)],
            dtype=int,
        )


def _categorical_choice(
    column: np.ndarray, n_options: int, weights: np.ndarray, q: float, rng: np.random.Generator
) -> int:
    """One option index drawn by ACO_MV's rule (Liao et al. 2014, eq. 4) from the archive's ``column``.

    ``column`` holds the archive members' option indices, best first; ``weights`` their rank weights.
    """
    used = np.bincount(column, minlength=n_options)
    first = np.full(n_options, len(column))
    np.minimum.at(first, column, np.arange(len(column)))  # best rank using each option
    option_weight = np.where(used > 0, weights[np.minimum(first, len(column) - 1)] / np.maximum(used, 1), 0.0)
    unused = int((used == 0).sum())
    if unused:
        option_weight = option_weight + q / unused
    return int(rng.choice(n_options, p=option_weight / option_weight.sum()))


class _UnitSpace:
    """Numerical parameters <-> the unit cube, categorical parameters <-> option indices.

    An integer or stepped parameter covers ``[low - step/2, high + step/2]``, so that rounding gives every grid
    value the same share of the cube; a log-scale one is mapped through ``log``.
    """

    def __init__(self, search_space: dict[str, BaseDistribution]) -> None:
        self.numeric = [(n, d) for n, d in search_space.items() if not isinstance(d, CategoricalDistribution)]
        self.categorical = [(n, d) for n, d in search_space.items() if isinstance(d, CategoricalDistribution)]
        self.n_choices = [len(d.choices) for _, d in self.categorical]
        bounds, self.min_spread = [], np.zeros(len(self.numeric))
        for j, (_, dist) in enumerate(self.numeric):
            half = 0.0 if dist.step is None else dist.step / 2
            low, high = dist.low - half, dist.high + half
            bounds.append((math.log(low), math.log(high)) if dist.log else (low, high))
            if dist.step is not None:  # a quarter of the mean cell width
                self.min_spread[j] = 0.25 / (round((dist.high - dist.low) / dist.step) + 1)
        self.low, self.high = np.array(bounds, dtype=float).reshape(-1, 2).T

    def encode(self, trials: list[FrozenTrial]) -> tuple[np.ndarray, np.ndarray]:
        """``(unit, choice)``: arrays of shape (n_trials, n_numeric) in [0, 1] and (n_trials, n_categorical)."""
        values = np.array([[t.params[n] for n, _ in self.numeric] for t in trials], dtype=float)
        values = values.reshape(len(trials), len(self.numeric))
        logs = np.array([d.log for _, d in self.numeric], dtype=bool)
        values[:, logs] = np.log(values[:, logs])
        unit = (values - self.low) / (self.high - self.low)
        choice = np.array(
            [[int(d.to_internal_repr(t.params[n])) for n, d in self.categorical] for t in trials], dtype=int
        ).reshape(len(trials), len(self.categorical))
        return unit, choice

    def decode(self, unit: np.ndarray, choice: np.ndarray) -> dict[str, Any]:
        """Parameter values (Optuna's external representation) of one point."""
        params: dict[str, Any] = {}
        raw = self.low + unit * (self.high - self.low)
        for (name, dist), value in zip(self.numeric, raw, strict=True):
            value = math.exp(value) if dist.log else float(value)
            if dist.step is not None:
                value = dist.low + round((value - dist.low) / dist.step) * dist.step
            value = min(max(value, dist.low), dist.high)
            params[name] = int(round(value)) if isinstance(dist, IntDistribution) else value
        for (name, dist), index in zip(self.categorical, choice, strict=True):
            params[name] = dist.to_external_repr(int(index))
        return params


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check(value: Any, name: str, allowed: str, ok: bool) -> None:
    if not ok:
        raise ConfigError(f"ACOSampler {name}={value!r}: must be {allowed}")
