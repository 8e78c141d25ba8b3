"""The option groups that several commands share, and the settings read back from them.

Defaults come from the library (``DuplicateParams``, ``MAX_PIXELS``,
``ServeSettings``...), so the help always says what the code does.
"""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from pathlib import Path

from brainmri.errors import ConfigError


def add_general_options(parser: argparse.ArgumentParser, *, seed: bool = False, jobs: bool = False) -> None:
    group = parser.add_argument_group("general")
    group.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug logs)")
    group.add_argument("-q", "--quiet", action="store_true", help="only errors; no progress bars")
    group.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    if seed:
        group.add_argument(
            "--seed",
            type=seed_value,
            default=0,
            help="random seed from 0 to 2**32 - 1: same seed, same data, same numbers (default 0)",
        )
    if jobs:
        group.add_argument("--jobs", type=jobs_value, default=-1, help="worker processes (-1: every core; default -1)")


def seed_value(text: str) -> int:
    """``--seed``: an integer that NumPy, scikit-learn and torch all take as a seed."""
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{text} is not a seed; use an integer from 0 to {2**32 - 1}")
    return value


def jobs_value(text: str) -> int:
    """``--jobs``: -1 (every core) or a positive count of worker processes."""
    value = int(text)
    if value != -1 and value < 1:
        raise argparse.ArgumentTypeError(
            f"{text} is not a number of workers; use -1 (every core) or a positive integer"
        )
    return value


def add_size_options(parser: argparse.ArgumentParser) -> None:
    """``--size`` and ``--no-crop``: the size and head crop of the preprocessing."""
    parser.add_argument("--size", type=int, default=224, help="preprocessing: resize to SIZE x SIZE (default 224)")
    parser.add_argument("--no-crop", action="store_true", help="preprocessing: do not crop to the head")


def add_cache_options(parser: argparse.ArgumentParser) -> None:
    """``--cache-dir`` and ``--no-cache``: the feature cache."""
    parser.add_argument(
        "--cache-dir", type=Path, help="feature cache folder (default $BRAINMRI_CACHE or ~/.cache/brainmri)"
    )
    parser.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")


def add_duplicate_options(parser: argparse.ArgumentParser) -> None:
    from brainmri.data.duplicates import DuplicateParams

    d = DuplicateParams()
    group = parser.add_argument_group("duplicate detection")
    group.add_argument(
        "--hash-radius",
        type=int,
        default=d.hash_radius,
        help=f"pHash bits within which two images are candidates (default {d.hash_radius})",
    )
    group.add_argument(
        "--near-threshold",
        type=float,
        default=d.near_threshold,
        help=f"structure correlation that confirms a near-duplicate (default {d.near_threshold})",
    )
    group.add_argument(
        "--similar-radius",
        type=int,
        default=d.similar_radius,
        help=f"pHash radius for look-alike grouping (default {d.similar_radius})",
    )
    group.add_argument(
        "--similar-threshold",
        type=float,
        default=d.similar_threshold,
        help=f"structure correlation that joins look-alikes (default {d.similar_threshold})",
    )


def add_input_options(parser: argparse.ArgumentParser, *, manifests: bool = True) -> None:
    """``--max-pixels``, and for commands that read datasets (``manifests``) ``--allow-outside-paths`` (CSV
    manifests), ``--bids-label`` and ``--bids-suffix`` (BIDS datasets)."""
    from brainmri.data.io import MAX_PIXELS

    group = parser.add_argument_group("input")
    group.add_argument(
        "--max-pixels",
        type=int,
        default=MAX_PIXELS,
        metavar="N",
        help="images with more pixels (voxels of a volume), read from their headers, are skipped "
        f"as unreadable (decompression bombs; default {MAX_PIXELS:,})",
    )
    if manifests:
        group.add_argument(
            "--allow-outside-paths",
            action="store_true",
            help="accept CSV manifest paths that lead out of the CSV's folder (../x.png, absolute paths)",
        )
        group.add_argument(
            "--bids-label",
            metavar="COLUMN",
            help="DATA is a BIDS dataset: the participants.tsv column holding each subject's class "
            "(subjects are the groups splits keep together)",
        )
        group.add_argument(
            "--bids-suffix",
            default="T1w",
            metavar="SUFFIX",
            help="a BIDS dataset's images to take, by suffix (default T1w; T2w, FLAIR, ...)",
        )


