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
import logging
import sys

from brainmri.cli import benchmark, data, explain, model, serve, tune
from brainmri.cli.process import (
    Terminated,
    os_error_line,
    sigterm_as_interrupt,
    workers_exit_with_parent,
)
from brainmri.cli.progress import Reporter, configure_logging
from brainmri.errors import BrainMRIError
from brainmri.version import __version__

logger = logging.getLogger("brainmri")


def build_parser() -> argparse.ArgumentParser:
    """The parser of ``brainmri``: one sub-command each, added by the module of its group."""
    parser = argparse.ArgumentParser(
        prog="brainmri",
        description="Classify brain MRI with every family of method the field uses, and compare them honestly.",
    )
    parser.add_argument("--version", action="version", version=f"brainmri {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data.add_audit(sub)
    benchmark.add_benchmark(sub)
    model.add_train(sub)
    tune.add_tune(sub)
    model.add_predict(sub)
    explain.add_explain(sub)
    serve.add_serve(sub)
    model.add_export(sub)
    explain.add_regions(sub)
    data.add_demo_data(sub)
    data.add_demo(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    args.whole_process = argv is None  # the process's own command line: its timing may start with the process
    args.reporter = Reporter(sys.stderr, quiet=args.quiet)
    configure_logging(args)
    workers_exit_with_parent()
    try:
        with sigterm_as_interrupt():
            return args.func(args)
    except BrainMRIError as exc:
        if args.debug:
            raise
        print(f"brainmri {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the system refused a read or write midway (disk full, quota, a device gone)
        if args.debug:
            raise
        print(
            f"brainmri {args.command}: error: {os_error_line(exc, getattr(args, 'resume_hint', None))}", file=sys.stderr
        )
        return 1
    except KeyboardInterrupt as exc:
        how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        hint = getattr(args, "resume_hint", None)
        print(f"brainmri {args.command}: {how}" + (f"; {hint}" if hint else ""), file=sys.stderr)
        return 143 if isinstance(exc, Terminated) else 130


if __name__ == "__main__":
    raise SystemExit(main())
