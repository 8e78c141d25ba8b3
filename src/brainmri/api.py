"""brainmri's Python API: :func:`audit`, :func:`benchmark` and :func:`train`, the functions behind the commands.

For notebooks and scripts; ``brainmri audit``, ``benchmark`` and ``train`` call these same functions, so a call
gives what the command with the same settings gives (same seed, same numbers). Each is also ``brainmri.audit``,
``brainmri.benchmark`` and ``brainmri.train``; a trained bundle loads with ``brainmri.load_model``.

>>> import brainmri                                                               # doctest: +SKIP
>>> found = brainmri.audit("data/")                                               # doctest: +SKIP
>>> run = brainmri.benchmark("data/", ["glcm-svm", "rf"], out="bench/")          # doctest: +SKIP
>>> run.metrics                        # a pandas DataFrame: one row per method   # doctest: +SKIP
>>> model = brainmri.train("data/", "glcm-svm", out="model/")                    # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from brainmri.data.duplicates import DuplicateParams
from brainmri.data.io import MAX_PIXELS
from brainmri.data.preprocess import Preprocess
from brainmri.evaluation.metrics import METRICS
from brainmri.models.bundle import Bundle
from brainmri.runs.audit import Stage, run_audit
from brainmri.runs.benchmark import run_benchmark
from brainmri.runs.config import BenchmarkConfig, TrainConfig, default_cache_dir
from brainmri.runs.train import train_bundle
from brainmri.timing import Stopwatch


@dataclass(frozen=True)
class AuditResult:
    """What :func:`audit` found.

    Attributes
    ----------
    report : dict
        The audit (``audit.json``): counts, unreadable files, duplicate clusters, leaks, and what was asked for.
    n_readable : int
        Images that could be read.
    path : Path or None
        ``audit.json``, when ``out`` was given.
    """

    report: dict
    n_readable: int
    path: Path | None = None

    def __str__(self) -> str:
        from brainmri.data.audit import format_audit

        return format_audit(self.report)


@dataclass(frozen=True)
class BenchmarkResult:
    """A finished benchmark: its ``results.json`` document and its folder.

    Attributes
    ----------
    results : dict
        The ``results.json`` document (docs/guide/benchmark.md, "Outputs").
    out : Path
        The run folder (``results.json``, ``predictions.csv``, ``figures/``, ``report.html``).
    """

    results: dict
    out: Path

    @property
    def report(self) -> Path:
        """The self-contained HTML report."""
        return self.out / "report.html"

    @property
    def metrics(self):
        """Every method's metrics on the test items: a pandas DataFrame, one row per method, a column per metric."""
        import pandas as pd

        rows = {
            name: {metric: entry["metrics"][metric]["value"] for metric in METRICS if metric in entry["metrics"]}
            for name, entry in self.results["methods"].items()
        }
        return pd.DataFrame.from_dict(rows, orient="index").rename_axis("method")

    @property
    def intervals(self):
        """The metrics with their 95% bootstrap intervals: a long DataFrame (method, metric, value, ci_low, ci_high)."""
        import pandas as pd

        rows = [
            {"method": name, "metric": metric, **{k: value[k] for k in ("value", "ci_low", "ci_high")}}
            for name, entry in self.results["methods"].items()
            for metric, value in entry["metrics"].items()
        ]
        return pd.DataFrame(rows, columns=["method", "metric", "value", "ci_low", "ci_high"])

    @property
    def predictions(self):
        """Every test prediction (``predictions.csv``: method, fold, path, label, predicted, probabilities, ...)."""
        import pandas as pd

        return pd.read_csv(self.out / "predictions.csv")

    @property
    def comparisons(self):
        """The pairwise comparisons of the methods (McNemar, corrected t-test, Holm-adjusted p-values) as a DataFrame."""
        import pandas as pd

        return pd.json_normalize(self.results.get("comparisons", []))

    def _repr_html_(self) -> str:
        return f"{self.metrics.to_html(float_format='{:.3f}'.format)}<p>report: {self.report}</p>"


def audit(
    data: str | Path,
    *,
    against: str | Path | None = None,
    group_similar: bool = False,
    shortcuts: bool = False,
    duplicates: DuplicateParams | None = None,
    max_pixels: int = MAX_PIXELS,
    allow_outside_paths: bool = False,
    bids_label: str | None = None,
    bids_suffix: str = "T1w",
    seed: int = 0,
    n_jobs: int = -1,
    out: str | Path | None = None,
    stage: Stage | None = None,
) -> AuditResult:
    """Read ``data`` and report its duplicates, leaks and unreadable files (``brainmri audit``).

    The parameters are :func:`~brainmri.runs.audit.run_audit`'s; ``out`` writes ``out/audit.json``.
    """
    report, n_readable = run_audit(
        data,
        against=against,
        group_similar=group_similar,
        shortcuts=shortcuts,
        duplicates=duplicates,
        max_pixels=max_pixels,
        allow_outside_paths=allow_outside_paths,
        bids_label=bids_label,
        bids_suffix=bids_suffix,
        seed=seed,
        n_jobs=n_jobs,
        out=out,
        stage=stage,
    )
    return AuditResult(report, n_readable, Path(out) / "audit.json" if out else None)


