"""The ``brainmri`` command line: parse, call the library, print.

Results go to stdout and files; logs and progress to stderr (bars on a
terminal, plain lines otherwise). Errors a user can cause print one line (a
traceback only with ``--debug``) and exit with status 2; a batch job exits 1
when nothing usable remained. Ctrl-C and SIGTERM stop the command cleanly
(exit 130 and 143: finished work kept, no half-written file), and worker
processes end with the command, even when it is killed.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import os
import signal
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from brainmri import __version__
from brainmri.errors import BrainMRIError, ConfigError

logger = logging.getLogger("brainmri")

#: Seconds between two plain progress lines of one stage when stderr is not a terminal.
PLAIN_EVERY_S = 10.0


def _common(parser: argparse.ArgumentParser, *, seed: bool = False, jobs: bool = False) -> None:
    group = parser.add_argument_group("general")
    group.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug logs)")
    group.add_argument("-q", "--quiet", action="store_true", help="only errors; no progress bars")
    group.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    if seed:
        group.add_argument("--seed", type=_seed, default=0,
                           help="random seed from 0 to 2**32 - 1: same seed, same data, same numbers (default 0)")
    if jobs:
        group.add_argument("--jobs", type=_jobs, default=-1, help="worker processes (-1: every core; default -1)")


def _seed(text: str) -> int:
    """``--seed``: an integer that NumPy, scikit-learn and torch all take as a seed."""
    value = int(text)
    if not 0 <= value < 2**32:
        raise argparse.ArgumentTypeError(f"{text} is not a seed; use an integer from 0 to {2**32 - 1}")
    return value


def _jobs(text: str) -> int:
    """``--jobs``: -1 (every core) or a positive count of worker processes."""
    value = int(text)
    if value != -1 and value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a number of workers; use -1 (every core) or a positive integer")
    return value


def _duplicate_options(parser: argparse.ArgumentParser) -> None:
    from brainmri.data.duplicates import DuplicateParams

    d = DuplicateParams()
    group = parser.add_argument_group("duplicate detection")
    group.add_argument("--hash-radius", type=int, default=d.hash_radius, help=f"pHash bits within which two images are candidates (default {d.hash_radius})")
    group.add_argument("--near-threshold", type=float, default=d.near_threshold, help=f"structure correlation that confirms a near-duplicate (default {d.near_threshold})")
    group.add_argument("--similar-radius", type=int, default=d.similar_radius, help=f"pHash radius for look-alike grouping (default {d.similar_radius})")
    group.add_argument("--similar-threshold", type=float, default=d.similar_threshold, help=f"structure correlation that joins look-alikes (default {d.similar_threshold})")


def _input_options(parser: argparse.ArgumentParser, *, manifests: bool = True) -> None:
    """``--max-pixels``, and ``--allow-outside-paths`` for commands that read CSV manifests (``manifests``)."""
    from brainmri.data.io import MAX_PIXELS

    group = parser.add_argument_group("input")
    group.add_argument("--max-pixels", type=int, default=MAX_PIXELS, metavar="N",
                       help="images with more pixels (voxels of a volume), read from their headers, are skipped "
                       f"as unreadable (decompression bombs; default {MAX_PIXELS:,})")
    if manifests:
        group.add_argument("--allow-outside-paths", action="store_true",
                           help="accept CSV manifest paths that lead out of the CSV's folder (../x.png, absolute paths)")


def _training_options(parser: argparse.ArgumentParser, *, params: bool = True, threads: int | None = None,
                      threads_why: str = "") -> None:
    """``--params`` (unless ``params`` is False), ``--device``, and ``--threads`` with the default ``threads``."""
    group = parser.add_argument_group("methods' settings and deep learning" if params else "deep learning")
    if params:
        group.add_argument("--params", metavar="SETTINGS",
                           help="settings of the methods: a JSON file {\"method\": {\"key\": value}} or inline "
                           "method.key=value,... (e.g. ayadi-cnn.epochs=10,ayadi-cnn.size=96)")
    group.add_argument("--device", default="auto",
                       help="where deep methods run: auto (CUDA, else Apple MPS, else CPU), cpu, cuda, cuda:N or mps "
                       "(default auto)")
    group.add_argument("--threads", type=int, metavar="N", default=threads,
                       help="CPU threads of torch (default: torch's choice)" if threads is None
                       else f"CPU threads of torch (default {threads}: {threads_why})")


def _shift_options(parser: argparse.ArgumentParser) -> None:
    from brainmri.data.shifts import SHIFTS

    group = parser.add_argument_group("shift benchmark")
    group.add_argument("--shift", nargs="?", const="all", metavar="NAMES",
                       help="also test every fitted method on its test images under acquisition-like shifts, each at "
                       f"5 severities: all (the default of a bare --shift) or some of {', '.join(SHIFTS)}")
    group.add_argument("--shift-severities", metavar="LIST",
                       help="with --shift: the severities to test, from 1 (mild) to 5 (severe), e.g. 1,3,5 (default all)")
    group.add_argument("--shift-max-items", type=int, metavar="N",
                       help="with --shift: re-test a stratified sample of N test items per split (default all)")


def _serve_options(parser: argparse.ArgumentParser) -> None:
    from brainmri.serve.settings import ServeSettings

    d = ServeSettings()
    group = parser.add_argument_group("server")
    group.add_argument("--host", default=d.host,
                       help=f"address to listen on (default {d.host}: this machine only); another address lets "
                       "others in, with no authentication unless --token is set")
    group.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port}; 0: any free port)")
    group.add_argument("--token", default=os.environ.get("BRAINMRI_SERVE_TOKEN"),
                       help="every API call must send 'Authorization: Bearer TOKEN' (default $BRAINMRI_SERVE_TOKEN, "
                       "which keeps it out of the process list; none: no authentication)")
    group.add_argument("--max-upload-mb", type=float, default=d.max_upload_mb, metavar="MB",
                       help=f"largest request body, all images together (default {d.max_upload_mb:g} MiB)")
    group.add_argument("--max-pending-mb", type=float, default=d.max_pending_mb, metavar="MB",
                       help="request bodies held in memory at once, all clients together; more are answered 503 "
                       "before they are read (default: 100 MiB or twice --max-upload-mb, the larger)")
    group.add_argument("--max-pixels", type=int, default=d.max_pixels, metavar="N",
                       help=f"largest pixel count of one image, checked before decoding (default {d.max_pixels:,})")
    group.add_argument("--max-files", type=int, default=d.max_files, help=f"most images per request (default {d.max_files})")
    group.add_argument("--workers", type=int, default=d.workers,
                       help=f"threads that read, predict and explain, side by side (default {d.workers})")
    group.add_argument("--queue-size", type=int, default=d.queue_size,
                       help=f"requests that may wait for a worker; more are answered 503 (default {d.queue_size})")
    group.add_argument("--keep-uploads", type=Path, metavar="DIR",
                       help="keep every predicted upload and its result in DIR (default: nothing is kept)")


def _extra_options(parser: argparse.ArgumentParser, dropped: str) -> None:
    group = parser.add_argument_group("multi-source training")
    group.add_argument("--extra-data", type=Path, metavar="EXTRA",
                       help="a second labelled collection (folder or CSV) added to the training data only, never "
                       f"tested on; its copies of {dropped} images are dropped and reported")
    group.add_argument("--extra-label-map", metavar="MAP",
                       help="JSON file or inline old=new,... renaming EXTRA's classes onto the training classes "
                       "(e.g. no=notumor)")


def _adapt_option(parser: argparse.ArgumentParser, unit: str, *, several: bool = False) -> None:
    from brainmri.robust.adapt import ADAPT_METHODS

    choices = {} if several else {"choices": ADAPT_METHODS}
    compare = ("; several, comma-separated (none,adabn,tent), test the same trained network each way and report "
               "each as a method of its own (METHOD+adabn...), paired" if several else "")
    parser.add_argument("--adapt", default="none", metavar="{" + ",".join(ADAPT_METHODS) + "}", **choices,
                        help=f"test-time adaptation of a deep method to {unit}, without labels: adabn re-estimates "
                        "the batch-norm statistics (Li et al. 2016), tent also tunes the normalisation layers to "
                        "confident predictions (Wang et al. 2021); the model on disk is not changed (default none)"
                        f"{compare}")


def _shift_settings(args) -> dict:
    """The shift fields of a BenchmarkConfig from ``--shift``, ``--shift-severities`` and ``--shift-max-items``."""
    from brainmri.data.shifts import SEVERITIES, parse_severities, parse_shifts

    if args.shift is None and args.shift_severities is not None:
        raise ConfigError("--shift-severities only applies with --shift; add --shift (all shifts) or remove it")
    severities = SEVERITIES if args.shift_severities is None else parse_severities(args.shift_severities)
    return {"shift": parse_shifts(args.shift), "shift_severities": severities, "shift_max_items": args.shift_max_items}


def _harmonise_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("intensity harmonisation (preprocessing)")
    group.add_argument("--harmonise", choices=["none", "zscore", "nyul"], default="none",
                       help="standardise intensities: zscore (mean 0 / sd 1 inside the head mask) or nyul (histogram "
                       "standardisation, landmarks learned on the training items only; default none)")
    group.add_argument("--n4", action="store_true", help="N4 bias-field correction inside the head mask (SimpleITK)")
    group.add_argument("--keep-aspect", action="store_true",
                       help="pad the head crop to a square before resizing, so the head keeps its shape")


def _preprocess(args):
    """The Preprocess of ``--size``, ``--no-crop``, ``--harmonise``, ``--n4`` and ``--keep-aspect``."""
    from brainmri.data.preprocess import Preprocess

    return Preprocess(crop=not args.no_crop, size=args.size, harmonise=args.harmonise, n4=args.n4,
                      keep_aspect=args.keep_aspect)


def _duplicate_params(args):
    from brainmri.data.duplicates import DuplicateParams

    return DuplicateParams(args.hash_radius, args.near_threshold, args.similar_radius, args.similar_threshold)


class Reporter:
    """Messages and progress of one command on a stream (stderr).

    On a terminal a stage shows a tqdm bar, closed when the stage ends (at the
    next message, or when the command ends). Elsewhere (a log file, a pipe)
    there are no escape codes: a stage writes a plain line at most every
    :data:`PLAIN_EVERY_S` seconds. Either way a finished stage leaves one line
    with its count and time. With ``quiet`` only log records of level ERROR
    get through (see :func:`_configure_logging`).

    Parameters
    ----------
    stream : file
    quiet : bool
        Show no messages and no progress.
    """

    def __init__(self, stream: TextIO, *, quiet: bool = False):
        self.stream = stream
        self.quiet = quiet
        self.tty = stream.isatty()
        self._stages: list[_Stage] = []

    def stage(self, desc: str, total: int | None = None) -> _Stage:
        """A progress callback: call it with the number of images just done."""
        stage = _Stage(self, desc, total)
        self._stages.append(stage)
        return stage

    def say(self, message: str) -> None:
        """A message line; it ends the stages in progress (a new step has begun)."""
        if not self.quiet:
            self.close()
            self.write(message)

    def write(self, line: str) -> None:
        """A line, written so that an open bar stays intact."""
        if self.tty:
            from tqdm import tqdm

            tqdm.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        """End every stage in progress."""
        for stage in self._stages:
            stage.close()


class _Stage:
    """One counted step of a :class:`Reporter` (``reading``, ``features``)."""

    def __init__(self, reporter: Reporter, desc: str, total: int | None):
        self.reporter, self.desc, self.total = reporter, desc, total
        self.count = 0
        self.started: float | None = None
        self.shown = 0.0
        self.bar = None

    def __call__(self, n: int) -> None:
        if self.reporter.quiet:
            return
        now = time.monotonic()
        if self.started is None:
            self.started = self.shown = now
            if self.reporter.tty:
                from tqdm import tqdm

                self.bar = tqdm(total=self.total, desc=self.desc, unit="img", file=self.reporter.stream, leave=False)
        self.count += n
        if self.bar is not None:
            self.bar.update(n)
        elif now - self.shown >= PLAIN_EVERY_S:
            self.shown = now
            self.reporter.write(f"{self.desc}: {self._done()} images ({now - self.started:.0f} s)")

    def _done(self) -> str:
        return f"{self.count}/{self.total}" if self.total else str(self.count)

    def close(self) -> None:
        if self.started is None:
            return
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        self.reporter.write(f"{self.desc}: {self._done()} images in {time.monotonic() - self.started:.1f} s")
        self.started, self.count = None, 0


@contextmanager
def _progress(args, total: int | None, desc: str):
    """A progress callback of ``args.reporter`` for the ``with`` block; the stage ends with it."""
    stage = args.reporter.stage(desc, total)
    try:
        yield stage
    finally:
        stage.close()


class _MethodsHelpFormatter(argparse.HelpFormatter):
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="brainmri",
        description="Classify brain MRI with every family of method the field uses, and compare them honestly.",
    )
    parser.add_argument("--version", action="version", version=f"brainmri {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("audit", help="what is in a dataset: classes, sizes, unreadable files, duplicates, leakage",
                       description="Read every image of DATA and report classes, sizes, unreadable files, "
                       "exact and near-duplicates, label conflicts and cross-split leakage.")
    p.add_argument("data", type=Path, metavar="DATA", help="dataset folder (class sub-folders, optionally under Training/Testing) or CSV manifest")
    p.add_argument("--out", type=Path, help="write DIR/audit.json")
    p.add_argument("--against", type=Path, metavar="OTHER",
                   help="also find images of OTHER (another dataset folder or CSV) that copy images of DATA")
    p.add_argument("--group-similar", action="store_true", help="also report the look-alike groups used by --group-similar splits")
    _input_options(p)
    _duplicate_options(p)
    _common(p, jobs=True)
    p.set_defaults(func=cmd_audit)

    p = sub.add_parser("benchmark", help="every method under the same leakage-safe protocol -> report.html",
                       description="Train and test every method on the same splits; write results.json, "
                       "predictions.csv, figures and a self-contained report.html to --out (a new or empty "
                       "folder, outside DATA). Rerunning the same command resumes an interrupted run.",
                       formatter_class=_MethodsHelpFormatter)
    p.add_argument("data", type=Path, metavar="DATA", help="dataset folder or CSV manifest")
    p.add_argument("--methods", default="glcm-svm,multifeature-rf,ovo-svm,rf",
                   help="comma-separated method names, or 'all' (default: the classical methods); method@label "
                   "runs a named configuration of a method, with its own --params (method@label.key=value)")
    p.add_argument("--out", type=Path, required=True, help="output folder: new, empty, or an earlier run of brainmri benchmark")
    protocol = p.add_mutually_exclusive_group()
    protocol.add_argument("--cv", type=int, metavar="K",
                          help="stratified K-fold, grouped by subject or duplicate cluster (default: the folds of the "
                          "methods' studies when they agree, e.g. 7 for fcm-dwt-dnn alone, else 5)")
    protocol.add_argument("--split", choices=["official"], help="use the dataset's own train/test folders")
    p.add_argument("--drop-test-duplicates", action="store_true", help="with --split official or --test-data: drop test items that duplicate training items")
    p.add_argument("--group-similar", action="store_true", help="group look-alike images (e.g. adjacent slices) as well as near-duplicates; same as --grouping similar")
    p.add_argument("--grouping", choices=["auto", "subject", "duplicates", "similar", "none"], default="auto",
                   help="what k-fold keeps together: auto (subjects if known, else near-duplicate clusters), "
                   "subject, duplicates, similar, or none (a naive split, to measure what leakage adds)")
    p.add_argument("--test-data", type=Path, metavar="OTHER", help="external validation: train on all of DATA, test on OTHER")
    p.add_argument("--label-map", metavar="MAP", help="JSON file or inline old=new,... applied to DATA and OTHER")
    _extra_options(p, "DATA or OTHER")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for confidence intervals (default 1000)")
    p.add_argument("--size", type=int, default=224, help="preprocessing: resize to SIZE x SIZE (default 224)")
    p.add_argument("--no-crop", action="store_true", help="preprocessing: do not crop to the head")
    _harmonise_options(p)
    p.add_argument("--cache-dir", type=Path, help="feature cache folder (default $BRAINMRI_CACHE or ~/.cache/brainmri)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--restart", action="store_true", help="discard the results of an earlier brainmri run in --out and start over")
    p.add_argument("--cluster", metavar="tcp://SCHEDULER:8786",
                   help="run the (method, fold) units on this Dask scheduler's workers; they need DATA, --out and "
                   "--cache-dir at the same paths (a shared filesystem) and the same brainmri")
    _shift_options(p)
    _adapt_option(p, "each test set (the clean one, and each shift and severity)", several=True)
    _training_options(p)
    _input_options(p)
    _duplicate_options(p)
    _common(p, seed=True, jobs=True)
    p.set_defaults(func=cmd_benchmark, resume_hint="rerun the same command to resume from the finished units")

    p = sub.add_parser("train", help="train one method on all of DATA -> a model bundle folder",
                       description="Audit DATA, train the method on all of it (its inner validation grouped by "
                       "subject or near-duplicate cluster), measure the internal validation and write a bundle "
                       "folder to --out: weights (skops or safetensors) and manifest.json.",
                       formatter_class=_MethodsHelpFormatter)
    p.add_argument("data", type=Path, metavar="DATA", help="dataset folder or CSV manifest")
    p.add_argument("--method", required=True, help="the method to train")
    p.add_argument("--out", type=Path, required=True, help="bundle folder: new, empty or an earlier bundle (replaced); outside DATA")
    p.add_argument("--size", type=int, default=224, help="preprocessing: resize to SIZE x SIZE (default 224)")
    p.add_argument("--no-crop", action="store_true", help="preprocessing: do not crop to the head")
    _harmonise_options(p)
    p.add_argument("--cache-dir", type=Path, help="feature cache folder (default $BRAINMRI_CACHE or ~/.cache/brainmri)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    p.add_argument("--no-validation", action="store_true",
                   help="skip the internal validation (a method without its own validation part is refitted on "
                   "each grouped inner fold to measure it)")
    _extra_options(p, "DATA")
    _training_options(p)
    _input_options(p)
    _duplicate_options(p)
    _common(p, seed=True, jobs=True)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("tune", help="search a method's settings by grouped inner CV (Optuna), test the best once",
                       description="Search the settings of one method with an Optuna sampler; every trial is scored "
                       "by grouped inner cross-validation on the training part only, and the best configuration is "
                       "refitted and tested once on the test part. Writes results.json, trials.csv, "
                       "best_params.json (a --params file for train and benchmark) and report.html to --out. "
                       "Rerunning the same command continues the study from its finished trials.",
                       formatter_class=_MethodsHelpFormatter)
    p.add_argument("data", type=Path, metavar="DATA", help="dataset folder or CSV manifest")
    p.add_argument("--method", required=True, help="the method to tune")
    p.add_argument("--sampler", default="tpe", metavar="NAME",
                   help="aco, tpe, cmaes, gp, random, qmc or nsga2 (default tpe)")
    p.add_argument("--compare", metavar="SAMPLERS",
                   help="comma-separated samplers run with the same budget and seed, each tested once, compared "
                   "(replaces --sampler)")
    p.add_argument("--trials", type=int, default=30, help="finished trials per study (default 30)")
    p.add_argument("--out", type=Path, required=True, help="output folder (new, empty or an earlier tune to continue)")
    protocol = p.add_mutually_exclusive_group()
    protocol.add_argument("--cv", type=int, metavar="K", help="nested grouped K-fold: a search per outer fold "
                          "(default: the folds of the method's study, else 5)")
    protocol.add_argument("--split", choices=["official"], help="search on the dataset's training folder, test on "
                          "its test folder")
    p.add_argument("--test-data", type=Path, metavar="OTHER", help="search on all of DATA, test on OTHER")
    p.add_argument("--storage", metavar="URL", help="Optuna storage: a journal file, sqlite:///FILE or "
                   "postgresql://USER@HOST:PORT/DB shared by several workers (default: OUT/study.journal)")
    p.add_argument("--study", metavar="NAME", help="study name in the storage (default: the method's name)")
    p.add_argument("--space", type=Path, metavar="FILE", help="JSON search space replacing the method's "
                   "({\"C\": {\"type\": \"float\", \"low\": 0.01, \"high\": 100, \"log\": true}})")
    p.add_argument("--pruner", choices=["none", "median", "halving"], default="none",
                   help="stop unpromising trials early, after an inner fold or a training epoch (default none)")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for confidence intervals (default 1000)")
    p.add_argument("--size", type=int, default=224, help="preprocessing: resize to SIZE x SIZE (default 224)")
    p.add_argument("--no-crop", action="store_true", help="preprocessing: do not crop to the head")
    p.add_argument("--cache-dir", type=Path, help="feature cache folder (default $BRAINMRI_CACHE or ~/.cache/brainmri)")
    p.add_argument("--no-cache", action="store_true", help="do not read or write the feature cache")
    _training_options(p)
    _input_options(p)
    _duplicate_options(p)
    _common(p, seed=True, jobs=True)
    p.set_defaults(func=cmd_tune, resume_hint="rerun the same command to continue from the finished trials")

    p = sub.add_parser("predict", help="class probabilities of images from a model bundle",
                       description="Predict every image of IMAGES_OR_FOLDERS with the bundle MODEL: probabilities "
                       "per class and the predicted class, as CSV (stdout or --out x.csv) or JSON (--out x.json). "
                       "Unreadable images are reported and skipped; a folder of class sub-folders also gets metrics.")
    p.add_argument("model", type=Path, metavar="MODEL", help="bundle folder written by brainmri train")
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGES_OR_FOLDERS",
                   help="image files, folders of images, or folders of class sub-folders")
    p.add_argument("--out", type=Path, help="write the predictions to a .csv or .json file (default: CSV on stdout); "
                   "an existing file is replaced only when it is an earlier brainmri prediction file")
    p.add_argument("--force", action="store_true", help="replace an existing --out file that brainmri did not write")
    p.add_argument("--batch-size", type=int, default=64, help="images read and predicted at a time (default 64)")
    p.add_argument("--explain", type=Path, metavar="DIR",
                   help="also write an attribution map (.npy) and overlay (PNG) of every image to DIR")
    p.add_argument("--explain-method", metavar="NAME",
                   help="attribution method of --explain (default: gradcam for a CNN, occlusion for other models)")
    _adapt_option(p, "each batch of --batch-size images")
    _training_options(p, params=False)
    _input_options(p, manifests=False)
    _common(p, seed=True, jobs=True)
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("explain", help="attribution maps of images from a model bundle, and checks of them",
                       description="Write an attribution map (OUT/maps/*.npy) and an overlay with the predicted class "
                       "and probability (OUT/overlays/*.png) for every image, and check the maps: deletion/insertion "
                       "curves, the weight-randomisation sanity check and, with --masks, the pointing game against "
                       "known lesion masks. Numbers are printed and written to OUT/explain.json.")
    p.add_argument("model", type=Path, metavar="MODEL", help="bundle folder written by brainmri train")
    p.add_argument("images", type=Path, nargs="+", metavar="IMAGES_OR_FOLDERS",
                   help="image files, folders of images, or folders of class sub-folders")
    p.add_argument("--method", default="gradcam",
                   help="gradcam, integrated-gradients, saliency (CNNs) or occlusion (every model; default gradcam)")
    p.add_argument("--out", type=Path, required=True, help="output folder: new, empty or an earlier brainmri explain output")
    p.add_argument("--masks", type=Path, metavar="DIR",
                   help="lesion masks (DIR/<class>/<image name> or DIR/<image name>; brainmri demo-data writes "
                   "DATA/.masks): report the pointing game and the share of attribution inside the lesion")
    p.add_argument("--tolerance", type=float, metavar="PX",
                   help="pointing game: a map maximum within PX pixels of the lesion is a hit (default: 15 px at 224, "
                   "scaled to the model's input size, as Zhang et al. 2018)")
    p.add_argument("--no-checks", action="store_true", help="skip the deletion/insertion and randomisation checks")
    p.add_argument("--check-items", type=int, default=64, metavar="N",
                   help="images (a seeded sample) in the deletion/insertion and randomisation checks (default 64)")
    p.add_argument("--batch-size", type=int, default=64, help="images read and explained at a time (default 64)")
    _training_options(p, params=False)
    _input_options(p, manifests=False)
    _common(p, seed=True, jobs=True)
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("serve", help="a web page and HTTP API that predict and explain with a model bundle",
                       description="Serve the bundle MODEL: a page at / (drop an MRI slice, see the predicted class, "
                       "the probabilities and a heatmap) and an HTTP API (POST /predict, GET /model, GET /health; "
                       "spec at /openapi.json). A research tool, not a diagnostic device. Listens on localhost "
                       "unless --host says otherwise; Ctrl-C stops it.")
    p.add_argument("model", type=Path, metavar="MODEL", help="bundle folder written by brainmri train")
    p.add_argument("--onnx", action="store_true",
                   help="predict with ONNX Runtime through the bundle's export (brainmri export MODEL --onnx); one "
                   "slice was answered 2-3x faster than by PyTorch, see docs/benchmarks.md; heatmaps still use PyTorch")
    p.add_argument("--onnx-file", type=Path, metavar="FILE", help="the exported file, when not MODEL/model.onnx")
    _serve_options(p)
    _training_options(p, params=False, threads=1,
                      threads_why="each worker predicts on one core; on a busy 2-core machine two threads made one "
                      "ayadi-cnn prediction 8-20x slower, see docs/benchmarks.md")
    _common(p)
    p.set_defaults(func=cmd_serve)
    p = sub.add_parser("export", help="the network of a deep bundle as an ONNX file, checked against PyTorch",
                       description="Write the network of the bundle MODEL (its preprocessed input to calibrated "
                       "probabilities) as an ONNX file, for ONNX Runtime and other runtimes. It is checked with "
                       "onnx.checker and against PyTorch on synthetic slices with ONNX Runtime before it is written; "
                       "FILE.json beside it describes its input, output and the check.")
    p.add_argument("model", type=Path, metavar="MODEL", help="bundle folder written by brainmri train")
    p.add_argument("--onnx", action="store_true", required=True, help="export to ONNX (the only format)")
    p.add_argument("--out", type=Path, metavar="FILE", help="the .onnx file (default MODEL/model.onnx); an existing "
                   "file is replaced only when brainmri exported it")
    p.add_argument("--tolerance", type=float,
                   help="largest absolute difference of probabilities allowed between ONNX Runtime and PyTorch "
                   "(float32) on the check images (default 1e-4)")
    _common(p)
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("regions", help="the brain regions that carry the classes of 3D volumes (genetic mask search)",
                       description="Rank the regions of an atlas (or of the template's parcellation) by how much "
                       "they tell the classes of DATA's 3D volumes apart, and search with a genetic algorithm the "
                       "fewest regions that keep the grouped cross-validated accuracy (Shojaei et al. 2023). Writes "
                       "the ranked regions (regions.json, regions.csv), the selected mask (mask.nii.gz), results.json "
                       "and report.html to --out.")
    p.add_argument("data", type=Path, metavar="DATA", help="dataset folder or CSV manifest of NIfTI volumes on one grid")
    p.add_argument("--out", type=Path, required=True, help="output folder: new, empty or an earlier brainmri regions output")
    p.add_argument("--atlas", type=Path, metavar="PATH",
                   help="label NIfTI in the volumes' space (e.g. AAL, Harvard-Oxford maxprob); resampled by nearest "
                   "neighbour when on another grid (default: a parcellation of the MNI152 template)")
    p.add_argument("--regions", type=int, default=24, help="without --atlas: regions of the template's parcellation (default 24)")
    p.add_argument("--model", type=Path, metavar="BUNDLE",
                   help="rank the regions by the attribution maps of this cnn3d bundle (brainmri train --method "
                   "cnn3d) instead of the ANOVA F of their features")
    p.add_argument("--attribution", default="gradient",
                   help="with --model: the map whose density per region ranks the regions: gradient (the signed "
                   "input gradient, default), integrated-gradients or gradcam")
    p.add_argument("--device", default="auto", help="where the --model network runs: auto, cpu, cuda, cuda:N or mps (default auto)")
    p.add_argument("--population", type=int, default=30, help="masks per generation (default 30)")
    p.add_argument("--generations", type=int, default=40, help="generations (default 40)")
    p.add_argument("--mutation", type=float, help="probability that a region's bit flips in a child (default 1/regions)")
    p.add_argument("--penalty", type=float, default=0.002, help="fitness lost per selected region (default 0.002)")
    _common(p, seed=True)
    p.set_defaults(func=cmd_regions)

    p = sub.add_parser("demo-data", help="write a synthetic dataset of brain-MRI-like slices",
                       description="Write OUT/<class>/*.png: synthetic T1-like slices of four classes "
                       "(glioma, meningioma, notumor, pituitary), and OUT/.masks/<class>/*.png: the lesion mask of "
                       "every tumour image (a hidden folder, so it is not taken for a class). Deterministic per --seed.")
    p.add_argument("out", type=Path, metavar="OUT", help="folder to create (must not exist or be empty)")
    p.add_argument("--n", type=int, default=None, help="images per class (default 40; with --3d subjects per class, "
                   "default 20)")
    p.add_argument("--size", type=int, default=None, help="image size in pixels (default 128; with --3d voxels a side, "
                   "default 32)")
    p.add_argument("--3d", dest="volumes", action="store_true",
                   help="write NIfTI volumes instead: OUT/atrophy and OUT/control, made from the MNI152 template with "
                   "regional atrophy planted in some regions of a parcellation; OUT/.regions holds the label volume "
                   "and the planted-region list, OUT/.masks the planted regions of every atrophy subject")
    p.add_argument("--regions", type=int, default=24, help="with --3d: regions of the template's parcellation (default 24)")
    p.add_argument("--planted", type=int, default=3, help="with --3d: regions carrying the atrophy (default 3)")
    _common(p, seed=True)
    p.set_defaults(func=cmd_demo_data)

    p = sub.add_parser("demo", help="the whole flow on built-in synthetic data",
                       description="Write synthetic data, audit it, and benchmark the classical methods and a "
                       "small deep one (ayadi-cnn at 64 px, when PyTorch is installed) on it (5-fold CV). Outputs "
                       "go to --out; the report is OUT/benchmark/report.html.")
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder (default demo-output)")
    p.add_argument("--n", type=int, default=40, help="images per class (default 40)")
    _common(p, seed=True, jobs=True)
    p.set_defaults(func=cmd_demo, resume_hint="rerun the same command to resume")
    return parser


def cmd_audit(args) -> int:
    from brainmri.data.audit import analyse, audit_report, cross_dataset_leaks, format_audit, format_cross_dataset_leaks
    from brainmri.data.dataset import load_dataset
    from brainmri.data.io import check_max_pixels
    from brainmri.files import write_json
    from brainmri.outputs import OutputFolder

    params = _duplicate_params(args)
    check_max_pixels(args.max_pixels)
    folder = OutputFolder(args.out, "audit") if args.out else None
    if folder is not None:
        folder.check(inputs=[args.data, *([args.against] if args.against else [])])
    dataset = load_dataset(args.data, allow_outside=args.allow_outside_paths)
    other = load_dataset(args.against, allow_outside=args.allow_outside_paths) if args.against else None
    with _progress(args, len(dataset), "reading") as update:
        analysis = analyse(dataset, params=params, n_jobs=args.jobs, progress=update, max_pixels=args.max_pixels)
    report = audit_report(analysis)
    if other is not None:
        with _progress(args, len(other), "reading OTHER") as update:
            other_analysis = analyse(other, params=params, n_jobs=args.jobs, progress=update, max_pixels=args.max_pixels)
        report["cross_dataset_leaks"] = cross_dataset_leaks(analysis, other_analysis)
    if args.group_similar:
        import numpy as np

        sizes = np.bincount(analysis.similar_groups)
        report["similar_groups"] = {"n_groups": int(len(sizes)), "largest": int(sizes.max(initial=0))}
    print(format_audit(report))
    if args.group_similar:
        print(f"look-alike groups (--group-similar): {report['similar_groups']['n_groups']}, largest {report['similar_groups']['largest']}")
    if other is not None:
        print("\n".join(format_cross_dataset_leaks(report["cross_dataset_leaks"])))
    if folder is not None:
        with folder.recording():
            folder.start({"data": str(args.data)})
            path = write_json(folder / "audit.json", report)
        print(f"\nwrote {path}")
    if not len(analysis.dataset):
        logger.error("%s: no readable image; see the unreadable list above", args.data)
        return 1
    return 0


def cmd_benchmark(args) -> int:
    from brainmri.runs.benchmark import run_benchmark
    from brainmri.report.terminal import format_results
    from brainmri.runs.config import BenchmarkConfig, default_cache_dir, parse_params
    from brainmri.data.labels import parse_label_map
    from brainmri.models.catalog import default_cv, parse_methods

    methods = tuple(parse_methods(args.methods))
    config = BenchmarkConfig(
        data=str(args.data),
        methods=methods,
        split=args.split or "cv",
        cv=default_cv(methods) if args.cv is None else args.cv,
        grouping="similar" if args.group_similar else args.grouping,
        drop_test_duplicates=args.drop_test_duplicates,
        test_data=str(args.test_data) if args.test_data else None,
        label_map=parse_label_map(args.label_map),
        seed=args.seed,
        n_boot=args.n_boot,
        preprocess=_preprocess(args),
        duplicates=_duplicate_params(args),
        max_pixels=args.max_pixels,
        allow_outside_paths=args.allow_outside_paths,
        params=parse_params(args.params),
        adapt=args.adapt,
        extra_data=str(args.extra_data) if args.extra_data else None,
        extra_label_map=parse_label_map(args.extra_label_map, "--extra-label-map"),
        **_shift_settings(args),
    )
    cache = None if args.no_cache else (args.cache_dir or default_cache_dir())
    with _torch_threads(args.threads), _progress(args, None, "reading") as read, \
            _progress(args, None, "features") as features:
        results = run_benchmark(config, args.out, n_jobs=args.jobs, cache_dir=cache, restart=args.restart,
                                device=args.device, cluster=args.cluster, on_event=args.reporter.say, progress=read,
                                feature_progress=features)
    print(format_results(results))
    print(f"\nreport: {args.out / 'report.html'}")
    return 0


def cmd_train(args) -> int:
    from brainmri.runs.config import default_cache_dir
    from brainmri.data.labels import parse_label_map
    from brainmri.runs.config import TrainConfig
    from brainmri.runs.train import train_bundle

    config = TrainConfig(
        data=str(args.data),
        method=args.method,
        params=_method_params(args),
        seed=args.seed,
        device=args.device,
        preprocess=_preprocess(args),
        duplicates=_duplicate_params(args),
        max_pixels=args.max_pixels,
        allow_outside_paths=args.allow_outside_paths,
        validate=not args.no_validation,
        extra_data=str(args.extra_data) if args.extra_data else None,
        extra_label_map=parse_label_map(args.extra_label_map, "--extra-label-map"),
    )
    cache = None if args.no_cache else (args.cache_dir or default_cache_dir())
    with _torch_threads(args.threads), _progress(args, None, "reading") as read, \
            _progress(args, None, "features") as features:
        manifest = train_bundle(config, args.out, n_jobs=args.jobs, cache_dir=cache, on_event=args.reporter.say,
                                progress=read, feature_progress=features).manifest
    validation = manifest["validation"]
    if "metrics" in validation:
        shown = ", ".join(f"{k} {v:.3f}" for k, v in validation["metrics"].items()
                          if k in ("accuracy", "balanced_accuracy", "macro_f1", "ece", "val_loss", "val_accuracy"))
        print(f"internal validation ({validation['how']}): {shown}")
    else:
        print(f"internal validation skipped: {validation['skipped']}")
    print(f"bundle: {args.out} ({manifest['method']['name']}, classes {', '.join(manifest['classes'])}, "
          f"{manifest['training_data']['n_items']} training images)")
    return 0


def cmd_tune(args) -> int:
    from brainmri.data.preprocess import Preprocess
    from brainmri.runs.config import default_cache_dir
    from brainmri.models.catalog import get_method
    from brainmri.tuning.search import TuneConfig, format_tune, run_tune
    from brainmri.tuning.study import check_sampler, parse_samplers

    spec = get_method(args.method)
    if args.test_data and args.cv is not None:
        raise ConfigError("--test-data trains on all of DATA; do not combine it with --cv")
    config = TuneConfig(
        data=str(args.data),
        method=args.method,
        samplers=parse_samplers(args.compare) if args.compare else (check_sampler(args.sampler),),
        trials=args.trials,
        split=args.split or "cv",
        cv=spec.default_cv if args.cv is None else args.cv,
        test_data=str(args.test_data) if args.test_data else None,
        seed=args.seed,
        n_boot=args.n_boot,
        preprocess=Preprocess(crop=not args.no_crop, size=args.size),
        duplicates=_duplicate_params(args),
        max_pixels=args.max_pixels,
        allow_outside_paths=args.allow_outside_paths,
        pruner=args.pruner,
        storage=args.storage,
        study=args.study,
        space_file=str(args.space) if args.space else None,
        params=_method_params(args) or None,
    )
    cache = None if args.no_cache else (args.cache_dir or default_cache_dir())
    _quiet_optuna()
    with _torch_threads(args.threads), _progress(args, None, "reading") as read, \
            _progress(args, None, "features") as features:
        results = run_tune(config, args.out, n_jobs=args.jobs, cache_dir=cache, device=args.device,
                           on_event=args.reporter.say, progress=read, feature_progress=features)
    print(format_tune(results))
    print(f"\nbest configuration: {args.out / 'best_params.json'} (use it with --params)")
    print(f"report: {args.out / 'report.html'}")
    return 0


def _quiet_optuna() -> None:
    """Optuna's own lines per trial (finished, failed with a traceback) would repeat brainmri's; keep its errors."""
    if importlib.util.find_spec("optuna") is not None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)


def _method_params(args) -> dict:
    """The ``--params`` settings of ``--method`` (train, tune); settings of another method are refused."""
    from brainmri.runs.config import parse_params

    params = parse_params(args.params) or {}
    stray = sorted(set(params) - {args.method})
    if stray:
        raise ConfigError(f"--params names method {stray[0]!r}, but --method is {args.method}; "
                          f"give settings as {args.method}.key=value")
    return params.get(args.method, {})


def cmd_predict(args) -> int:
    from brainmri.files import write_json, write_text
    from brainmri.models.bundle import load_model
    from brainmri.models.predict import (folder_metrics, is_prediction_file, list_images, predict_images,
                                         predictions_csv, predictions_document)
    from brainmri.outputs import check_output_file

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if args.out is not None:
        if args.out.suffix.lower() not in (".csv", ".json"):
            raise ConfigError(f"--out {args.out}: name a .csv or .json file")
        if args.out.is_dir():
            raise ConfigError(f"--out {args.out}: is a folder; name a .csv or .json file")
        check_output_file(args.out, "--out", force=args.force, ours=is_prediction_file,
                          inputs=[args.model, *args.images])
    if args.explain is not None:
        from brainmri.explain.explainer import check_explain_folder

        check_explain_folder(args.explain, inputs=[args.model, *args.images], option="--explain")
    jobs = args.jobs if args.jobs > 0 else (os.cpu_count() or 1)
    bundle = load_model(args.model, n_jobs=jobs, device=args.device)
    if args.adapt != "none":
        if args.explain is not None:
            raise ConfigError(f"--adapt {args.adapt} and --explain: explanations are of the model as trained; "
                              "drop one of them")
        bundle = bundle.adapted(args.adapt, seed=args.seed)
    items = list_images(args.images)
    with _torch_threads(args.threads), _progress(args, len(items), "predicting") as update:
        if args.explain is None:
            result = predict_images(bundle, items, batch_size=args.batch_size, n_jobs=jobs, progress=update,
                                    max_pixels=args.max_pixels)
        else:
            result = _predict_and_explain(args, bundle, items, jobs, update)
    rows, skipped = result["rows"], result["skipped"]
    if not rows:
        logger.error("none of the %d image(s) could be read; nothing was predicted", len(items))
        return 1
    classes = [str(c) for c in bundle.classes_]
    metrics = folder_metrics(rows, classes)
    if args.out is None:
        sys.stdout.write(predictions_csv(rows, classes))
    elif args.out.suffix.lower() == ".csv":
        write_text(args.out, predictions_csv(rows, classes))
    else:
        write_json(args.out, predictions_document(bundle, result, metrics, adapt=args.adapt))
    noted = sum(bool(r["note"]) for r in rows)
    unlike = sum(bool(r["unlike_training"]) for r in rows)
    # The summary is a result (stdout), unless stdout carries the CSV.
    say = print if args.out else args.reporter.say
    say(f"predicted {len(rows)} image(s) with {bundle.manifest['method']['name']}"
                      + (f", skipped {len(skipped)} unreadable" if skipped else "")
                      + (f"; {noted} differ from the training images (see the note column)" if noted else "")
                      + (f"; {unlike} look unlike the training data (ood_score above its 99th percentile)" if unlike else "")
                      + (f"; wrote {args.out}" if args.out else ""))
    for source, entry in metrics.items():
        if "skipped" in entry:
            say(f"{source}: {entry['skipped']}")
        else:
            m = entry["metrics"]
            say(f"{source}: {entry['n']} labelled images, accuracy {m['accuracy']:.3f}, balanced accuracy "
                              f"{m['balanced_accuracy']:.3f}, macro F1 {m['macro_f1']:.3f}, AUC {m['auc']:.3f}, "
                              f"ECE {m['ece']:.3f}")
    return 0


def _predict_and_explain(args, bundle, items, jobs: int, update) -> dict:
    """``predict --explain``: predictions, plus a map and overlay per image in ``args.explain`` (no checks)."""
    from brainmri.explain.explainer import ExplainConfig, ModelView, explain_images

    method = args.explain_method or ModelView(bundle).methods()[0]
    config = ExplainConfig(method=method, checks=False, seed=0)
    document, result = explain_images(bundle, items, config, args.explain, batch_size=args.batch_size, n_jobs=jobs,
                                      max_pixels=args.max_pixels, progress=update)
    args.reporter.say(f"wrote {len(document['images'])} {method} overlay(s) to {args.explain / 'overlays'}")
    return result


def cmd_explain(args) -> int:
    from brainmri.explain.explainer import ExplainConfig, check_explain_folder, explain_images, format_checks
    from brainmri.models.bundle import load_model
    from brainmri.models.predict import list_images

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {args.batch_size}")
    config = ExplainConfig(method=args.method, masks=str(args.masks) if args.masks else None,
                           checks=not args.no_checks, check_items=args.check_items, tolerance=args.tolerance,
                           seed=args.seed)
    check_explain_folder(args.out, inputs=[args.model, *args.images, *([args.masks] if args.masks else [])])
    jobs = args.jobs if args.jobs > 0 else (os.cpu_count() or 1)
    bundle = load_model(args.model, n_jobs=jobs, device=args.device)
    items = list_images(args.images)
    with _torch_threads(args.threads), _progress(args, len(items), "explaining") as update:
        document, _ = explain_images(bundle, items, config, args.out, batch_size=args.batch_size, n_jobs=jobs,
                                     max_pixels=args.max_pixels, progress=update, on_event=args.reporter.say)
    if not document["images"]:
        logger.error("none of the %d image(s) could be read; nothing was explained", len(items))
        return 1
    print("\n".join(format_checks(document)))
    print(f"wrote {len(document['images'])} maps and overlays, and {args.out / 'explain.json'}")
    return 0


def cmd_serve(args) -> int:
    from brainmri.models.bundle import load_model
    from brainmri.outputs import OutputFolder
    from brainmri.serve.app import create_app, run_server
    from brainmri.serve.settings import ServeSettings

    settings = ServeSettings(host=args.host, port=args.port, token=args.token, max_upload_mb=args.max_upload_mb,
                             max_pixels=args.max_pixels, max_files=args.max_files, workers=args.workers,
                             queue_size=args.queue_size, max_pending_mb=args.max_pending_mb,
                             keep_uploads=str(args.keep_uploads) if args.keep_uploads else None)
    if args.keep_uploads:
        kept = OutputFolder(args.keep_uploads, "serve", option="--keep-uploads")
        kept.check(inputs=[args.model])
        kept.start({"model": str(args.model)})
    if not settings.local:
        logger.warning("--host %s: other machines can reach this server%s", settings.host,
                       "; its token travels unencrypted over plain HTTP, so use it behind an HTTPS proxy"
                       if settings.token else " and there is no authentication: anyone who reaches it can use the "
                       "model; set --token")
    with _torch_threads(args.threads):
        bundle = load_model(args.model, device=args.device)
        if args.onnx:
            from brainmri.models.onnx import load_onnx

            # ONNX Runtime predicts; heatmaps still come from the torch network of the bundle.
            app = create_app(load_onnx(args.model, args.onnx_file, threads=args.threads), settings, explain=bundle)
        else:
            app = create_app(bundle, settings)
        runtime = " with ONNX Runtime" if args.onnx else ""
        args.reporter.say(f"serving {args.model} ({bundle.manifest['method']['name']}{runtime}, classes "
                          f"{', '.join(bundle.manifest['classes'])}); a research tool, not a diagnostic device")
        run_server(app, settings, quiet=args.quiet)
    return 0


def cmd_export(args) -> int:
    from brainmri.models.onnx import default_path, description_path, export_onnx

    out = args.out or default_path(args.model)
    description = export_onnx(args.model, out, **({} if args.tolerance is None else {"tolerance": args.tolerance}))
    check, shape = description["check"], description["input"]["shape"]
    print(f"wrote {out} ({description['bundle']['method']}): input {' x '.join(map(str, shape))} float32, output "
          f"probabilities of {len(description['classes'])} classes; description in {description_path(out)}")
    print(f"checked on {check['images']}: max |ONNX Runtime - PyTorch float32| = {check['max_abs_diff']:.2g} "
          f"(tolerance {check['tolerance']:g})")
    if "bundle_precision" in check:
        print(f"against the bundle's own {check['bundle_precision']} prediction: max difference "
              f"{check['max_abs_diff_bundle_precision']:.2g}, same class for "
              f"{100 * check['same_class_bundle_precision']:.0f}% of the images")
    return 0


def cmd_regions(args) -> int:
    from brainmri.regions.search import RegionSearchConfig, format_summary, run_region_search

    config = RegionSearchConfig(atlas=str(args.atlas) if args.atlas else None,
                                model=str(args.model) if args.model else None, attribution=args.attribution,
                                n_regions=args.regions,
                                population=args.population, generations=args.generations, mutation=args.mutation,
                                penalty=args.penalty, seed=args.seed)
    with _progress(args, None, "reading") as update:
        results = run_region_search(args.data, config, args.out, device=args.device, progress=update,
                                    on_event=args.reporter.say)
    print("\n".join(format_summary(results)))
    print(f"wrote {args.out / 'regions.json'}, {args.out / 'mask.nii.gz'} and {args.out / 'report.html'}")
    return 0


@contextmanager
def _torch_threads(threads: int | None):
    """torch uses ``threads`` CPU threads within the block (torch is not imported when None)."""
    if threads is None:
        yield
        return
    from brainmri.training.device import check_threads, torch_threads

    check_threads(threads)
    with torch_threads(threads):
        yield


def cmd_demo_data(args) -> int:
    from brainmri.data.synthetic import CLASSES, MASKS_FOLDER, write_demo_data

    if getattr(args, "volumes", False):
        return _demo_volumes(args)
    args.n = 40 if args.n is None else args.n
    args.size = 128 if args.size is None else args.size
    with _progress(args, args.n * len(CLASSES), "writing") as update:
        out = write_demo_data(args.out, n=args.n, seed=args.seed, size=args.size, masks=True, progress=update)
    print(f"wrote {args.n * len(CLASSES)} synthetic images ({', '.join(CLASSES)}) to {out}, and the lesion masks of "
          f"the {args.n * (len(CLASSES) - 1)} tumour images to {out / MASKS_FOLDER} (for brainmri explain --masks)")
    return 0


def _demo_volumes(args) -> int:
    """``demo-data --3d``."""
    import json

    from brainmri.data.synthetic import MASKS_FOLDER
    from brainmri.data.synthetic3d import CLASSES_3D, PLANTED_FILE, REGIONS_FOLDER, write_demo_volumes

    n = 20 if args.n is None else args.n
    with _progress(args, n * len(CLASSES_3D), "writing") as update:
        out = write_demo_volumes(args.out, n=n, size=32 if args.size is None else args.size, n_regions=args.regions,
                                 planted=args.planted, seed=args.seed, progress=update)
    planted = json.loads((out / REGIONS_FOLDER / PLANTED_FILE).read_text(encoding="utf-8"))["planted_regions"]
    print(f"wrote {n * len(CLASSES_3D)} synthetic volumes ({', '.join(CLASSES_3D)}) to {out}; atrophy planted in "
          f"regions {', '.join(map(str, planted))} of {out / REGIONS_FOLDER} (label volume and list), their masks "
          f"per atrophy subject in {out / MASKS_FOLDER} (for brainmri explain --masks)")
    return 0


def cmd_demo(args) -> int:
    data = args.out / "data"
    if not data.exists():
        cmd_demo_data(argparse.Namespace(**{**vars(args), "out": data, "size": 128}))
    else:
        print(f"using existing demo data in {data}")
    common = {**vars(args), "data": data, "group_similar": False, **_input_defaults(), **_duplicate_defaults()}
    status = cmd_audit(argparse.Namespace(**{**common, "out": args.out / "audit", "against": None}))
    if status:
        return status
    print()
    methods, params = "glcm-svm,multifeature-rf,ovo-svm,rf", None
    if importlib.util.find_spec("torch") is not None:
        methods += ",ayadi-cnn"
        params = ",".join(f"ayadi-cnn.{k}={v}" for k, v in DEMO_DEEP_PARAMS.items())
    else:
        args.reporter.say("PyTorch is not installed: the demo skips the deep method (pip install 'brainmri[deep]')")
    return cmd_benchmark(argparse.Namespace(**{
        **common, "out": args.out / "benchmark", "methods": methods, "cv": 5,
        "split": None, "grouping": "auto", "drop_test_duplicates": False, "test_data": None, "label_map": None, "n_boot": 1000,
        "size": 128, "no_crop": False, "harmonise": "none", "n4": False, "keep_aspect": False,
        "cache_dir": args.out / "cache", "no_cache": False, "restart": False,
        "params": params, "device": "auto", "threads": None, "shift": None, "shift_severities": None,
        "shift_max_items": None, "adapt": "none", "extra_data": None, "extra_label_map": None, "cluster": None,
    }))


#: Settings of the demo's deep method: a small ayadi-cnn that trains in seconds per fold on a CPU. One torch
#: thread: on a busy 2-core machine (load 6) two threads ran this network 5-10x slower than one (threads that
#: spin-wait for each other), while on an idle one they gain little on so small a network.
DEMO_DEEP_PARAMS = {"size": 64, "width": 8, "epochs": 10, "batch_size": 16, "threads": 1}


def _input_defaults() -> dict:
    from brainmri.data.io import MAX_PIXELS

    return {"max_pixels": MAX_PIXELS, "allow_outside_paths": False}


def _duplicate_defaults() -> dict:
    from brainmri.data.duplicates import DuplicateParams

    return DuplicateParams().to_dict()


class _ReporterHandler(logging.Handler):
    """Log records as lines of a :class:`Reporter`, so that they do not break its progress bars."""

    def __init__(self, reporter: Reporter):
        super().__init__()
        self.reporter = reporter

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.reporter.write(self.format(record))
        except Exception:  # logging must never raise; the standard handlers do the same
            self.handleError(record)


def _configure_logging(args) -> None:
    """Log brainmri's messages to stderr through ``args.reporter`` (the root logger is left to the host program)."""
    level = logging.ERROR if args.quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)]
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    handler = _ReporterHandler(args.reporter)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that it stops the command like Ctrl-C."""


def _raise_terminated(signum, frame):
    raise _Terminated


@contextmanager
def _sigterm_as_interrupt():
    """Within the block, SIGTERM raises :class:`_Terminated` (a ``KeyboardInterrupt``) in the main thread.

    Work then stops as on Ctrl-C: joblib aborts its workers, atomic writes
    remove their temporary files, and finished units stay for a resume.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _exit_with_parent() -> None:
    """Worker initializer: end this worker within a second of its parent's death.

    A loky worker whose parent was killed (SIGKILL, or a crash) otherwise
    waits for its idle timeout (300 s) before it exits, holding its memory.
    """
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, name="brainmri-exit-with-parent", daemon=True).start()