def add_training_options(
    parser: argparse.ArgumentParser, *, params: bool = True, threads: int | None = None, threads_why: str = ""
) -> None:
    """``--params`` (unless ``params`` is False), ``--device``, and ``--threads`` with the default ``threads``."""
    group = parser.add_argument_group("methods' settings and deep learning" if params else "deep learning")
    if params:
        group.add_argument(
            "--params",
            metavar="SETTINGS",
            help='settings of the methods: a JSON file {"method": {"key": value}} or inline '
            "method.key=value,... (e.g. ayadi-cnn.epochs=10,ayadi-cnn.size=96)",
        )
    group.add_argument(
        "--device",
        default="auto",
        help="where deep methods run: auto (CUDA, else Apple MPS, else CPU), cpu, cuda, cuda:N or mps (default auto)",
    )
    group.add_argument(
        "--threads",
        type=int,
        metavar="N",
        default=threads,
        help="CPU threads of torch (default: torch's choice)"
        if threads is None
        else f"CPU threads of torch (default {threads}: {threads_why})",
    )


def add_shift_options(parser: argparse.ArgumentParser) -> None:
    from brainmri.data.shifts import SHIFTS

    group = parser.add_argument_group("shift benchmark")
    group.add_argument(
        "--shift",
        nargs="?",
        const="all",
        metavar="NAMES",
        help="also test every fitted method on its test images under acquisition-like shifts, each at "
        f"5 severities: all (the default of a bare --shift) or some of {', '.join(SHIFTS)}",
    )
    group.add_argument(
        "--shift-severities",
        metavar="LIST",
        help="with --shift: the severities to test, from 1 (mild) to 5 (severe), e.g. 1,3,5 (default all)",
    )
    group.add_argument(
        "--shift-max-items",
        type=int,
        metavar="N",
        help="with --shift: re-test a stratified sample of N test items per split (default all)",
    )


def add_extra_options(parser: argparse.ArgumentParser, dropped: str) -> None:
    group = parser.add_argument_group("multi-source training")
    group.add_argument(
        "--extra-data",
        type=Path,
        metavar="EXTRA",
        help="a second labelled collection (folder or CSV) added to the training data only, never "
        f"tested on; its copies of {dropped} images are dropped and reported",
    )
    group.add_argument(
        "--extra-label-map",
        metavar="MAP",
        help="JSON file or inline old=new,... renaming EXTRA's classes onto the training classes (e.g. no=notumor)",
    )


def add_adapt_option(parser: argparse.ArgumentParser, unit: str, *, several: bool = False) -> None:
    from brainmri.robust.adapt import ADAPT_METHODS

    choices = {} if several else {"choices": ADAPT_METHODS}
    compare = (
        "; several, comma-separated (none,adabn,tent), test the same trained network each way and report "
        "each as a method of its own (METHOD+adabn...), paired"
        if several
        else ""
    )
    parser.add_argument(
        "--adapt",
        default="none",
        metavar="{" + ",".join(ADAPT_METHODS) + "}",
        **choices,
        help=f"test-time adaptation of a deep method to {unit}, without labels: adabn re-estimates "
        "the batch-norm statistics (Li et al. 2016), tent also tunes the normalisation layers to "
        "confident predictions (Wang et al. 2021); the model on disk is not changed (default none)"
        f"{compare}",
    )


def shift_settings(args) -> dict:
    """The shift fields of a BenchmarkConfig from ``--shift``, ``--shift-severities`` and ``--shift-max-items``."""
    from brainmri.data.shifts import SEVERITIES, parse_severities, parse_shifts

    if args.shift is None and args.shift_severities is not None:
        raise ConfigError("--shift-severities only applies with --shift; add --shift (all shifts) or remove it")
    severities = SEVERITIES if args.shift_severities is None else parse_severities(args.shift_severities)
    return {"shift": parse_shifts(args.shift), "shift_severities": severities, "shift_max_items": args.shift_max_items}


def add_runtime_options(parser: argparse.ArgumentParser, when: str = "") -> None:
    """``--runtime`` and the ``--cache-dir`` of its ONNX exports (predict, serve; :mod:`brainmri.models.runtimes`)."""
    parser.add_argument(
        "--runtime",
        choices=["auto", "torch", "onnx", "openvino"],
        default="auto",
        help=f"{when}what runs a deep bundle's network: onnx (ONNX Runtime, CPU; the graph is exported on first use, "
        "checked against PyTorch, and cached under --cache-dir by the bundle's hash), openvino (OpenVINO, CPU, "
        "the same export, at the precision of the network in PyTorch), torch, or auto: the one timed fastest on "
        "this machine at first use among those installed that can run the bundle (default auto)",
    )
    parser.add_argument(
        "--cache-dir", type=Path, help="cache folder of the ONNX exports (default $BRAINMRI_CACHE or ~/.cache/brainmri)"
    )


def add_mlflow_option(parser: argparse.ArgumentParser) -> None:
    """``--mlflow [URI]``: record the command as an MLflow run (:mod:`brainmri.runs.tracking`)."""
    parser.add_argument(
        "--mlflow",
        nargs="?",
        const="",
        metavar="URI",
        help="also record the run in MLflow: configuration, metrics with their intervals, outputs (and the bundle "
        "as an MLflow model); URI: a tracking URI (folder, sqlite:///mlflow.db, http://host:5000), default "
        "$MLFLOW_TRACKING_URI or MLflow's own; experiment $MLFLOW_EXPERIMENT_NAME or brainmri",
    )


