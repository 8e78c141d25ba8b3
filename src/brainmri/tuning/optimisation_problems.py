"""Standard optimisation problems to test samplers on: sphere, Rosenbrock, Rastrigin and Ackley (known as benchmark
functions in the optimisation literature; named here so that they are not taken for ``brainmri benchmark``).

Each function takes points of shape (..., d) and returns values of shape
(...), so one call scores a single point or a whole batch. All four have
their global minimum 0; :data:`FUNCTIONS` gives each one's usual search box
(the same bound in every coordinate). The tests of :mod:`brainmri.tuning.aco`
and ``bench/sampler_benchmark.py`` both use them.

References
----------
M. Jamil and X.-S. Yang, "A literature survey of benchmark functions for
global optimisation problems", International Journal of Mathematical
Modelling and Numerical Optimisation 4(2):150-194, 2013.
DOI: 10.1504/IJMMNO.2013.055204

Examples
--------
>>> import numpy as np
>>> float(sphere(np.array([1.0, 2.0]))), float(rosenbrock(np.ones(3)))
(5.0, 0.0)
>>> rastrigin(np.zeros((4, 2))).shape
(4,)
"""

from __future__ import annotations

import numpy as np


def sphere(x: np.ndarray) -> np.ndarray:
    """``sum(x_i ** 2)``: minimum 0 at the origin."""
    x = np.asarray(x, dtype=float)
    return np.sum(x * x, axis=-1)


def rosenbrock(x: np.ndarray) -> np.ndarray:
    """``sum(100 (x_{i+1} - x_i**2)**2 + (1 - x_i)**2)``: minimum 0 at (1, ..., 1), a curved valley."""
    x = np.asarray(x, dtype=float)
    head, tail = x[..., :-1], x[..., 1:]
    return np.sum(100.0 * (tail - head * head) ** 2 + (1.0 - head) ** 2, axis=-1)


def rastrigin(x: np.ndarray) -> np.ndarray:
    """``10 d + sum(x_i**2 - 10 cos(2 pi x_i))``: minimum 0 at the origin, a local minimum at every integer point."""
    x = np.asarray(x, dtype=float)
    return 10.0 * x.shape[-1] + np.sum(x * x - 10.0 * np.cos(2 * np.pi * x), axis=-1)


def ackley(x: np.ndarray) -> np.ndarray:
    """Ackley's function (a = 20, b = 0.2, c = 2 pi): minimum 0 at the origin, a nearly flat, rippled plain around it."""
    x = np.asarray(x, dtype=float)
    d = x.shape[-1]
    return (
        -20.0 * np.exp(-0.2 * np.sqrt(np.sum(x * x, axis=-1) / d))
        - np.exp(np.sum(np.cos(2 * np.pi * x), axis=-1) / d)
        + 20.0
        + np.e
    )


#: name -> (function, bound): each coordinate is searched in [-bound, bound].
FUNCTIONS = {
    "sphere": (sphere, 5.12),
    "rosenbrock": (rosenbrock, 2.048),
    "rastrigin": (rastrigin, 5.12),
    "ackley": (ackley, 32.768),
}
