"""``brainmri tune``: a method's settings searched by grouped inner CV, the best tested once.

Imports what the command runs only when it runs (see :mod:`brainmri.cli.data`).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from brainmri.cli.options import (
    MethodsHelpFormatter,
    add_cache_options,
    add_duplicate_options,
    add_general_options,
    add_input_options,
    add_mlflow_option,
    add_size_options,
    add_training_options,
    data_settings_from,
    method_params_from,
    record_in_mlflow,
    torch_threads_for,
)
from brainmri.cli.progress import progress
from brainmri.errors import ConfigError


def add_tune(sub) -> None:
    """``brainmri tune`` on the sub-parsers ``sub``."""
    p = sub.add_parser(
        "tune",
        help="search a method's settings by grouped inner CV (Optuna), test the best once",
        description="Search the settings of one method with an Optuna sampler; every trial is scored "
        "by grouped inner cross-validation on the training part only, and the best configuration is "
        "refitted and tested once on the test part. Writes results.json, trials.csv, "
        "best_params.json (a --params file for train and benchmark) and report.html to --out. "
        "Rerunning the same command continues the study from its finished trials.",
        formatter_class=MethodsHelpFormatter,
    )
    p.add_argument("data", type=Path, metavar="DATA", help="dataset folder or CSV manifest")
    p.add_argument("--method", required=True, help="the method to tune")
    p.add_argument(
        "--sampler", default="tpe", metavar="NAME", help="aco, tpe, cmaes, gp, random, qmc or nsga2 (default tpe)"
    )
    p.add_argument(
        "--compare",
        metavar="SAMPLERS",
        help="comma-separated samplers run with the same budget and seed, each tested once, compared "
        "(replaces --sampler)",
    )
    p.add_argument("--trials", type=int, default=30, help="finished trials per study (default 30)")
    p.add_argument("--out", type=Path, required=True, help="output folder (new, empty or an earlier tune to continue)")
    protocol = p.add_mutually_exclusive_group()
    protocol.add_argument(
        "--cv",
        type=int,
        metavar="K",
        help="nested grouped K-fold: a search per outer fold (default: the folds of the method's study, else 5)",
    )
    protocol.add_argument(
        "--split", choices=["official"], help="search on the dataset's training folder, test on its test folder"
    )
    p.add_argument("--test-data", type=Path, metavar="OTHER", help="search on all of DATA, test on OTHER")
    p.add_argument(
        "--storage",
        metavar="URL",
        help="Optuna storage: a journal file, sqlite:///FILE or "
        "postgresql://USER@HOST:PORT/DB shared by several workers (default: OUT/study.journal)",
    )
    p.add_argument("--study", metavar="NAME", help="study name in the storage (default: the method's name)")
    p.add_argument(
        "--space",
        type=Path,
        metavar="FILE",
        help="JSON search space replacing the method's "
        '({"C": {"type": "float", "low": 0.01, "high": 100, "log": true}})',
    )
    p.add_argument(
        "--pruner",
        choices=["none", "median", "halving"],
        default="none",
        help="stop unpromising trials early, after an inner fold or a training epoch (default none)",
    )
    p.add_argument(
        "--n-boot", type=int, default=1000, help="bootstrap resamples for confidence intervals (default 1000)"
    )
    add_size_options(p)
    add_cache_options(p)
    add_training_options(p)
    add_input_options(p)
    add_duplicate_options(p)
    add_mlflow_option(p)
    add_general_options(p, seed=True, jobs=True)
    p.set_defaults(func=cmd_tune, resume_hint="rerun the same command to continue from the finished trials")


def cmd_tune(args) -> int:
    from brainmri.data.preprocess import Preprocess
    from brainmri.models.catalog import get_method
    from brainmri.runs.config import default_cache_dir
    from brainmri.runs.tracking import method_metrics
    from brainmri.tuning.config import TuneConfig
    from brainmri.tuning.results import format_tune
    from brainmri.tuning.search import run_tune
    from brainmri.tuning.study import check_sampler, parse_samplers

    spec = get_method(args.method)
    if args.test_data and args.cv is not None:
        raise ConfigError("--test-data trains on all of DATA; do not combine it with --cv")
    config = TuneConfig(
        **data_settings_from(args, Preprocess(crop=not args.no_crop, size=args.size)),
        method=args.method,
        samplers=parse_samplers(args.compare) if args.compare else (check_sampler(args.sampler),),
        trials=args.trials,
        split=args.split or "cv",
        cv=spec.default_cv if args.cv is None else args.cv,
        test_data=str(args.test_data) if args.test_data else None,
        n_boot=args.n_boot,
        pruner=args.pruner,
        storage=args.storage,
        study=args.study,
        space_file=str(args.space) if args.space else None,
        params=method_params_from(args) or None,
    )
    cache = None if args.no_cache else (args.cache_dir or default_cache_dir())
    _quiet_optuna()
    with (
        torch_threads_for(args.threads),
        progress(args, None, "reading") as read,
        progress(args, None, "features") as features,
    ):
        results = run_tune(
            config,
            args.out,
            n_jobs=args.jobs,
            cache_dir=cache,
            device=args.device,
            on_event=args.reporter.say,
            progress=read,
            feature_progress=features,
        )
    print(format_tune(results))
    print(f"\nbest configuration: {args.out / 'best_params.json'} (use it with --params)")
    print(f"report: {args.out / 'report.html'}")
    record_in_mlflow(
        args,
        command="tune",
        name=f"tune {args.method} on {Path(args.data).name}",
        config={**results["config"], "best_params": results["best_params"]},
        metrics=method_metrics(results["test"]),
        artifacts=[args.out / name for name in ("results.json", "report.html", "best_params.json")],
    )
    return 0


def _quiet_optuna() -> None:
    """Optuna's own lines per trial (finished, failed with a traceback) would repeat brainmri's; keep its errors."""
    if importlib.util.find_spec("optuna") is not None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
