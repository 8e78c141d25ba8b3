"""A genetic algorithm over binary region masks (Shojaei et al. 2023).

Each individual is a mask over the R regions of an atlas (a bit per region).
Its fitness is the grouped cross-validated accuracy of a cheap classifier
that sees only the selected regions, minus a small price per region::

    fitness(mask) = accuracy(mask) - penalty * (number of selected regions)

so that, between masks of equal accuracy, the one with fewer regions wins,
and a region is kept only when it buys more accuracy than it costs (with the
default ``penalty = 0.002``, a region must be worth a fifth of a percentage
point). An empty mask scores the share of the most frequent class (the
accuracy of guessing).

The classifier is a standardised ridge classifier (a linear least-squares
classifier, ``sklearn.linear_model.RidgeClassifier``) on per-region features
(``X[:, regions, :]`` flattened): a fit is one small linear solve, about ten
times faster here than a logistic regression's iterations, so the
thousands of masks a search scores run on a 2-core CPU in seconds to
minutes, where a 3D CNN per mask would take hours. The accuracy is that of the pooled
out-of-fold predictions over the grouped inner folds of
:func:`brainmri.models.validation.inner_splits` (no subject straddles a
fold), the same folds for every mask, so masks are compared on equal terms.

The algorithm: a population of ``population`` masks, seeded by a region
ranking (the top-1, top-2, ... top-k regions of the ranking, then random
masks that include a region with a probability that falls with its rank;
see :meth:`GeneticRegionSearch._seed`); each generation keeps the
``elite`` best masks and breeds the rest by tournament selection (3
contestants), uniform crossover and bit-flip mutation (each bit flips with
probability ``mutation``, by default 1/R: one flip per child on average,
Muhlenbein 1992). Fitness values are cached per mask, so a mask is scored
once.

Why by hand rather than DEAP or PyGAD: the whole algorithm is the forty lines
of :meth:`GeneticRegionSearch._evolve`; DEAP keeps its individual and fitness
types in a module-level registry (``creator.create``) that warns when a
second search in one process creates them again (and the test suite turns
warnings into errors), and PyGAD would be a new dependency for the same
three operators. Neither is installed here.

References
----------
E. Shojaei, R. Ghaderi and S. Salehi, "An evolutionary explainable deep
learning approach for Alzheimer's MRI classification", Expert Systems with
Applications 220:119709, 2023. DOI 10.1016/j.eswa.2023.119709

H. Muhlenbein, "How genetic algorithms really work: mutation and
hillclimbing", Parallel Problem Solving from Nature 2, 15-25, 1992.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import numpy as np
from sklearn.base import BaseEstimator

from brainmri.errors import ConfigError, DataError
from brainmri.models.validation import inner_splits

logger = logging.getLogger(__name__)


class GeneticRegionSearch(BaseEstimator):
    """Search the smallest set of regions that keeps the classification accuracy.

    Parameters
    ----------
    population : int
        Masks per generation (>= 4).
    generations : int
        Generations bred after the first (>= 1).
    mutation : float or None
        Probability that a bit flips in a child; None: 1 / number of regions.
    penalty : float
        Fitness lost per selected region (>= 0).
    elite : int
        Best masks copied unchanged into the next generation.
    alpha : float
        L2 regularisation of the ridge classifier.
    random_state : int
        Seed of the folds, the seeding and the breeding: same seed, same mask.

    Attributes
    ----------
    support_ : ndarray of bool, shape (n_regions,)
        The best mask found.
    fitness_ : float
        Its fitness.
    accuracy_ : float
        Its grouped cross-validated accuracy.
    whole_accuracy_ : float
        The accuracy of the same classifier on every region (the whole brain).
    population_share_ : ndarray of float, shape (n_regions,)
        Share of the last generation's masks that select each region.
    history_ : list of dict
        Per generation: ``generation``, ``best_fitness``, ``best_accuracy``,
        ``best_regions`` (count), ``mean_fitness``.
    n_evaluations_ : int
        Masks scored (distinct masks: the cache scores each once).
    cv_ : str
        How the inner folds were made (:func:`inner_splits`).
    folds_ : list of (ndarray, ndarray)
        The inner (train, validation) folds every mask was scored on.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat(["a", "b"], 10)
    >>> X = rng.normal(size=(20, 6, 1)); X[y == "a", 2, 0] += 5   # region 2 carries the class
    >>> search = GeneticRegionSearch(population=8, generations=5).fit(X, y)
    >>> search.support_.nonzero()[0].tolist(), search.accuracy_
    ([2], 1.0)
    """

    def __init__(
        self,
        *,
        population: int = 30,
        generations: int = 40,
        mutation: float | None = None,
        penalty: float = 0.002,
        elite: int = 2,
        alpha: float = 1.0,
        random_state: int = 0,
    ):
        self.population = population
        self.generations = generations
        self.mutation = mutation
        self.penalty = penalty
        self.elite = elite
        self.alpha = alpha
        self.random_state = random_state

    def _check_params(self, n_regions: int) -> float:
        for name, value, low in (
            ("population", self.population, 4),
            ("generations", self.generations, 1),
            ("elite", self.elite, 0),
        ):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                raise ConfigError(f"--{name} must be an integer >= {low}, got {value!r}")
        if self.elite >= self.population:
            raise ConfigError(f"elite ({self.elite}) must be below --population ({self.population})")
        if n_regions < 2:
            raise DataError(
                f"a region search needs at least 2 regions to choose among, the atlas has {n_regions}; "
                "give an atlas with more regions (or --regions N without --atlas)"
            )
        if self.mutation is not None and not 0 < self.mutation <= 0.5:
            raise ConfigError(
                f"--mutation must be a probability in (0, 0.5] (per region and child), got {self.mutation!r}"
            )
        mutation = 1.0 / n_regions if self.mutation is None else self.mutation
        if not self.penalty >= 0:
            raise ConfigError(f"--penalty must be >= 0 (fitness lost per region), got {self.penalty!r}")
        return float(mutation)

    def fit(self, X, y, *, groups=None, ranking=None, progress: Callable[[dict], None] | None = None):
        """Run the search.

        Parameters
        ----------
        X : ndarray, shape (n_items, n_regions, n_features)
            Features of every region of every item.
        y : array-like of shape (n_items,)
            Labels.
        groups : array-like of shape (n_items,) or None
            Subject (group) of every item, for the grouped inner folds.
        ranking : array-like of int or None
            Region indices from most to least relevant (the attribution
            ranking) that seeds the first generation; None: index order.
        progress : callable or None
            Called after every generation with its ``history_`` entry.

        Returns
        -------
        self
        """
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 3 or X.shape[1] < 1:
            raise DataError(f"region features must have shape (items, regions, features), got {X.shape}")
        n_regions = X.shape[1]
        mutation = self._check_params(n_regions)
        y = np.asarray(y)
        self.folds_, self.cv_ = inner_splits(y, groups, random_state=self.random_state)
        self._X, self._y, self._cache = X, y, {}
        ranking = np.arange(n_regions) if ranking is None else np.asarray(ranking, dtype=int)
        if sorted(ranking.tolist()) != list(range(n_regions)):
            raise DataError(f"ranking must order the {n_regions} regions (each index once), got {ranking.tolist()}")
        rng = np.random.default_rng(self.random_state)
        self.history_ = []
        population = self._seed(ranking, rng)
        for generation in range(self.generations + 1):
            if generation:
                population = self._evolve(population, rng, mutation)
            fitness = np.array([self._fitness(m)[0] for m in population])
            order = np.argsort(-fitness, kind="stable")
            population, fitness = population[order], fitness[order]
            best = population[0]
            entry = {
                "generation": generation,
                "best_fitness": float(fitness[0]),
                "best_accuracy": self._cache[best.tobytes()][1],
                "best_regions": int(best.sum()),
                "mean_fitness": float(fitness.mean()),
            }
            self.history_.append(entry)
            if progress:
                progress(entry)
        self.support_ = population[0].copy()
        self.fitness_, self.accuracy_ = self._cache[self.support_.tobytes()]
        self.whole_accuracy_ = self._fitness(np.ones(n_regions, dtype=bool))[1]
        self.population_share_ = population.mean(axis=0)
        self.n_evaluations_ = len(self._cache)
        del self._X, self._y, self._cache
        return self

    def _seed(self, ranking: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The first generation: top-k prefixes of the ranking (k = 1, 2, 3, 5, 8, ...), then rank-biased random masks.

        A random mask includes the region ranked r (from 0) with probability
        ``0.6 / (1 + r / 3)``: the top regions in most masks, the tail in few.
        """
        n = len(ranking)
        masks, k, step = [], 1, 1
        while k <= n and len(masks) < self.population // 2:
            mask = np.zeros(n, dtype=bool)
            mask[ranking[:k]] = True
            masks.append(mask)
            k, step = k + step, k  # Fibonacci-like sizes: many small masks, a few large ones
        p = np.empty(n)
        p[ranking] = 0.6 / (1 + np.arange(n) / 3)
        while len(masks) < self.population:
            masks.append(rng.random(n) < p)
        return np.array(masks)

    def _evolve(self, population: np.ndarray, rng: np.random.Generator, mutation: float) -> np.ndarray:
        """The next generation of a population sorted best first: elite, tournament, uniform crossover, mutation."""
        fitness = np.array([self._cache[m.tobytes()][0] for m in population])
        children = [m.copy() for m in population[: self.elite]]

        def pick() -> np.ndarray:
            contestants = rng.choice(len(population), size=3, replace=False)
            return population[contestants[np.argmax(fitness[contestants])]]

        while len(children) < self.population:
            a, b = pick(), pick()
            child = np.where(rng.random(a.size) < 0.5, a, b)
            child ^= rng.random(a.size) < mutation
            children.append(child)
        return np.array(children)

    def _fitness(self, mask: np.ndarray) -> tuple[float, float]:
        """``(fitness, accuracy)`` of ``mask``, computed once per distinct mask."""
        key = mask.tobytes()
        if key not in self._cache:
            accuracy = self._accuracy(mask)
            self._cache[key] = (accuracy - self.penalty * int(mask.sum()), accuracy)
        return self._cache[key]

    def _accuracy(self, mask: np.ndarray) -> float:
        from sklearn.linear_model import RidgeClassifier
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        y = self._y
        if not mask.any():
            return float(np.max(np.unique(y, return_counts=True)[1]) / len(y))
        features = self._X[:, mask, :].reshape(len(y), -1)
        correct = 0
        for train, valid in self.folds_:
            model = make_pipeline(StandardScaler(), RidgeClassifier(alpha=self.alpha))
            model.fit(features[train], y[train])
            correct += int(np.sum(model.predict(features[valid]) == y[valid]))
        return correct / len(y)
