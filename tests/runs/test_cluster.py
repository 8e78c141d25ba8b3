"""``benchmark --cluster``: the units on a real Dask cluster (two worker processes) give the local run's results."""

from __future__ import annotations

import json
import socket
import time

import pytest

from brainmri.cli import main
from brainmri.data.preprocess import Preprocess
from brainmri.errors import ConfigError
from brainmri.runs.benchmark import run_benchmark
from brainmri.runs.config import BenchmarkConfig

distributed = pytest.importorskip("distributed")

#: The fastest classical method, 3 folds of the demo dataset.
CONFIG = dict(methods=("glcm-svm",), cv=3, n_boot=50, preprocess=Preprocess(size=48))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _without_timing(results: dict) -> dict:
    """What must not differ between two runs of the same benchmark: everything but timings (the run's and each
    method's) and the date."""
    methods = {
        name: {
            **{k: v for k, v in entry.items() if k != "timing_s"},
            "cost": {"parameters": entry["cost"]["parameters"]},
        }
        for name, entry in results["methods"].items()
    }
    return {**{k: v for k, v in results.items() if k not in ("created", "timing_s")}, "methods": methods}


@pytest.mark.slow
def test_a_local_cluster_of_two_worker_processes_gives_the_local_results(demo_source, tmp_path):
    config = BenchmarkConfig(data=str(demo_source), **CONFIG)
    local = run_benchmark(config, tmp_path / "local", n_jobs=1, cache_dir=tmp_path / "cache")
    lines = []
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        remote = run_benchmark(
            config,
            tmp_path / "remote",
            n_jobs=1,
            cache_dir=tmp_path / "cache",
            cluster=cluster.scheduler_address,
            on_event=lines.append,
        )
        workers = set(cluster.workers[name].worker_address for name in cluster.workers)
    assert _without_timing(remote) == _without_timing(local)
    assert (
        json.loads((tmp_path / "remote" / "results.json").read_text())["methods"]["glcm-svm"]["metrics"]
        == json.loads((tmp_path / "local" / "results.json").read_text())["methods"]["glcm-svm"]["metrics"]
    )
    # Every unit ran on a worker, which wrote it into the run folder; both workers took part.
    assert sorted(p.name for p in (tmp_path / "remote" / "units" / "glcm-svm").glob("*.json")) == [
        "fold0.json",
        "fold1.json",
        "fold2.json",
    ]
    ran_on = {line.rsplit(" on ", 1)[1] for line in lines if ", predict " in line}
    assert ran_on == workers
    assert not any("training on" in line for line in lines)  # nothing ran here


def test_an_unreachable_scheduler_is_one_line_within_seconds_and_writes_nothing(demo_source, tmp_path, error_line):
    address = f"tcp://127.0.0.1:{_free_port()}"
    start = time.perf_counter()
    code = main(
        [
            "benchmark",
            str(demo_source),
            "--methods",
            "glcm-svm",
            "--cv",
            "3",
            "--out",
            str(tmp_path / "out"),
            "--no-cache",
            "--cluster",
            address,
        ]
    )
    assert code == 2 and time.perf_counter() - start < 15
    line = error_line("benchmark")
    assert f"--cluster {address}: no Dask scheduler answered within 5 s" in line
    assert not (tmp_path / "out").exists()


class _Peer:
    """A TCP server that is not a Dask scheduler: ``http`` answers like a web server waiting for a request line
    (it reads and never replies), otherwise it sends garbage at once."""

    def __init__(self, http: bool):
        import threading

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen()
        self.address = f"tcp://127.0.0.1:{self.sock.getsockname()[1]}"
        self.http, self.held = http, []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)
            if not self.http:
                conn.sendall(b"hello there, this is not dask\n" * 20)

    def close(self):
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.mark.parametrize("http", [False, True], ids=["garbage", "web-server"])
def test_a_peer_that_is_not_a_scheduler_is_refused_within_seconds_and_quietly(demo_source, tmp_path, http):
    # Issue 20: an HTTP server held --cluster for over 130 s, and a garbage-speaking peer's refusal was followed
    # by "Exception ignored in Client.__del__ ... TimeoutError".
    import subprocess
    import sys

    peer = _Peer(http)
    try:
        start = time.perf_counter()
        run = subprocess.run(
            [
                sys.executable,
                "-m",
                "brainmri",
                "benchmark",
                str(demo_source),
                "--methods",
                "glcm-svm",
                "--cv",
                "3",
                "--out",
                str(tmp_path / "out"),
                "--no-cache",
                "--cluster",
                peer.address,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        seconds = time.perf_counter() - start
    finally:
        peer.close()
    assert run.returncode == 2 and seconds < 30, (seconds, run.stderr)
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1, run.stderr
    assert lines[0].startswith(
        f"brainmri benchmark: error: --cluster {peer.address}: no Dask scheduler answered within 5 s ("
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "address, match",
    [
        ("localhost", "missing port number"),
        ("http://localhost:8786", "unknown address scheme 'http'"),
    ],
)
def test_a_malformed_scheduler_address_is_refused(demo_source, tmp_path, address, match):
    config = BenchmarkConfig(data=str(demo_source), **CONFIG)
    with pytest.raises(ConfigError, match=rf"--cluster {address}: not a Dask scheduler address \({match}"):
        run_benchmark(config, tmp_path / "out", n_jobs=1, cluster=address)


@pytest.fixture
def threads_cluster():
    """A LocalCluster of 2 worker threads in this process: quick to start, and it sees this test's monkeypatches."""
    with distributed.LocalCluster(
        n_workers=2, processes=False, threads_per_worker=1, dashboard_address=None
    ) as cluster:
        yield cluster.scheduler_address


def test_an_interrupted_run_resumes_on_the_cluster_with_only_the_missing_units(demo_source, tmp_path, threads_cluster):
    config = BenchmarkConfig(data=str(demo_source), **CONFIG)
    first = run_benchmark(config, tmp_path / "out", n_jobs=1, cache_dir=tmp_path / "cache")
    (tmp_path / "out" / "units" / "glcm-svm" / "fold1.json").unlink()
    lines = []
    again = run_benchmark(
        config, tmp_path / "out", n_jobs=1, cache_dir=tmp_path / "cache", cluster=threads_cluster, on_event=lines.append
    )
    assert _without_timing(again) == _without_timing(first)
    assert [line.split(":")[0] for line in lines if "done earlier, reusing" in line] == [
        "[1/1] glcm-svm fold0 (1/3)",
        "[1/1] glcm-svm fold2 (3/3)",
    ]
    assert len([line for line in lines if line.startswith("[1/1] glcm-svm fold1 (2/3): fit ")]) == 1
    assert "running 1 unit(s) on the Dask cluster" in "\n".join(lines)


def test_a_unit_that_fails_on_a_worker_stops_the_run_with_its_own_error(
    demo_source, tmp_path, threads_cluster, monkeypatch
):
    from brainmri.errors import DataError
    from brainmri.runs import cluster

    def fail(config, plan, method, split, **kwargs):
        raise DataError(f"{split.name}: unreadable training image")

    monkeypatch.setattr(cluster, "run_unit", fail)
    config = BenchmarkConfig(data=str(demo_source), **CONFIG)
    with pytest.raises(DataError, match=r"fold\d: unreadable training image"):
        run_benchmark(config, tmp_path / "out", n_jobs=1, cluster=threads_cluster)
    assert not (tmp_path / "out" / "results.json").exists()
