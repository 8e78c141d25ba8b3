"""``brainmri benchmark``: every method under one leakage-safe protocol.

The run is a list of units, one per (method, fold) (:mod:`brainmri.runs.unit`).
Each finished unit is saved under ``OUT/units/``; running the same command
again skips them, so an interrupted benchmark resumes. Metrics, tests and
the report are always recomputed from the saved units
(:mod:`brainmri.runs.summary`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from brainmri.data.cache import MemoryCache
from brainmri.data.splits import Split
from brainmri.features.extract import precompute_features
from brainmri.files import check_output_folder, write_json, write_text
from brainmri.models.catalog import get_method
from brainmri.report.figures import render_figures, write_figures
from brainmri.report.html import write_report
from brainmri.runs.cluster import connect, run_units
from brainmri.runs.config import BenchmarkConfig
from brainmri.runs.plan import Plan, check_before_reading, plan_benchmark
from brainmri.runs.run_folder import check_run_folder, run_folder, start_run_folder
from brainmri.runs.summary import predictions_table, summarize_units
from brainmri.runs.unit import epoch_lines, run_unit, split_adapted, unit_path
from brainmri.timing import Stopwatch
from brainmri.training.device import resolve_device
from brainmri.training.settings import CHECKPOINT, LOG

logger = logging.getLogger(__name__)


def _where(config: BenchmarkConfig, plan: Plan, method: str, split: Split) -> str:
    """How progress lines name a unit: ``[method k/n] method fold (fold k/n)``."""
    m, f = config.methods.index(method) + 1, [s.name for s in plan.splits].index(split.name) + 1
    return f"[{m}/{len(config.methods)}] {method} {split.name} ({f}/{len(plan.splits)})"


@contextmanager
def _cluster_client(address: str | None) -> Iterator:
    """A Dask client of the scheduler at ``address`` (closed after the block), or None without one."""
    if not address:
        yield None
        return

    client = connect(address)
    try:
        yield client
    finally:
        client.close()


def run_benchmark(
    config: BenchmarkConfig,
    out: str | Path,
    *,
    n_jobs: int = -1,
    cache_dir: str | Path | None = None,
    restart: bool = False,
    device: str = "auto",
    cluster: str | None = None,
    on_event: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
    feature_progress: Callable[[int], None] | None = None,
    watch: Stopwatch | None = None,
) -> dict:
    """Run (or resume) a benchmark and write its results, predictions, figures and report.

    Parameters
    ----------
    config : BenchmarkConfig
    out : path
        Output folder: ``results.json``, ``predictions.csv``, ``audit.json``,
        ``figures/``, ``report.html`` and the resumable ``units/``.
    n_jobs : int
        Worker processes for reading, features and model fitting.
    cache_dir : path or None
        Feature cache folder; None keeps them in memory, computed once for all methods and folds.
    restart : bool
        Discard the outputs of an earlier brainmri run in ``out`` (see
        :mod:`brainmri.runs.run_folder`).
    device : str
        Where deep methods run (``auto``, ``cpu``, ``cuda``, ``mps``);
        checked before anything is read.
    cluster : str or None
        Address of a Dask scheduler (``tcp://HOST:8786``): the units not yet
        done run on its workers, which write them to ``out``
        (:mod:`brainmri.runs.cluster`; the data, ``out`` and
        ``cache_dir`` must be at the same paths there). None runs them here.
    on_event, progress, feature_progress : callable, optional
        Receive one-line messages (per method, fold and epoch), counts of
        images read during the audit, counts of images whose features were
        computed.
    watch : Stopwatch, optional
        Adds each stage's seconds; those before the writing are ``results.json``'s ``timing_s``.

    Returns
    -------
    dict
        The ``results.json`` document.

    Raises
    ------
    BrainMRIError
        A refused configuration or output folder; every refusal that the file
        listings allow comes before anything is written or any image is read.
    """
    say, watch = on_event or (lambda message: None), watch or Stopwatch()
    inputs = [config.data, *config.test_sets, *([config.extra_data] if config.extra_data else [])]
    n_files = _check_before_writing(config, out, inputs, cache_dir=cache_dir, restart=restart, device=device)
    out = Path(out)
    # An unreachable scheduler is refused here, before anything is read or written.
    with _cluster_client(cluster) as client, run_folder(out).recording():
        start_run_folder(out, config.run_record(), restart=restart)

        say(f"reading and auditing {n_files} files of {' and '.join(inputs)}")
        with watch("reading"):
            plan = plan_benchmark(config, n_jobs=n_jobs, progress=progress)
            write_json(out / "audit.json", plan.audit_report)
        # Without a cache folder, the features of this run are kept in memory and shared by all methods and folds.
        cache = str(cache_dir) if cache_dir else MemoryCache()
        with watch("features"):
            _precompute_pending(config, plan, out, cache, cache_dir, device, n_jobs, say, feature_progress)
        with watch("methods"):
            units = _all_units(client, config, plan, out, cache, device=device, n_jobs=n_jobs, say=say)
        say("computing metrics, confidence intervals and tests")
        with watch("summary"):
            results, predictions = summarize_units(config, plan, split_adapted(config, units))
        results["timing_s"] = watch.report()  # this run's (units done earlier are read back); writing not included
        with watch("writing"):
            write_benchmark_outputs(out, results, predictions, plan)
        return results


def _all_units(client, config: BenchmarkConfig, plan: Plan, out: Path, cache, *, device, n_jobs, say) -> dict:
    """Every (method, split) unit: on the cluster when there is one, else here; read back when done earlier."""
    remote = _run_on_cluster(client, config, plan, out, cache, device=device, n_jobs=n_jobs, say=say)
    return {
        method: [
            _unit(config, plan, out, method, split, remote, cache=cache, device=device, n_jobs=n_jobs, say=say)
            for split in plan.splits
        ]
        for method in config.methods
    }


def _run_on_cluster(client, config: BenchmarkConfig, plan: Plan, out: Path, cache, *, device, n_jobs, say) -> set:
    """Run the units not done yet on the cluster (its workers write them to the run folder); their (method, fold)s.

    Nothing runs without a cluster (``client`` None): the empty set.
    """
    if client is None:
        return set()
    todo = [
        (method, split, unit_path(out, method, split.name), _where(config, plan, method, split))
        for method in config.methods
        for split in plan.splits
        if not unit_path(out, method, split.name).exists()
    ]
    _record_remote_units(out, [path for _, _, path, _ in todo])
    run_units(client, config, plan, todo, n_jobs=n_jobs, cache_dir=cache, device=device, say=say)
    return {(method, split.name) for method, split, _, _ in todo}


def _check_before_writing(config: BenchmarkConfig, out, inputs: list, *, cache_dir, restart: bool, device: str) -> int:
    """Refuse the run folder, the cache folder, the configuration or the device before anything is written or read;
    the number of files listed."""
    check_run_folder(out, config, restart=restart, inputs=inputs)
    if cache_dir:
        check_output_folder(cache_dir, "--cache-dir", inputs=inputs)
    n_files = check_before_reading(config)
    if any(get_method(m).family == "deep" for m in config.methods):
        resolve_device(device)
    return n_files


def _precompute_pending(
    config: BenchmarkConfig,
    plan: Plan,
    out: Path,
    cache,
    cache_dir,
    device: str,
    n_jobs: int,
    say: Callable[[str], None],
    progress,
) -> None:
    """The features of every image for the methods with units still to run, computed once for all of them."""
    pending = [m for m in config.methods if not all(unit_path(out, m, s.name).exists() for s in plan.splits)]
    if not pending:
        return
    models = [
        get_method(m).build(
            seed=config.seed,
            n_jobs=n_jobs,
            cache_dir=cache,
            preprocess=config.preprocess,
            device=device,
            params=config.method_params(m),
        )
        for m in pending
    ]
    kept = f"cached in {cache_dir}" if cache_dir else "kept in memory for this run"
    say(f"computing features of {len(plan.paths)} images for all methods at once ({kept})")
    precompute_features(models, plan.paths, n_jobs=n_jobs, progress=progress)


def _unit(
    config: BenchmarkConfig,
    plan: Plan,
    out: Path,
    method: str,
    split: Split,
    remote: set,
    *,
    cache,
    device: str,
    n_jobs: int,
    say: Callable[[str], None],
) -> dict:
    """The unit of ``method`` on ``split``: read back when an earlier run or a cluster worker wrote it, else run here
    and written."""
    path, where = unit_path(out, method, split.name), _where(config, plan, method, split)
    if path.exists():
        if (method, split.name) not in remote:
            say(f"{where}: done earlier, reusing")
        return json.loads(path.read_text(encoding="utf-8"))
    say(f"{where}: training on {len(split.train)} images, testing on {len(split.test)}")
    with epoch_lines(where, say):
        unit = run_unit(
            config,
            plan,
            method,
            split,
            n_jobs=n_jobs,
            cache_dir=cache,
            work_dir=path.with_suffix(".work"),
            device=device,
            on_event=lambda message: say(f"{where}: {message}"),
        )
    write_json(path, unit)
    shifted = f", shifted tests {unit['shift_s']:.1f}s" if "shift_s" in unit else ""
    say(f"{where}: fit {unit['fit_s']:.1f}s, predict {unit['predict_s']:.1f}s{shifted}")
    return unit


def _record_remote_units(out: Path, paths: list[Path]) -> None:
    """Record in the run's ledger the files that cluster workers will write: units and their checkpoints."""
    folder = run_folder(out)
    for path in paths:
        unit = path.relative_to(out).as_posix()
        work = path.with_suffix(".work").relative_to(out).as_posix()
        for name in (unit, f"{work}/{CHECKPOINT}", f"{work}/{LOG}"):
            folder.file(name)


def write_benchmark_outputs(out: Path, results: dict, predictions: dict, plan: Plan) -> None:
    """results.json, predictions.csv, figures/ and report.html (each written atomically)."""
    write_json(out / "results.json", results)
    write_text(out / "predictions.csv", predictions_table(plan, predictions))
    figures = render_figures(results, predictions)
    write_figures(results, predictions, out, figures)
    write_report(results, predictions, out, figures)
