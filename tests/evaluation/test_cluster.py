"""``benchmark --cluster``: the units on a real Dask cluster (two worker processes) give the local run's results."""

from __future__ import annotations

import json
import socket
import time

import pytest

from brainmri.cli import main
from brainmri.data.preprocess import Preprocess
from brainmri.errors import ConfigError
from brainmri.evaluation.benchmark import run_benchmark
from brainmri.evaluation.protocol import BenchmarkConfig

distributed = pytest.importorskip("distributed")

#: The fastest classical method, 3 folds of the demo dataset.
CONFIG = dict(methods=("glcm-svm",), cv=3, n_boot=50, preprocess=Preprocess(size=48))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _without_timing(results: dict) -> dict:
    """What must not differ between two runs of the same benchmark: everything but timings and the date."""
    methods = {name: {k: v for k, v in entry.items() if k != "timing_s"} for name, entry in results["methods"].items()}
    return {**{k: v for k, v in results.items() if k != "created"}, "methods": methods}


@pytest.mark.slow
def test_a_local_cluster_of_two_worker_processes_gives_the_local_results(demo_source, tmp_path):
    config = BenchmarkConfig(data=str(demo_source), **CONFIG)
    local = run_benchmark(config, tmp_path / "local", n_jobs=1, cache_dir=tmp_path / "cache")
    lines = []
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        remote = run_benchmark(config, tmp_path / "remote", n_jobs=1, cache_dir=tmp_path / "cache",
                               cluster=cluster.scheduler_address, on_event=lines.append)
        workers = set(cluster.workers[name].worker_address for name in cluster.workers)
    assert _without_timing(remote) == _without_timing(local)
    assert json.loads((tmp_path / "remote" / "results.json").read_text())["methods"]["glcm-svm"]["metrics"] == \
        json.loads((tmp_path / "local" / "results.json").read_text())["methods"]["glcm-svm"]["metrics"]
    # Every unit ran on a worker, which wrote it into the run folder; both workers took part.
    assert sorted(p.name for p in (tmp_path / "remote" / "units" / "glcm-svm").glob("*.json")) == \
        ["fold0.json", "fold1.json", "fold2.json"]
    ran_on = {line.rsplit(" on ", 1)[1] for line in lines if ", predict " in line}
    assert ran_on == workers
    assert not any("training on" in line for line in lines)  # nothing ran here


def test_an_unreachable_scheduler_is_one_line_within_seconds_and_writes_nothing(demo_source, tmp_path, error_line):
    address = f"tcp://127.0.0.1:{_free_port()}"
    start = time.perf_counter()
    code = main(["benchmark", str(demo_source), "--methods", "glcm-svm", "--cv", "3", "--out", str(tmp_path / "out"),
                 "--no-cache", "--cluster", address])
    assert code == 2 and time.perf_counter() - start < 15
    line = error_line("benchmark")
    assert f"--cluster {address}: no Dask scheduler answered within 5 s" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("address, match", [
    ("localhost", "missing port number"),
    ("http://localhost:8786", "unknown address scheme 'http'"),
])
def test_a_malformed_scheduler_address_is_refused(demo_source, tmp_path, address, match):
    config = BenchmarkConfig(data=str(demo_source), **CONFIG)
    with pytest.raises(ConfigError, match=rf"--cluster {address}: no Dask scheduler answered .*{match}"):
        run_benchmark(config, tmp_path / "out", n_jobs=1, cluster=address)
