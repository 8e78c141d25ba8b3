"""Two ``brainmri tune`` processes with the ant colony sampler on one PostgreSQL study (a real server, see conftest.py).

Each worker's sampler rebuilds its archive from every completed trial of the study, its own and the other's
(tests/tuning/test_aco.py checks that on one storage)."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")
pytestmark = pytest.mark.system  # a real PostgreSQL server: skipped without one, a failure in CI

import brainmri  # noqa: E402

TRIALS = 16


def worker(data, out: Path, url: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(Path(brainmri.__file__).parents[1]), "OMP_NUM_THREADS": "1"}
    argv = [
        sys.executable,
        "-m",
        "brainmri",
        "tune",
        str(data),
        "--method",
        "glcm-svm",
        "--split",
        "official",
        "--sampler",
        "aco",
        "--trials",
        str(TRIALS),
        "--storage",
        url,
        "--study",
        "shared",
        "--out",
        str(out),
        "--size",
        "48",
        "--no-cache",
        "--n-boot",
        "20",
        "--jobs",
        "1",
    ]
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_workers_record_every_trial_once(leaky_split_source, postgres_url, tmp_path):
    workers = [worker(leaky_split_source, tmp_path / f"out{k}", postgres_url) for k in (1, 2)]
    try:
        ended = [process.communicate(timeout=300) for process in workers]
    finally:
        for process in workers:
            process.kill()
            process.communicate()
    ran = []
    for process, (_, err) in zip(workers, ended, strict=True):
        assert process.returncode == 0, err
        ran.append({int(n) for n in re.findall(r"^\[aco\]: trial (\d+) \(", err, flags=re.M)})
    storage = optuna.storages.RDBStorage(postgres_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        study = optuna.load_study(study_name="shared", storage=storage)
        trials, best_value = study.get_trials(), study.best_value
    finally:
        storage.engine.dispose()
    # Every trial finished and was run by exactly one of the workers; none lost, none run twice.
    assert {t.state.name for t in trials} == {"COMPLETE"}
    assert TRIALS <= len(trials) <= TRIALS + 1  # a worker may start one trial while the other finishes the last
    assert ran[0] | ran[1] == {t.number for t in trials} and not ran[0] & ran[1]
    assert all(ran), "each worker ran trials of the shared study"
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    # Each worker tested the best configuration of the whole study.
    best = [
        json.loads((tmp_path / f"out{k}" / "results.json").read_text())["searches"]["aco"]["official"]["best"]
        for k in (1, 2)
    ]
    assert best[0]["value"] == best[1]["value"] == best_value