def _workers_exit_with_parent() -> None:
    """Make joblib's default process backend (loky) start workers that exit with this process.

    Registered as the default backend rather than set with
    ``joblib.parallel_config(backend=...)``, which would override the thread
    preference of scikit-learn's forests.
    """
    from functools import partial

    from joblib import register_parallel_backend
    from joblib.parallel import LokyBackend

    register_parallel_backend("brainmri-loky", partial(LokyBackend, initializer=_exit_with_parent), make_default=True)


def _os_error(exc: OSError, resume_hint: str | None) -> str:
    """One line for an operating-system error that stopped a command: what, where, and what to do."""
    import errno

    where = f"{exc.filename}: " if exc.filename else ""
    what = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free some space, or choose an output folder on another disk"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "check the permissions of that path, or choose another output folder"
    else:
        fix = "check that path and the disk it is on"
    rerun = f"; then {resume_hint}" if resume_hint else "; then run the command again"
    return f"{where}{what} (files written completely so far are kept, no half-written file is left); {fix}{rerun}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.reporter = Reporter(sys.stderr, quiet=args.quiet)
    _configure_logging(args)
    _workers_exit_with_parent()
    try:
        with _sigterm_as_interrupt():
            return args.func(args)
    except BrainMRIError as exc:
        if args.debug:
            raise
        print(f"brainmri {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the system refused a read or write midway (disk full, quota, a device gone)
        if args.debug:
            raise
        print(f"brainmri {args.command}: error: {_os_error(exc, getattr(args, 'resume_hint', None))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as exc:
        how = "terminated (SIGTERM)" if isinstance(exc, _Terminated) else "interrupted"
        hint = getattr(args, "resume_hint", None)
        print(f"brainmri {args.command}: {how}" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 143 if isinstance(exc, _Terminated) else 130


if __name__ == "__main__":
    raise SystemExit(main())
