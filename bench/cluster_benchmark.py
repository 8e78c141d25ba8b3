"""Wall time of one benchmark run here and on a 2-worker Dask LocalCluster, and whether their numbers agree.

Usage: python bench/cluster_benchmark.py DATA OUT [--methods glcm-svm,multifeature-rf,ovo-svm,rf] [--cv 5]

The feature cache (OUT/cache) is filled first by an untimed run, so that
the timed runs measure the (method, fold) units, which are what
``--cluster`` distributes. Then, each into a new run folder under OUT:
a local run with ``--jobs 1``, a local run with ``--jobs 2``, and a run on
a LocalCluster of 2 worker processes with 1 thread each (started before
the clock, its start-up time printed apart). Printed: wall times, and
whether every method's metrics in results.json are identical to the
``--jobs 1`` run's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--methods", default="glcm-svm,multifeature-rf,ovo-svm,rf")
    parser.add_argument("--cv", type=int, default=5)
    args = parser.parse_args()

    from distributed import LocalCluster

    from brainmri.runs.benchmark import run_benchmark
    from brainmri.runs.config import BenchmarkConfig

    config = BenchmarkConfig(data=str(args.data), methods=tuple(args.methods.split(",")), cv=args.cv)
    cache = args.out / "cache"
    run_benchmark(config, args.out / "warm-up", n_jobs=2, cache_dir=cache)
    metrics, seconds = {}, {}
    for name, jobs in (("local, --jobs 1", 1), ("local, --jobs 2", 2)):
        start = time.perf_counter()
        metrics[name] = run_benchmark(config, args.out / f"jobs{jobs}", n_jobs=jobs, cache_dir=cache)["methods"]
        seconds[name] = time.perf_counter() - start
    start = time.perf_counter()
    with LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        print(f"LocalCluster of 2 worker processes started in {time.perf_counter() - start:.1f} s")
        name = "LocalCluster, 2 workers x 1 thread"
        start = time.perf_counter()
        metrics[name] = run_benchmark(
            config, args.out / "cluster", n_jobs=1, cache_dir=cache, cluster=cluster.scheduler_address
        )["methods"]
        seconds[name] = time.perf_counter() - start
    reference = {m: e["metrics"] for m, e in metrics["local, --jobs 1"].items()}
    print(f"{args.data}, methods {args.methods}, {args.cv}-fold CV, features from the cache")
    for name, wall in seconds.items():
        same = {m: e["metrics"] for m, e in metrics[name].items()} == reference
        accuracy = ", ".join(f"{m} {e['metrics']['accuracy']['value']:.4f}" for m, e in metrics[name].items())
        print(f"{name}: {wall:.1f} s; metrics identical to the --jobs 1 run: {same} ({accuracy})")
    print(json.dumps(seconds))


if __name__ == "__main__":
    main()
