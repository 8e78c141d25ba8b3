"""``brainmri train``, ``brainmri predict`` and ``brainmri export``: bundles made, used and exported.

Imports what a command runs only when it runs (see :mod:`brainmri.cli.data`).
"""

from __future__ import annotations

import logging
import os
import sys
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
    add_runtime_options,
    add_size_options,
    add_training_options,
    data_settings_from,
    method_params_from,
    preprocess_from,
    record_in_mlflow,
    torch_threads_for,
)
from brainmri.cli.progress import progress
from brainmri.errors import ConfigError

logger = logging.getLogger("brainmri")


def add_train(sub) -> None:
    """``brainmri train`` on the sub-parsers ``sub``."""
    p = sub.add_parser(
        "train",
        help="train one method on all of DATA -> a model bundle folder",
        description="Audit DATA, train the method on all of it (its inner validation grouped by "
        "subject or near-duplicate cluster), measure the internal validation and write a bundle "
        "folder to --out: weights (skops or safetensors) and manifest.json.",
        formatter_class=MethodsHelpFormatter,
    )
    p.add_argument("data", type=Path, metavar="DATA", help="dataset folder or CSV manifest")
    p.add_argument("--method", required=True, help="the method to train")
    p.add_argument(
        "--out",
        type=Path,
        required=True,
        help="bundle folder: new, empty or an earlier bundle (replaced); outside DATA",
    )
    add_size_options(p)
    add_harmonise_options(p)
    add_cache_options(p)
    p.add_argument(
        "--no-validation",
        action="store_true",
        help="skip the internal validation (a method without its own validation part is refitted on "
        "each grouped inner fold to measure it)",
    )
    add_extra_options(p, "DATA")
    add_training_options(p)
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="train a deep method's network in N data-parallel processes (PyTorch DDP: gloo on the CPU, "
        "NCCL with one GPU each on CUDA); the same seed gives the same weights for the same N (default 1)",
    )
    add_input_options(p)
    add_duplicate_options(p)
    add_mlflow_option(p)
    add_general_options(p, seed=True, jobs=True)
    p.set_defaults(func=cmd_train)


def add_predict(sub) -> None:
    """``brainmri predict`` on the sub-parsers ``sub``."""
    p = sub.add_parser(
        "predict",
        help="class probabilities of images from a model bundle",
        description="Predict every image of IMAGES_OR_FOLDERS with the bundle MODEL: probabilities "
        "per class and the predicted class, as CSV (stdout or --out x.csv) or JSON (--out x.json). "
        "Unreadable images are reported and skipped; a folder of class sub-folders also gets metrics.",
    )
    p.add_argument("model", type=Path, metavar="MODEL", help="bundle folder written by brainmri train")
    p.add_argument(
        "images",
        type=Path,
        nargs="+",
        metavar="IMAGES_OR_FOLDERS",
        help="image files, folders of images, or folders of class sub-folders",
    )
    p.add_argument(
        "--out",
        type=Path,
        help="write the predictions to a .csv or .json file (default: CSV on stdout); "
        "an existing file is replaced only when it is an earlier brainmri prediction file",
    )
    p.add_argument("--force", action="store_true", help="replace an existing --out file that brainmri did not write")
    p.add_argument("--batch-size", type=int, default=64, help="images read and predicted at a time (default 64)")
    p.add_argument(
        "--explain",
        type=Path,
        metavar="DIR",
        help="also write an attribution map (.npy) and overlay (PNG) of every image to DIR",
    )
    p.add_argument(
        "--explain-method",
        metavar="NAME",
        help="attribution method of --explain (default: gradcam for a CNN, occlusion for other models)",
    )
    add_adapt_option(p, "each batch of --batch-size images")
    add_runtime_options(p)
    p.add_argument(
        "--onnx-file",
        type=Path,
        metavar="FILE",
        help="predict with this export of MODEL (e.g. the int8 graph of export --onnx --int8) in ONNX Runtime, or "
        "in OpenVINO with --runtime openvino; refused when it was exported from another bundle",
    )
    add_training_options(p, params=False)
    add_input_options(p, manifests=False)
    add_general_options(p, seed=True, jobs=True)
    p.set_defaults(func=cmd_predict)