def benchmark(
    data: str | Path,
    methods: Sequence[str] | str = ("glcm-svm",),
    *,
    out: str | Path,
    preprocess: Preprocess | dict | None = None,
    n_jobs: int = -1,
    cache_dir: str | Path | None | bool = True,
    restart: bool = False,
    device: str = "auto",
    cluster: str | None = None,
    on_event: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
    feature_progress: Callable[[int], None] | None = None,
    watch: Stopwatch | None = None,
    **settings,
) -> BenchmarkResult:
    """Compare ``methods`` on ``data`` under one protocol and write the run folder ``out`` (``brainmri benchmark``).

    Parameters
    ----------
    data : path
        A dataset folder or CSV manifest.
    methods : sequence of str, or a comma-separated str
        Registered method names (``brainmri benchmark --help`` lists them).
    out : path
        The run folder; a run there with the same settings resumes.
    preprocess : Preprocess, dict or None
        The shared preprocessing (``dict(size=128, harmonise="zscore")``); None: the defaults.
    cache_dir : path, True, False or None
        Feature cache: a folder, True for the default one (``$BRAINMRI_CACHE`` or ``~/.cache/brainmri``), or
        False/None to keep features in memory for this run only.
    n_jobs, restart, device, cluster, on_event, progress, feature_progress, watch
        As :func:`~brainmri.runs.benchmark.run_benchmark`.
    **settings
        Fields of :class:`~brainmri.runs.config.BenchmarkConfig`: ``split`` ("cv", "official", "naive"), ``cv``,
        ``seed``, ``grouping``, ``params`` ({"method": {"key": value}}), ``test_data``, ``label_map``, ``shift``,
        ``bids_label`` (a BIDS dataset's ``participants.tsv`` column with the class), ``bids_suffix``, ...

    Returns
    -------
    BenchmarkResult
    """
    from brainmri.models.catalog import default_cv, parse_methods

    names = tuple(parse_methods(methods if isinstance(methods, str) else ",".join(methods)))  # "all" too
    settings.setdefault("cv", default_cv(names))
    config = BenchmarkConfig(data=str(data), methods=names, preprocess=_preprocess(preprocess), **settings)
    results = run_benchmark(
        config,
        out,
        n_jobs=n_jobs,
        cache_dir=_cache(cache_dir),
        restart=restart,
        device=device,
        cluster=cluster,
        on_event=on_event,
        progress=progress,
        feature_progress=feature_progress,
        watch=watch,
    )
    return BenchmarkResult(results, Path(out))


def train(
    data: str | Path,
    method: str,
    *,
    out: str | Path,
    preprocess: Preprocess | dict | None = None,
    n_jobs: int = -1,
    cache_dir: str | Path | None | bool = True,
    on_event: Callable[[str], None] | None = None,
    progress: Callable[[int], None] | None = None,
    feature_progress: Callable[[int], None] | None = None,
    **settings,
) -> Bundle:
    """Train ``method`` on all of ``data`` and write the bundle folder ``out`` (``brainmri train``).

    ``settings`` are fields of :class:`~brainmri.runs.config.TrainConfig` (``params``, ``seed``, ``device``,
    ``processes``, ``validate``, ``extra_data``, ...); ``preprocess`` and ``cache_dir`` are as for
    :func:`benchmark`. The bundle returned predicts at once, as :func:`brainmri.load_model` would load it.
    """
    config = TrainConfig(data=str(data), method=method, preprocess=_preprocess(preprocess), **settings)
    return train_bundle(
        config,
        out,
        n_jobs=n_jobs,
        cache_dir=_cache(cache_dir),
        on_event=on_event,
        progress=progress,
        feature_progress=feature_progress,
    )


def _preprocess(preprocess: Preprocess | dict | None) -> Preprocess:
    return preprocess if isinstance(preprocess, Preprocess) else Preprocess(**(preprocess or {}))


def _cache(cache_dir: str | Path | None | bool) -> str | Path | None:
    if cache_dir is True:
        return default_cache_dir()
    return cache_dir or None
