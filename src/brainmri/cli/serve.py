"""``brainmri serve``: a web page and HTTP API of one bundle (:mod:`brainmri.serve`).

Imports what the command runs only when it runs (see :mod:`brainmri.cli.data`).
"""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from brainmri.cli.options import (
    add_general_options,
    add_runtime_options,
    add_training_options,
    torch_threads_for,
)

logger = logging.getLogger("brainmri")


def add_serve(sub) -> None:
    """``brainmri serve`` on the sub-parsers ``sub``."""
    p = sub.add_parser(
        "serve",
        help="a web page and HTTP API that predict and explain with a model bundle",
        description="Serve the bundle MODEL: a page at / (drop an MRI slice, see the predicted class, "
        "the probabilities and a heatmap) and an HTTP API (POST /predict, GET /model, GET /health; "
        "spec at /openapi.json). A research tool, not a diagnostic device. Listens on localhost "
        "unless --host says otherwise; Ctrl-C stops it.",
    )
    p.add_argument("model", type=Path, metavar="MODEL", help="bundle folder written by brainmri train")
    p.add_argument(
        "--onnx",
        action="store_true",
        help="predict with ONNX Runtime through the bundle's export (brainmri export MODEL --onnx); one "
        "slice was answered 2-3x faster than by PyTorch, see docs/benchmarks.md; heatmaps still use PyTorch",
    )
    p.add_argument("--onnx-file", type=Path, metavar="FILE", help="the exported file, when not MODEL/model.onnx")
    add_runtime_options(p, "without --onnx (heatmaps always use PyTorch): ")
    _serve_options(p)
    add_training_options(
        p,
        params=False,
        threads=1,
        threads_why="each worker predicts on one core; on a busy 2-core machine two threads made one "
        "ayadi-cnn prediction 8-20x slower, see docs/benchmarks.md",
    )
    add_general_options(p)
    p.set_defaults(func=cmd_serve)


def _serve_options(parser: argparse.ArgumentParser) -> None:
    from brainmri.serve.settings import ServeSettings

    d = ServeSettings()
    group = parser.add_argument_group("server")
    group.add_argument(
        "--host",
        default=d.host,
        help=f"address to listen on (default {d.host}: this machine only); another address lets "
        "others in, with no authentication unless --token is set",
    )
    group.add_argument("--port", type=int, default=d.port, help=f"port (default {d.port}; 0: any free port)")
    group.add_argument(
        "--token",
        default=os.environ.get("BRAINMRI_SERVE_TOKEN"),
        help="every API call must send 'Authorization: Bearer TOKEN' (default $BRAINMRI_SERVE_TOKEN, "
        "which keeps it out of the process list; none: no authentication)",
    )
    group.add_argument(
        "--max-upload-mb",
        type=float,
        default=d.max_upload_mb,
        metavar="MB",
        help=f"largest request body, all images together (default {d.max_upload_mb:g} MiB)",
    )
    group.add_argument(
        "--max-pending-mb",
        type=float,
        default=d.max_pending_mb,
        metavar="MB",
        help="request bodies held in memory at once, all clients together; more are answered 503 "
        "before they are read (default: 100 MiB or twice --max-upload-mb, the larger)",
    )
    group.add_argument(
        "--max-pixels",
        type=int,
        default=d.max_pixels,
        metavar="N",
        help=f"largest pixel count of one image, checked before decoding (default {d.max_pixels:,})",
    )
    group.add_argument(
        "--max-files", type=int, default=d.max_files, help=f"most images per request (default {d.max_files})"
    )
    group.add_argument(
        "--workers",
        type=int,
        default=d.workers,
        help=f"threads that read, predict and explain, side by side (default {d.workers})",
    )
    group.add_argument(
        "--queue-size",
        type=int,
        default=d.queue_size,
        help=f"requests that may wait for a worker; more are answered 503 (default {d.queue_size})",
    )
    group.add_argument(
        "--keep-uploads",
        type=Path,
        metavar="DIR",
        help="keep every predicted upload and its result in DIR (default: nothing is kept)",
    )


def cmd_serve(args) -> int:
    from brainmri.outputs import OutputFolder
    from brainmri.serve.app import create_app, run_server
    from brainmri.serve.settings import ServeSettings

    settings = ServeSettings(
        host=args.host,
        port=args.port,
        token=args.token,
        max_upload_mb=args.max_upload_mb,
        max_pixels=args.max_pixels,
        max_files=args.max_files,
        workers=args.workers,
        queue_size=args.queue_size,
        max_pending_mb=args.max_pending_mb,
        keep_uploads=str(args.keep_uploads) if args.keep_uploads else None,
    )
    if args.keep_uploads:
        kept = OutputFolder(args.keep_uploads, "serve", option="--keep-uploads")
        kept.check(inputs=[args.model])
        kept.start({"model": str(args.model)})
    if not settings.local:
        logger.warning(
            "--host %s: other machines can reach this server%s",
            settings.host,
            "; its token travels unencrypted over plain HTTP, so use it behind an HTTPS proxy"
            if settings.token
            else " and there is no authentication: anyone who reaches it can use the model; set --token",
        )
    with torch_threads_for(args.threads):
        served, runtime = _served_model(args)
        bundle = getattr(served, "pytorch", served)
        # ONNX Runtime predicts; heatmaps still come from the torch network of the bundle.
        app = create_app(served, settings, explain=None if served is bundle else bundle)
        args.reporter.say(
            f"serving {args.model} ({bundle.manifest['method']['name']} with {runtime}, classes "
            f"{', '.join(bundle.manifest['classes'])}); a research tool, not a diagnostic device"
        )
        run_server(app, settings, quiet=args.quiet)
    return 0


def _served_model(args):
    """The bundle that answers, and its runtime in words: the export of ``--onnx``, else ``--runtime``'s choice."""
    from brainmri.models.runtimes import load_for_prediction
    from brainmri.runs.config import default_cache_dir

    if args.onnx:
        from brainmri.models.bundle import load_model
        from brainmri.models.onnx_runtime import load_onnx

        loaded = load_model(args.model, device=args.device)
        return load_onnx(args.model, args.onnx_file, threads=args.threads, loaded=loaded), "ONNX Runtime"
    return load_for_prediction(
        args.model,
        runtime=args.runtime,
        cache_dir=args.cache_dir or default_cache_dir(),
        device=args.device,
        threads=args.threads,
    )