def add_export(sub) -> None:
    """``brainmri export`` on the sub-parsers ``sub``."""
    p = sub.add_parser(
        "export",
        help="the network of a deep bundle as an ONNX file, checked against PyTorch",
        description="Write the network of the bundle MODEL (its preprocessed input to calibrated "
        "probabilities) as an ONNX file, for ONNX Runtime and other runtimes. It is checked with "
        "onnx.checker and against PyTorch on synthetic slices with ONNX Runtime before it is written; "
        "FILE.json beside it describes its input, output and the check.",
    )
    p.add_argument("model", type=Path, metavar="MODEL", help="bundle folder written by brainmri train")
    p.add_argument("--onnx", action="store_true", required=True, help="export to ONNX (the only format)")
    p.add_argument(
        "--out",
        type=Path,
        metavar="FILE",
        help="the .onnx file (default MODEL/model.onnx); an existing file is replaced only when brainmri exported it",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        help="largest absolute difference of probabilities allowed between ONNX Runtime and PyTorch "
        "(float32) on the check images (default 1e-4)",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="quantise the graph to int8 (static, calibrated on --calibration images; default file "
        "MODEL/model.int8.onnx), kept only when it calls float32's class on >= 99.5%% of other images of that "
        "folder and loses <= 0.2 accuracy points there",
    )
    p.add_argument(
        "--calibration",
        type=Path,
        metavar="DATA",
        help="with --int8: labelled images like the training ones (default: the bundle's training data)",
    )
    add_general_options(p, seed=True)
    p.set_defaults(func=cmd_export)


def cmd_train(args) -> int:
    from brainmri.api import train
    from brainmri.data.labels import parse_label_map
    from brainmri.runs.config import default_cache_dir
    from brainmri.timing import timing_line

    settings = data_settings_from(args, preprocess_from(args))
    cache = None if args.no_cache else (args.cache_dir or default_cache_dir())
    with (
        torch_threads_for(args.threads),
        progress(args, None, "reading") as read,
        progress(args, None, "features") as features,
    ):
        bundle = train(
            settings.pop("data"),
            args.method,
            out=args.out,
            preprocess=settings.pop("preprocess"),
            n_jobs=args.jobs,
            cache_dir=cache,
            on_event=args.reporter.say,
            progress=read,
            feature_progress=features,
            params=method_params_from(args),
            device=args.device,
            processes=args.nproc,
            validate=not args.no_validation,
            extra_data=str(args.extra_data) if args.extra_data else None,
            extra_label_map=parse_label_map(args.extra_label_map, "--extra-label-map"),
            **settings,
        )
    manifest = bundle.manifest
    validation = manifest["validation"]
    if "metrics" in validation:
        shown = ", ".join(
            f"{k} {v:.3f}"
            for k, v in validation["metrics"].items()
            if k in ("accuracy", "balanced_accuracy", "macro_f1", "ece", "val_loss", "val_accuracy")
        )
        print(f"internal validation ({validation['how']}): {shown}")
    else:
        print(f"internal validation skipped: {validation['skipped']}")
    print(
        f"bundle: {args.out} ({manifest['method']['name']}, classes {', '.join(manifest['classes'])}, "
        f"{manifest['training_data']['n_items']} training images)"
    )
    validated = {k: v for k, v in validation.get("metrics", {}).items() if isinstance(v, (int, float))}
    record_in_mlflow(
        args,
        command="train",
        name=f"train {args.method} on {Path(args.data).name}",
        config={**manifest["config"], "fitted": manifest["method"]["fitted"]},
        metrics={**{f"validation.{k}": float(v) for k, v in validated.items()}, "fit_s": bundle.timing_s["training"]},
        artifacts=[args.out / "manifest.json"],
        bundle=args.out,
    )
    print(timing_line(bundle.timing_s, manifest["training_data"]["n_items"]))
    return 0


