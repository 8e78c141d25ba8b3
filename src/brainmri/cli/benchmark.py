"""``brainmri benchmark``: every method under one leakage-safe protocol (:mod:`brainmri.runs.benchmark`).

Imports what the command runs only when it runs (see :mod:`brainmri.cli.data`).
"""

from __future__ import annotations

from pathlib import Path

from brainmri.cli.options import (
    MethodsHelpFormatter,
    add_adapt_option,
    add_cache_options,
    add_duplicate_options,
    add_extra_options,
    add_general_options,
    add_harmonise_options,
    add_input_options,
    add_mlflow_option,
    add_shift_options,
    add_size_options,
    add_training_options,
    data_settings_from,
    preprocess_from,
    record_in_mlflow,
    shift_settings,
    torch_threads_for,
)
from brainmri.cli.progress import progress


def add_benchmark(sub) -> None:
    """``brainmri benchmark`` on the sub-parsers ``sub``."""
    p = sub.add_parser(
        "benchmark",
        help="every method under the same leakage-safe protocol -> report.html",
        description="Train and test every method on the same splits; write results.json, "
        "predictions.csv, figures and a self-contained report.html to --out (a new or empty "
        "folder, outside DATA). Rerunning the same command resumes an interrupted run.",
        formatter_class=MethodsHelpFormatter,
    )
    p.add_argument("data", type=Path, metavar="DATA", help="dataset folder or CSV manifest")
    p.add_argument(
        "--methods",
        default="glcm-svm,multifeature-rf,ovo-svm,rf",
        help="comma-separated method names, or 'all' (default: the classical methods); method@label "
        "runs a named configuration of a method, with its own --params (method@label.key=value)",
    )
    p.add_argument(
        "--out", type=Path, required=True, help="output folder: new, empty, or an earlier run of brainmri benchmark"
    )
    protocol = p.add_mutually_exclusive_group()
    protocol.add_argument(
        "--cv",
        type=int,
        metavar="K",
        help="stratified K-fold, grouped by subject or duplicate cluster (default: the folds of the "
        "methods' studies when they agree, e.g. 7 for fcm-dwt-dnn alone, else 5)",
    )
    protocol.add_argument("--split", choices=["official"], help="use the dataset's own train/test folders")
    p.add_argument(
        "--drop-test-duplicates",
        action="store_true",
        help="with --split official or --test-data: drop test items that duplicate training items",
    )
    p.add_argument(
        "--group-similar",
        action="store_true",
        help="group look-alike images (e.g. adjacent slices) as well as near-duplicates; same as --grouping similar",
    )
    p.add_argument(
        "--grouping",
        choices=["auto", "subject", "duplicates", "similar", "none", "source"],
        default="auto",
        help="what k-fold keeps together: auto (subjects if known, else near-duplicate clusters), "
        "subject, duplicates, similar, none (a naive split, to measure what leakage adds), or source (one fold per "
        "source, held out whole: a manifest's source column, else sources inferred from how the files were made)",
    )
    p.add_argument(
        "--test-data",
        type=Path,
        nargs="+",
        action="extend",
        metavar="OTHER",
        help="external validation: train on all of DATA once, test on OTHER; several OTHERs are each scored on "
        "their own (per_test_set in results.json)",
    )
    p.add_argument("--label-map", metavar="MAP", help="JSON file or inline old=new,... applied to DATA and OTHER")
    add_extra_options(p, "DATA or OTHER")
    p.add_argument(
        "--n-boot", type=int, default=1000, help="bootstrap resamples for confidence intervals (default 1000)"
    )
    add_size_options(p)
    add_harmonise_options(p)
    add_cache_options(p)
    p.add_argument(
        "--restart", action="store_true", help="discard the results of an earlier brainmri run in --out and start over"
    )
    p.add_argument(
        "--cluster",
        metavar="tcp://SCHEDULER:8786",
        help="run the (method, fold) units on this Dask scheduler's workers; they need DATA, --out and "
        "--cache-dir at the same paths (a shared filesystem) and the same brainmri",
    )
    p.add_argument(
        "--shortcuts",
        choices=["auto", "on", "off"],
        default="auto",
        help="the shortcut audit: how well the labels follow from file metadata, acquisition, contrast and "
        "background alone (auto: from 500 images on; default auto)",
    )
    add_shift_options(p)
    add_adapt_option(p, "each test set (the clean one, and each shift and severity)", several=True)
    add_training_options(p)
    add_input_options(p)
    add_duplicate_options(p)
    add_mlflow_option(p)
    add_general_options(p, seed=True, jobs=True)
    p.set_defaults(func=cmd_benchmark, resume_hint="rerun the same command to resume from the finished units")


def cmd_benchmark(args) -> int:
    from brainmri.api import benchmark
    from brainmri.data.labels import parse_label_map
    from brainmri.report.terminal import format_results
    from brainmri.runs.config import default_cache_dir, parse_params
    from brainmri.runs.tracking import method_metrics
    from brainmri.timing import Stopwatch, timing_line

    settings = data_settings_from(args, preprocess_from(args))
    cache, watch = None if args.no_cache else (args.cache_dir or default_cache_dir()), Stopwatch()
    with (
        torch_threads_for(args.threads),
        progress(args, None, "reading") as read,
        progress(args, None, "features") as features,
    ):
        results = benchmark(
            settings.pop("data"),
            args.methods,
            out=args.out,
            preprocess=settings.pop("preprocess"),
            n_jobs=args.jobs,
            cache_dir=cache,
            restart=args.restart,
            device=args.device,
            cluster=args.cluster,
            on_event=args.reporter.say,
            progress=read,
            feature_progress=features,
            watch=watch,
            split=args.split or "cv",
            **({} if args.cv is None else {"cv": args.cv}),
            grouping="similar" if args.group_similar else args.grouping,
            drop_test_duplicates=args.drop_test_duplicates,
            test_data=tuple(str(t) for t in args.test_data) if args.test_data else None,
            label_map=parse_label_map(args.label_map),
            n_boot=args.n_boot,
            params=parse_params(args.params),
            adapt=args.adapt,
            extra_data=str(args.extra_data) if args.extra_data else None,
            extra_label_map=parse_label_map(args.extra_label_map, "--extra-label-map"),
            shortcuts=args.shortcuts,
            **shift_settings(args),
            **settings,
        ).results
    print(format_results(results))
    print(f"\nreport: {args.out / 'report.html'}")
    record_in_mlflow(
        args,
        command="benchmark",
        name=f"benchmark {Path(args.data).name}",
        config=results["config"],
        metrics=method_metrics(results),
        artifacts=[args.out / name for name in ("results.json", "report.html", "predictions.csv")],
    )
    print(timing_line(watch.report()))
    return 0
