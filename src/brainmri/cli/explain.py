"""``brainmri explain`` and ``brainmri regions``: attribution maps checked, and the regions that carry the classes.

Imports what a command runs only when it runs (see :mod:`brainmri.cli.data`).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from brainmri.cli.options import (
    add_general_options,
    add_input_options,
    add_training_options,
    torch_threads_for,
)
from brainmri.cli.progress import progress
from brainmri.errors import ConfigError

logger = logging.getLogger("brainmri")


def add_explain(sub) -> None:
    """``brainmri explain`` on the sub-parsers ``sub``."""
    p = sub.add_parser(
        "explain",
        help="attribution maps of images from a model bundle, and checks of them",
        description="Write an attribution map (OUT/maps/*.npy) and an overlay with the predicted class "
        "and probability (OUT/overlays/*.png) for every image, and check the maps: deletion/insertion "
        "curves, the weight-randomisation sanity check and, with --masks, the pointing game against "
        "known lesion masks. Numbers are printed and written to OUT/explain.json.",
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
        "--method",
        default="gradcam",
        help="gradcam, integrated-gradients, saliency (CNNs) or occlusion (every model; default gradcam)",
    )
    p.add_argument(
        "--out", type=Path, required=True, help="output folder: new, empty or an earlier brainmri explain output"
    )
    p.add_argument(
        "--masks",
        type=Path,
        metavar="DIR",
        help="lesion masks (DIR/<class>/<image name> or DIR/<image name>; brainmri demo-data writes "
        "DATA/.masks): report the pointing game and the share of attribution inside the lesion",
    )
    p.add_argument(
        "--tolerance",
        type=float,
        metavar="PX",
        help="pointing game: a map maximum within PX pixels of the lesion is a hit (default: 15 px at 224, "
        "scaled to the model's input size, as Zhang et al. 2018)",
    )
    p.add_argument("--no-checks", action="store_true", help="skip the deletion/insertion and randomisation checks")
    p.add_argument(
        "--check-items",
        type=int,
        default=64,
        metavar="N",
        help="images (a seeded sample) in the deletion/insertion and randomisation checks (default 64)",
    )
    p.add_argument("--batch-size", type=int, default=64, help="images read and explained at a time (default 64)")
    add_training_options(p, params=False)
    add_input_options(p, manifests=False)
    add_general_options(p, seed=True, jobs=True)
    p.set_defaults(func=cmd_explain)


def add_regions(sub) -> None:
    """``brainmri regions`` on the sub-parsers ``sub``."""
    p = sub.add_parser(
        "regions",
        help="the brain regions that carry the classes of 3D volumes (genetic mask search)",
        description="Rank the regions of an atlas (or of the template's parcellation) by how much "
        "they tell the classes of DATA's 3D volumes apart, and search with a genetic algorithm the "
        "fewest regions that keep the grouped cross-validated accuracy (Shojaei et al. 2023). Writes "
        "the ranked regions (regions.json, regions.csv), the selected mask (mask.nii.gz), results.json "
        "and report.html to --out.",
    )
    p.add_argument(
        "data", type=Path, metavar="DATA", help="dataset folder or CSV manifest of NIfTI volumes on one grid"
    )
    p.add_argument(
        "--out", type=Path, required=True, help="output folder: new, empty or an earlier brainmri regions output"
    )
    p.add_argument(
        "--atlas",
        type=Path,
        metavar="PATH",
        help="label NIfTI in the volumes' space (e.g. AAL, Harvard-Oxford maxprob); resampled by nearest "
        "neighbour when on another grid (default: a parcellation of the MNI152 template)",
    )
    p.add_argument(
        "--regions", type=int, default=24, help="without --atlas: regions of the template's parcellation (default 24)"
    )
    p.add_argument(
        "--model",
        type=Path,
        metavar="BUNDLE",
        help="rank the regions by the attribution maps of this cnn3d bundle (brainmri train --method "
        "cnn3d) instead of the ANOVA F of their features",
    )
    p.add_argument(
        "--attribution",
        default="gradient",
        help="with --model: the map whose density per region ranks the regions: gradient (the signed "
        "input gradient, default), integrated-gradients or gradcam",
    )
    p.add_argument(
        "--device", default="auto", help="where the --model network runs: auto, cpu, cuda, cuda:N or mps (default auto)"
    )
    p.add_argument("--population", type=int, default=30, help="masks per generation (default 30)")
    p.add_argument("--generations", type=int, default=40, help="generations (default 40)")
    p.add_argument(
        "--mutation", type=float, help="probability that a region's bit flips in a child (default 1/regions)"
    )
    p.add_argument("--penalty", type=float, default=0.002, help="fitness lost per selected region (default 0.002)")
    add_general_options(p, seed=True)
    p.set_defaults(func=cmd_regions)


def cmd_explain(args) -> int:
    from brainmri.explain.checks import format_checks
    from brainmri.explain.explainer import ExplainConfig, check_explain_folder, explain_images
    from brainmri.models.bundle import load_model
    from brainmri.models.predict import list_images

    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be a positive integer, got {args.batch_size}")
    config = ExplainConfig(
        method=args.method,
        masks=str(args.masks) if args.masks else None,
        checks=not args.no_checks,
        check_items=args.check_items,
        tolerance=args.tolerance,
        seed=args.seed,
    )
    check_explain_folder(args.out, inputs=[args.model, *args.images, *([args.masks] if args.masks else [])])
    jobs = args.jobs if args.jobs > 0 else (os.cpu_count() or 1)
    bundle = load_model(args.model, n_jobs=jobs, device=args.device)
    items = list_images(args.images)
    with torch_threads_for(args.threads), progress(args, len(items), "explaining") as update:
        document, _ = explain_images(
            bundle,
            items,
            config,
            args.out,
            batch_size=args.batch_size,
            n_jobs=jobs,
            max_pixels=args.max_pixels,
            progress=update,
            on_event=args.reporter.say,
        )
    if not document["images"]:
        logger.error("none of the %d image(s) could be read; nothing was explained", len(items))
        return 1
    print("\n".join(format_checks(document)))
    print(f"wrote {len(document['images'])} maps and overlays, and {args.out / 'explain.json'}")
    return 0


def cmd_regions(args) -> int:
    from brainmri.regions.region_search import (
        RegionSearchConfig,
        format_summary,
        run_region_search,
    )

    config = RegionSearchConfig(
        atlas=str(args.atlas) if args.atlas else None,
        model=str(args.model) if args.model else None,
        attribution=args.attribution,
        n_regions=args.regions,
        population=args.population,
        generations=args.generations,
        mutation=args.mutation,
        penalty=args.penalty,
        seed=args.seed,
    )
    with progress(args, None, "reading") as update:
        results = run_region_search(
            args.data, config, args.out, device=args.device, progress=update, on_event=args.reporter.say
        )
    print("\n".join(format_summary(results)))
    print(f"wrote {args.out / 'regions.json'}, {args.out / 'mask.nii.gz'} and {args.out / 'report.html'}")
    return 0