def cmd_predict(args) -> int:
    from brainmri.timing import Stopwatch, timing_line

    # Run as the process's command, the last line counts the whole command, interpreter included.
    watch = Stopwatch(since_process_start=getattr(args, "whole_process", False))
    with watch("loading"):
        from brainmri.files import write_json, write_text
        from brainmri.models.predict import (
            folder_metrics,
            list_images,
            predict_images,
            predictions_csv,
            predictions_document,
        )
        from brainmri.robust.adapt import adaptation_check

        _check_predict_outputs(args)
        jobs = args.jobs if args.jobs > 0 else (os.cpu_count() or 1)
        bundle, runtime = _load_for_predict(args, jobs)
    as_trained = bundle
    if args.adapt != "none":
        if args.explain is not None:
            raise ConfigError(
                f"--adapt {args.adapt} and --explain: explanations are of the model as trained; drop one of them"
            )
        bundle = bundle.adapted(args.adapt, seed=args.seed)
    items = list_images(args.images)
    with torch_threads_for(args.threads), progress(args, len(items), "predicting") as update:
        if args.explain is None:
            result = predict_images(
                bundle,
                items,
                batch_size=args.batch_size,
                n_jobs=jobs,
                progress=update,
                max_pixels=args.max_pixels,
                as_trained=as_trained if args.adapt != "none" else None,
                watch=watch,
            )
        else:
            with watch("explaining"):
                result = _predict_and_explain(args, bundle, items, jobs, update)
    rows = result["rows"]
    if not rows:
        logger.error("none of the %d image(s) could be read; nothing was predicted", len(items))
        return 1
    classes = [str(c) for c in bundle.classes_]
    metrics = folder_metrics(rows, classes)
    if args.adapt != "none":
        result["adaptation"] = adaptation_check(
            [r["predicted_as_trained"] for r in rows],
            [r["predicted"] for r in rows],
            [r["unlike_training"] for r in rows],
            method=args.adapt,
            batch_size=args.batch_size,
        )
    with watch("writing"):
        if args.out is None:
            sys.stdout.write(predictions_csv(rows, classes))
        elif args.out.suffix.lower() == ".csv":
            write_text(args.out, predictions_csv(rows, classes))
        else:
            # The JSON records the time up to its writing; the terminal's last line includes the writing.
            result["timing_s"], result["runtime"] = watch.report(), runtime
            write_json(args.out, predictions_document(bundle, result, metrics, adapt=args.adapt))
    _say_predictions(args, bundle, result, metrics, runtime)
    (print if args.out else args.reporter.say)(timing_line(watch.report(), len(rows) + len(result["skipped"])))
    return 0


def _check_predict_outputs(args) -> None:
    """Refuse, before any image is read, a bad ``--batch-size``, ``--out`` or ``--explain``."""
    from brainmri.models.predict import is_prediction_file
    from brainmri.outputs import check_output_file

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {args.batch_size}")
    if args.out is not None:
        if args.out.suffix.lower() not in (".csv", ".json"):
            raise ConfigError(f"--out {args.out}: name a .csv or .json file")
        if args.out.is_dir():
            raise ConfigError(f"--out {args.out}: is a folder; name a .csv or .json file")
        check_output_file(
            args.out, "--out", force=args.force, ours=is_prediction_file, inputs=[args.model, *args.images]
        )
    if args.explain is not None:
        from brainmri.explain.explainer import check_explain_folder

        check_explain_folder(args.explain, inputs=[args.model, *args.images], option="--explain")


def _load_for_predict(args, jobs: int):
    """The bundle of ``predict`` with the runtime ``--runtime`` asks for (:mod:`brainmri.models.runtimes`)."""
    from brainmri.models.runtimes import load_for_prediction
    from brainmri.runs.config import default_cache_dir

    torch_only = (
        f"--adapt {args.adapt} adapts the PyTorch network"
        if args.adapt != "none"
        else ("--explain reads the PyTorch network's gradients" if args.explain is not None else None)
    )
    if args.onnx_file is not None:
        return _load_export(args, jobs, torch_only)
    return load_for_prediction(
        args.model,
        runtime=args.runtime,
        cache_dir=args.cache_dir or default_cache_dir(),
        device=args.device,
        n_jobs=jobs,
        threads=args.threads,
        torch_only=torch_only,
    )


def _load_export(args, jobs: int, torch_only: str | None):
    """The bundle predicting with the export ``--onnx-file`` (its int8 graph, say), and its runtime in words."""
    from brainmri.models.bundle import load_model
    from brainmri.models.onnx_runtime import ENGINES, load_onnx
    from brainmri.models.runtimes import EXPORT_RUNTIMES

    if args.runtime == "torch" or torch_only:
        why = torch_only or "--runtime torch predicts with the bundle's own network"
        raise ConfigError(f"--onnx-file {args.onnx_file}: {why}; leave --onnx-file out")
    engine = EXPORT_RUNTIMES.get(args.runtime, "onnxruntime")  # auto: ONNX Runtime, which runs every export
    loaded = load_model(args.model, n_jobs=jobs, device="cpu")
    exported = load_onnx(args.model, args.onnx_file, n_jobs=jobs, threads=args.threads, loaded=loaded, engine=engine)
    return exported, f"{ENGINES[engine]} ({args.onnx_file.name})"