def record_in_mlflow(args, **run) -> None:
    """With ``--mlflow``, record the command (:func:`brainmri.runs.tracking.log_run`) and say where."""
    if getattr(args, "mlflow", None) is None:  # also a command run by another (demo runs benchmark)
        return
    from brainmri.runs.tracking import log_run

    run_id = log_run(args.mlflow or None, **run)
    print(f"recorded in MLflow: run {run_id}" + (f" at {args.mlflow}" if args.mlflow else ""))


def add_harmonise_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("intensity harmonisation (preprocessing)")
    group.add_argument(
        "--harmonise",
        choices=["none", "zscore", "nyul"],
        default="none",
        help="standardise intensities: zscore (mean 0 / sd 1 inside the head mask) or nyul (histogram "
        "standardisation, landmarks learned on the training items only; default none)",
    )
    group.add_argument("--n4", action="store_true", help="N4 bias-field correction inside the head mask (SimpleITK)")
    group.add_argument(
        "--keep-aspect",
        action="store_true",
        help="pad the head crop to a square before resizing, so the head keeps its shape",
    )
    group.add_argument(
        "--canonical",
        action="store_true",
        help="decode every file the same way first (8-bit grey, one JPEG quantisation), so that file mode, bit "
        "depth and JPEG tables carry as little as possible to the model (a shortcut when a class comes from one "
        "export)",
    )


def preprocess_from(args):
    """The Preprocess of ``--size``, ``--no-crop``, ``--harmonise``, ``--n4``, ``--keep-aspect`` and ``--canonical``."""
    from brainmri.data.preprocess import Preprocess

    return Preprocess(
        crop=not args.no_crop,
        size=args.size,
        harmonise=args.harmonise,
        n4=args.n4,
        keep_aspect=args.keep_aspect,
        canonical=args.canonical,
    )


def duplicate_params_from(args):
    from brainmri.data.duplicates import DuplicateParams

    return DuplicateParams(args.hash_radius, args.near_threshold, args.similar_radius, args.similar_threshold)


class MethodsHelpFormatter(argparse.HelpFormatter):
    """Lists the registered methods under ``--methods``; the registry (and scikit-learn) is imported only
    when the help is shown, so that parsing stays fast."""

    def _get_help_string(self, action):
        if {"--methods", "--method"} & set(action.option_strings):
            from brainmri.models.catalog import available_methods

            return f"{action.help}; valid methods: {', '.join(available_methods())}"
        return action.help

    def _split_lines(self, text, width):
        # As argparse's, but a method name (fcm-dwt-dnn) is never split at a hyphen.
        import textwrap

        return textwrap.wrap(self._whitespace_matcher.sub(" ", text).strip(), width, break_on_hyphens=False)


def data_settings_from(args, preprocess) -> dict:
    """The :class:`~brainmri.runs.config.DataSettings` of ``benchmark``, ``train`` and ``tune`` from their options
    (``DATA``, ``--seed``, ``--max-pixels``, ``--allow-outside-paths``, the duplicate options) and ``preprocess``."""
    return {
        "data": str(args.data),
        "seed": args.seed,
        "preprocess": preprocess,
        "duplicates": duplicate_params_from(args),
        "max_pixels": args.max_pixels,
        "allow_outside_paths": args.allow_outside_paths,
        "bids_label": args.bids_label,
        "bids_suffix": args.bids_suffix,
    }


def method_params_from(args) -> dict:
    """The ``--params`` settings of ``--method`` (train, tune); settings of another method are refused."""
    from brainmri.runs.config import parse_params

    params = parse_params(args.params) or {}
    stray = sorted(set(params) - {args.method})
    if stray:
        raise ConfigError(
            f"--params names method {stray[0]!r}, but --method is {args.method}; "
            f"give settings as {args.method}.key=value"
        )
    return params.get(args.method, {})


@contextmanager
def torch_threads_for(threads: int | None):
    """torch uses ``threads`` CPU threads within the block (torch is not imported when None)."""
    if threads is None:
        yield
        return
    from brainmri.training.device import check_threads, torch_threads

    check_threads(threads)
    with torch_threads(threads):
        yield


def input_defaults() -> dict:
    from brainmri.data.io import MAX_PIXELS

    return {"max_pixels": MAX_PIXELS, "allow_outside_paths": False, "bids_label": None, "bids_suffix": "T1w"}


def duplicate_defaults() -> dict:
    from brainmri.data.duplicates import DuplicateParams

    return DuplicateParams().to_dict()
