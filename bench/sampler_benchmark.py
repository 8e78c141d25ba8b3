"""brainmri's ant colony sampler against Optuna's samplers on standard test functions.

Usage: .venv/bin/python bench/sampler_benchmark.py [--trials 100] [--seeds 20] [--gp-seeds 5]
       [--dims 2 5 10] [--samplers aco aco-plain tpe cmaes gp qmc random] [--functions ...] [--json FILE]

Every sampler gets the same budget (``--trials`` evaluations) on sphere,
Rosenbrock, Rastrigin and Ackley (brainmri.tuning.optimisation_problems) in each
dimension, once per seed (seed s for every sampler; QMC scrambled with that
seed). GP is much slower per trial than the others, so it runs ``--gp-seeds``
seeds (the first ones). Prints a Markdown table of the median best value per
(function, dimension, sampler), the best median of each row in bold, the
number of seeds in the column header, and the seconds each sampler took in
all; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import optuna

from brainmri.files import write_json
from brainmri.tuning.aco import ACOSampler
from brainmri.tuning.optimisation_problems import FUNCTIONS

SAMPLERS = {
    "aco": lambda seed: ACOSampler(seed=seed),
    # The same colony without the IACO improvements: plain ACO_R / ACO_MV (an ablation).
    "aco-plain": lambda seed: ACOSampler(seed=seed, local_search_rate=0.0, de_rate=0.0, restart_patience=0),
    "tpe": lambda seed: optuna.samplers.TPESampler(seed=seed),
    "cmaes": lambda seed: optuna.samplers.CmaEsSampler(seed=seed),
    "gp": lambda seed: optuna.samplers.GPSampler(seed=seed),
    "qmc": lambda seed: optuna.samplers.QMCSampler(seed=seed, scramble=True),
    "random": lambda seed: optuna.samplers.RandomSampler(seed=seed),
}


def best_value(sampler_name: str, function_name: str, dim: int, trials: int, seed: int) -> float:
    function, bound = FUNCTIONS[function_name]
    study = optuna.create_study(sampler=SAMPLERS[sampler_name](seed))
    study.optimize(
        lambda t: float(function(np.array([t.suggest_float(f"x{i}", -bound, bound) for i in range(dim)]))),
        n_trials=trials,
    )
    return study.best_value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--gp-seeds", type=int, default=5)
    parser.add_argument("--dims", type=int, nargs="+", default=[2, 5, 10])
    parser.add_argument("--samplers", nargs="+", default=list(SAMPLERS), choices=list(SAMPLERS))
    parser.add_argument("--functions", nargs="+", default=list(FUNCTIONS), choices=list(FUNCTIONS))
    parser.add_argument("--json", type=Path, help="also write every best value here")
    args = parser.parse_args(argv)
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # QMCSampler

    seeds = {s: args.gp_seeds if s == "gp" else args.seeds for s in args.samplers}
    results: dict[str, dict[str, list[float]]] = {}
    seconds = dict.fromkeys(args.samplers, 0.0)
    for dim in args.dims:
        for function_name in args.functions:
            row = results.setdefault(f"{function_name} {dim}D", {})
            for sampler_name in args.samplers:
                start = time.perf_counter()
                row[sampler_name] = [
                    best_value(sampler_name, function_name, dim, args.trials, seed)
                    for seed in range(seeds[sampler_name])
                ]
                seconds[sampler_name] += time.perf_counter() - start
                print(
                    f"{function_name} {dim}D {sampler_name}: median {np.median(row[sampler_name]):.4g} "
                    f"({time.perf_counter() - start:.1f} s)",
                    file=sys.stderr,
                    flush=True,
                )

    print(f"| function | {' | '.join(f'{s} ({seeds[s]} seeds)' for s in args.samplers)} |")
    print(f"|---|{'---|' * len(args.samplers)}")
    for name, row in results.items():
        medians = {s: float(np.median(v)) for s, v in row.items()}
        best = min(medians.values())
        cells = [f"**{m:.3g}**" if m == best else f"{m:.3g}" for m in medians.values()]
        print(f"| {name} | {' | '.join(cells)} |")
    print(f"| seconds in all | {' | '.join(f'{seconds[s]:.0f}' for s in args.samplers)} |")
    if args.json:
        write_json(args.json, {"trials": args.trials, "seeds": seeds, "seconds": seconds, "best_values": results})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