def _say_predictions(args, bundle, result: dict, metrics: dict, runtime: str = "PyTorch") -> None:
    """The summary of ``predict``: counts, what ``--adapt`` changed, and the metrics of labelled folders.

    It is a result (stdout), unless stdout carries the CSV.
    """
    from brainmri.robust.ood import FLAG_QUANTILE  # loaded already: predict scored the images with it

    rows, skipped = result["rows"], result["skipped"]
    noted = sum(bool(r["note"]) for r in rows)
    unlike = sum(bool(r["unlike_training"]) for r in rows)
    say = print if args.out else args.reporter.say
    say(
        f"predicted {len(rows)} image(s) with {bundle.manifest['method']['name']} ({runtime})"
        + (f", skipped {len(skipped)} unreadable" if skipped else "")
        + (f"; {noted} differ from the training images (see the note column)" if noted else "")
        + (
            f"; {unlike} look unlike the training data (ood_score above {FLAG_QUANTILE:g}, the training "
            "images' percentile)"
            if unlike
            else ""
        )
        + (f"; wrote {args.out}" if args.out else "")
    )
    if "adaptation" in result:
        _say_adaptation(say, result["adaptation"], rows)
    for source, entry in metrics.items():
        if "skipped" in entry:
            say(f"{source}: {entry['skipped']}")
        else:
            m = entry["metrics"]
            say(
                f"{source}: {entry['n']} labelled images, accuracy {m['accuracy']:.3f}, balanced accuracy "
                f"{m['balanced_accuracy']:.3f}, macro F1 {m['macro_f1']:.3f}, AUC {m['auc']:.3f}, "
                f"ECE {m['ece']:.3f}"
            )


def _say_adaptation(say, check: dict, rows: list[dict]) -> None:
    """What ``--adapt`` changed (both calls are in the output), the accuracy of both on labelled images, the risks."""
    say(
        f"{check['method']} changed {100 * check['calls_changed']:.1f}% of the calls; the calls as trained are in "
        "predicted_as_trained"
    )
    labelled = [r for r in rows if r["label"]]
    if labelled:
        right = {
            k: sum(r[k] == r["label"] for r in labelled) / len(labelled) for k in ("predicted_as_trained", "predicted")
        }
        say(
            f"on the {len(labelled)} labelled images: accuracy as trained {right['predicted_as_trained']:.3f}, "
            f"adapted {right['predicted']:.3f}"
        )
    for risk in check["risks"]:
        say(f"risk: {risk}")


def _predict_and_explain(args, bundle, items, jobs: int, update) -> dict:
    """``predict --explain``: predictions, plus a map and overlay per image in ``args.explain`` (no checks)."""
    from brainmri.explain.explainer import ExplainConfig, explain_images
    from brainmri.explain.view import ModelView

    method = args.explain_method or ModelView(bundle).methods()[0]
    config = ExplainConfig(method=method, checks=False, seed=0)
    document, result = explain_images(
        bundle,
        items,
        config,
        args.explain,
        batch_size=args.batch_size,
        n_jobs=jobs,
        max_pixels=args.max_pixels,
        progress=update,
    )
    args.reporter.say(f"wrote {len(document['images'])} {method} overlay(s) to {args.explain / 'overlays'}")
    return result


def cmd_export(args) -> int:
    from brainmri.models.onnx import export_onnx
    from brainmri.models.onnx_graph import default_path, description_path

    if args.int8:
        return _export_int8(args)
    if args.calibration is not None:
        raise ConfigError("--calibration only applies with --int8; add --int8 or remove it")

    out = args.out or default_path(args.model)
    description = export_onnx(args.model, out, **({} if args.tolerance is None else {"tolerance": args.tolerance}))
    check, shape = description["check"], description["input"]["shape"]
    print(
        f"wrote {out} ({description['bundle']['method']}): input {' x '.join(map(str, shape))} float32, output "
        f"probabilities of {len(description['classes'])} classes; description in {description_path(out)}"
    )
    print(
        f"checked on {check['images']}: max |ONNX Runtime - PyTorch float32| = {check['max_abs_diff']:.2g} "
        f"(tolerance {check['tolerance']:g})"
    )
    if "bundle_precision" in check:
        print(
            f"against the bundle's own {check['bundle_precision']} prediction: max difference "
            f"{check['max_abs_diff_bundle_precision']:.2g}, same class for "
            f"{100 * check['same_class_bundle_precision']:.0f}% of the images"
        )
    return 0


def _export_int8(args) -> int:
    """``export --onnx --int8``: the quantised graph, or the figures that refused it."""
    from brainmri.models.quantise import default_int8_path, quantise_onnx

    out = args.out or default_int8_path(args.model)
    q = quantise_onnx(args.model, args.calibration, out, seed=args.seed)["quantisation"]
    print(
        f"wrote {out} (int8): calls the float32 graph's class on {q['agreement']:.2%} of {q['n_check']} check images "
        f"of {q['calibration']}, accuracy {q['accuracy_int8']:.4f} against {q['accuracy_fp32']:.4f}; "
        f"{q['ms_per_image_int8']:.2f} against {q['ms_per_image_fp32']:.2f} ms per image in ONNX Runtime"
    )
    return 0
