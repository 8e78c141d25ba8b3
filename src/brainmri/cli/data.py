"""``brainmri audit``, ``brainmri demo-data`` and ``brainmri demo``.

Like every command module, it imports what a command runs only when the
command runs (inside ``cmd_*``), so that ``brainmri --help`` and the parsing
of every command start in a fraction of a second instead of loading
scikit-learn and the methods first.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
from pathlib import Path

from brainmri.cli.benchmark import cmd_benchmark
from brainmri.cli.options import (
    add_duplicate_options,
    add_general_options,
    add_input_options,
    duplicate_defaults,
    duplicate_params_from,
    input_defaults,
)
from brainmri.cli.progress import progress

logger = logging.getLogger("brainmri")


def add_audit(sub) -> None:
    """``brainmri audit`` on the sub-parsers ``sub``."""
    p = sub.add_parser(
        "audit",
        help="what is in a dataset: classes, sizes, unreadable files, duplicates, leakage",
        description="Read every image of DATA and report classes, sizes, unreadable files, "
        "exact and near-duplicates, label conflicts and cross-split leakage.",
    )
    p.add_argument(
        "data",
        type=Path,
        metavar="DATA",
        help="dataset folder (class sub-folders, optionally under Training/Testing) or CSV manifest",
    )
    p.add_argument("--out", type=Path, help="write DIR/audit.json")
    p.add_argument(
        "--against",
        type=Path,
        metavar="OTHER",
        help="also find images of OTHER (another dataset folder or CSV) that copy images of DATA",
    )
    p.add_argument(
        "--group-similar", action="store_true", help="also report the look-alike groups used by --group-similar splits"
    )
    p.add_argument(
        "--shortcuts",
        action="store_true",
        help="also measure how well the labels follow from what is not anatomy (file metadata, acquisition, "
        "contrast, background with the head masked out), by grouped cross-validation against chance, and "
        "report the sources (a manifest's source column, or inferred from how the files were made)",
    )
    add_input_options(p)
    add_duplicate_options(p)
    add_general_options(p, seed=True, jobs=True)
    p.set_defaults(func=cmd_audit)


def add_demo_data(sub) -> None:
    """``brainmri demo-data`` on the sub-parsers ``sub``."""
    p = sub.add_parser(
        "demo-data",
        help="write a synthetic dataset of brain-MRI-like slices",
        description="Write OUT/<class>/*.png: synthetic T1-like slices of four classes "
        "(glioma, meningioma, notumor, pituitary), and OUT/.masks/<class>/*.png: the lesion mask of "
        "every tumour image (a hidden folder, so it is not taken for a class). Deterministic per --seed.",
    )
    p.add_argument("out", type=Path, metavar="OUT", help="folder to create (must not exist or be empty)")
    p.add_argument(
        "--n", type=int, default=None, help="images per class (default 40; with --3d subjects per class, default 20)"
    )
    p.add_argument(
        "--size", type=int, default=None, help="image size in pixels (default 128; with --3d voxels a side, default 32)"
    )
    p.add_argument(
        "--3d",
        dest="volumes",
        action="store_true",
        help="write NIfTI volumes instead: OUT/atrophy and OUT/control, made from the MNI152 template with "
        "regional atrophy planted in some regions of a parcellation; OUT/.regions holds the label volume "
        "and the planted-region list, OUT/.masks the planted regions of every atrophy subject",
    )
    p.add_argument(
        "--regions", type=int, default=24, help="with --3d: regions of the template's parcellation (default 24)"
    )
    p.add_argument("--planted", type=int, default=3, help="with --3d: regions carrying the atrophy (default 3)")
    add_general_options(p, seed=True)
    p.set_defaults(func=cmd_demo_data)


def add_demo(sub) -> None:
    """``brainmri demo`` on the sub-parsers ``sub``."""
    p = sub.add_parser(
        "demo",
        help="the whole flow on built-in synthetic data",
        description="Write synthetic data, audit it, and benchmark the classical methods and a "
        "small deep one (ayadi-cnn at 64 px, when PyTorch is installed) on it (5-fold CV). Outputs "
        "go to --out; the report is OUT/benchmark/report.html.",
    )
    p.add_argument("--out", type=Path, default=Path("demo-output"), help="output folder (default demo-output)")
    p.add_argument("--n", type=int, default=40, help="images per class (default 40)")
    add_general_options(p, seed=True, jobs=True)
    p.set_defaults(func=cmd_demo, resume_hint="rerun the same command to resume")


def cmd_audit(args) -> int:
    from brainmri.api import audit
    from brainmri.data.audit import format_audit, format_cross_dataset_leaks

    result = audit(
        args.data,
        against=args.against,
        group_similar=args.group_similar,
        shortcuts=args.shortcuts,
        duplicates=duplicate_params_from(args),
        max_pixels=args.max_pixels,
        allow_outside_paths=args.allow_outside_paths,
        bids_label=args.bids_label,
        bids_suffix=args.bids_suffix,
        seed=args.seed,
        n_jobs=args.jobs,
        out=args.out,
        stage=lambda n, what: progress(args, n, what),
    )
    report = result.report
    print(format_audit(report))
    if args.group_similar:
        print(
            f"look-alike groups (--group-similar): {report['similar_groups']['n_groups']}, "
            f"largest {report['similar_groups']['largest']}"
        )
    if args.against:
        print("\n".join(format_cross_dataset_leaks(report["cross_dataset_leaks"])))
    if args.shortcuts:
        from brainmri.evaluation.shortcuts import format_shortcuts
        from brainmri.evaluation.sources import format_sources

        print("\n".join(format_shortcuts(report["shortcuts"])))
        sources = report.get("sources") or {}
        if sources.get("origin") == "inferred":
            print("\n".join(format_sources(sources)))
        elif sources:
            print(f"sources (manifest): {', '.join(sources['names'])}")
    if result.path is not None:
        print(f"\nwrote {result.path}")
    if not result.n_readable:
        logger.error("%s: no readable image; see the unreadable list above", args.data)
        return 1
    return 0


def cmd_demo_data(args) -> int:
    from brainmri.data.synthetic import CLASSES, MASKS_FOLDER, write_demo_data

    if getattr(args, "volumes", False):
        return _demo_volumes(args)
    args.n = 40 if args.n is None else args.n
    args.size = 128 if args.size is None else args.size
    with progress(args, args.n * len(CLASSES), "writing") as update:
        out = write_demo_data(args.out, n=args.n, seed=args.seed, size=args.size, masks=True, progress=update)
    print(
        f"wrote {args.n * len(CLASSES)} synthetic images ({', '.join(CLASSES)}) to {out}, and the lesion masks of "
        f"the {args.n * (len(CLASSES) - 1)} tumour images to {out / MASKS_FOLDER} (for brainmri explain --masks)"
    )
    return 0


def _demo_volumes(args) -> int:
    """``demo-data --3d``."""
    import json

    from brainmri.data.synthetic import MASKS_FOLDER
    from brainmri.data.synthetic3d import (
        CLASSES_3D,
        PLANTED_FILE,
        REGIONS_FOLDER,
        write_demo_volumes,
    )

    n = 20 if args.n is None else args.n
    with progress(args, n * len(CLASSES_3D), "writing") as update:
        out = write_demo_volumes(
            args.out,
            n=n,
            size=32 if args.size is None else args.size,
            n_regions=args.regions,
            planted=args.planted,
            seed=args.seed,
            progress=update,
        )
    planted = json.loads((out / REGIONS_FOLDER / PLANTED_FILE).read_text(encoding="utf-8"))["planted_regions"]
    print(
        f"wrote {n * len(CLASSES_3D)} synthetic volumes ({', '.join(CLASSES_3D)}) to {out}; atrophy planted in "
        f"regions {', '.join(map(str, planted))} of {out / REGIONS_FOLDER} (label volume and list), their masks "
        f"per atrophy subject in {out / MASKS_FOLDER} (for brainmri explain --masks)"
    )
    return 0


def cmd_demo(args) -> int:
    data = args.out / "data"
    if not data.exists():
        cmd_demo_data(argparse.Namespace(**{**vars(args), "out": data, "size": 128}))
    else:
        print(f"using existing demo data in {data}")
    common = {**vars(args), "data": data, "group_similar": False, **input_defaults(), **duplicate_defaults()}
    status = cmd_audit(argparse.Namespace(**{**common, "out": args.out / "audit", "against": None, "shortcuts": False}))
    if status:
        return status
    print()
    methods, params = "glcm-svm,multifeature-rf,ovo-svm,rf", None
    if importlib.util.find_spec("torch") is not None:
        methods += ",ayadi-cnn"
        params = ",".join(f"ayadi-cnn.{k}={v}" for k, v in DEMO_DEEP_PARAMS.items())
    else:
        args.reporter.say("PyTorch is not installed: the demo skips the deep method (pip install 'brainmri[deep]')")
    return cmd_benchmark(
        argparse.Namespace(
            **{
                **common,
                "out": args.out / "benchmark",
                "methods": methods,
                "cv": 5,
                "split": None,
                "grouping": "auto",
                "drop_test_duplicates": False,
                "shortcuts": "auto",
                "test_data": None,
                "label_map": None,
                "n_boot": 1000,
                "size": 128,
                "no_crop": False,
                "harmonise": "none",
                "n4": False,
                "keep_aspect": False,
                "canonical": False,
                "cache_dir": args.out / "cache",
                "no_cache": False,
                "restart": False,
                "params": params,
                "device": "auto",
                "threads": None,
                "shift": None,
                "shift_severities": None,
                "shift_max_items": None,
                "adapt": "none",
                "extra_data": None,
                "extra_label_map": None,
                "cluster": None,
            }
        )
    )


#: Settings of the demo's deep method: a small ayadi-cnn that trains in seconds per fold on a CPU. One torch
#: thread: on a busy 2-core machine (load 6) two threads ran this network 5-10x slower than one (threads that
#: spin-wait for each other), while on an idle one they gain little on so small a network.
DEMO_DEEP_PARAMS = {"size": 64, "width": 8, "epochs": 10, "batch_size": 16, "threads": 1}
