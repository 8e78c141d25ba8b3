"""``brainmri regions``: the brain regions that carry a dataset's classes (Shojaei et al. 2023).

The steps, each on every volume of DATA (3D NIfTI volumes in one space, on
one voxel grid):

1. **Regions.** The ``--atlas`` label volume, or the template's
   parcellation, on the volumes' grid (:mod:`brainmri.regions.atlas`);
   labels mostly outside the volumes' brain are refused.
2. **Region features.** Each volume is scaled to [0, 1] (0.5 and 99.5
   percentiles, as the volume preprocessing does) and summarised per region
   by the mean and the standard deviation of its voxels: atrophy (tissue
   loss and shrinkage) lowers the first and changes the second. Volumes are
   read one at a time, so memory holds features, not volumes.
3. **Attribution ranking.** Each region's relevance is the ANOVA F statistic
   (``sklearn.feature_selection.f_classif``) of its features between the
   classes, the larger of the two: a one-pass attribution that needs no
   trained network. With a trained ``cnn3d`` bundle (``--model``) it is
   instead the density of the network's attribution maps in the region,
   averaged with its sign over each class's volumes (:class:`RegionAttribution`,
   :func:`class_relevance`; ``--attribution``: the input gradient by
   default), the backpropagation attribution of Shojaei et al. Regions are
   ranked by it.
4. **Genetic search** (:class:`~brainmri.regions.genetic.GeneticRegionSearch`),
   seeded by that ranking, for the mask with the best grouped
   cross-validated accuracy at the fewest regions.
5. **Ranked regions.** The selected regions first, then the others, each
   group in the order of the attribution ranking.

The accuracy of the selected mask and of the whole brain (every region) are
those of the same classifier on the same grouped inner folds. The mask was
chosen on those folds, so its accuracy is optimistic by the selection
(the whole brain's is not); ``results.json`` says so beside the numbers.

When DATA is a ``demo-data --3d`` folder and the regions are its
parcellation, the planted regions (its known answer) are compared with the
ranking: the share of them among the top-ranked regions (as many as were
planted), and the share of them the mask selected.

References
----------
E. Shojaei, R. Ghaderi and S. Salehi, "An evolutionary explainable deep
learning approach for Alzheimer's MRI classification", Expert Systems with
Applications 220:119709, 2023. DOI 10.1016/j.eswa.2023.119709
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from brainmri.data.dataset import load_dataset
from brainmri.data.synthetic3d import ATLAS_FILE, PLANTED_FILE, REGIONS_FOLDER
from brainmri.errors import ConfigError
from brainmri.files import atomic_path, write_json, write_text
from brainmri.outputs import OutputFolder
from brainmri.regions.atlas import Atlas, brain_mask, check_inside, load_atlas, template_parcellation
from brainmri.regions.features import (
    FEATURES,
    NETWORK_ATTRIBUTIONS,
    RegionAttribution,
    attribution_ranking,
    class_relevance,
    read_region_features,
)
from brainmri.regions.genetic import GeneticRegionSearch
from brainmri.regions.report import write_regions_report

logger = logging.getLogger(__name__)

#: The file every region-search folder holds; a folder with other files and without it is never written into.
RESULTS = "results.json"


@dataclass(frozen=True)
class RegionSearchConfig:
    """Settings of one region search (written to ``results.json`` as ``config``).

    Parameters
    ----------
    atlas : str or None
        Label NIfTI (``--atlas``); None: the template's parcellation.
    model : str or None
        A ``cnn3d`` bundle whose attribution maps rank the regions
        (``--model``); None: the ANOVA ranking.
    attribution : str
        With ``model``: the map that ranks the regions, one of
        :data:`NETWORK_ATTRIBUTIONS` (:class:`RegionAttribution`).
    n_regions : int
        Regions of the template's parcellation (without ``atlas``).
    population, generations, mutation, penalty
        Of :class:`~brainmri.regions.genetic.GeneticRegionSearch`.
    seed : int
        Seed of the folds and of the search.
    """

    atlas: str | None = None
    model: str | None = None
    attribution: str = "gradient"
    n_regions: int = 24
    population: int = 30
    generations: int = 40
    mutation: float | None = None
    penalty: float = 0.002
    seed: int = 0

    def __post_init__(self):
        if self.attribution not in NETWORK_ATTRIBUTIONS:
            raise ConfigError(
                f"--attribution {self.attribution!r} is not a region attribution method; valid: "
                f"{', '.join(NETWORK_ATTRIBUTIONS)}"
            )
        self.search()._check_params(2)  # the GA's own checks, before any volume is read

    def search(self) -> GeneticRegionSearch:
        return GeneticRegionSearch(
            population=self.population,
            generations=self.generations,
            mutation=self.mutation,
            penalty=self.penalty,
            random_state=self.seed,
        )


def check_regions_folder(out: str | Path, *, inputs=()) -> Path:
    """Refuse ``out`` unless it is new, empty or an earlier ``brainmri regions`` output
    (:class:`~brainmri.outputs.OutputFolder`)."""
    OutputFolder(out, "regions").check(inputs=inputs)
    return Path(out)


def planted_comparison(root: Path, atlas: Atlas, ranked: list[int], selected: list[int]) -> dict | None:
    """The known answer of a ``demo-data --3d`` folder against the ranking; None when ``root`` has none.

    Returns
    -------
    dict or None
        ``planted_regions``, ``comparable`` (the regions are the folder's
        own parcellation) and, when comparable, ``top_ranked`` (as many as
        planted), ``recovered_top`` (share of the planted regions among
        them) and ``recovered_selected`` (share of them in the mask).
    """
    import nibabel as nib

    folder = root / REGIONS_FOLDER
    if not (folder / PLANTED_FILE).is_file():
        return None
    planted = sorted(int(r) for r in json.loads((folder / PLANTED_FILE).read_text(encoding="utf-8"))["planted_regions"])
    own = np.asarray(nib.load(str(folder / ATLAS_FILE)).dataobj)
    comparable = own.shape == atlas.labels.shape and bool(np.array_equal(own, atlas.labels))
    out = {"planted_regions": planted, "comparable": comparable}
    if not comparable:
        out["note"] = (
            f"the regions searched are not {folder / ATLAS_FILE}, so its planted region numbers do not "
            f"name them; to compare, rerun with --atlas {folder / ATLAS_FILE}"
        )
        return out
    top = ranked[: len(planted)]
    out.update(
        top_ranked=top,
        recovered_top=len(set(top) & set(planted)) / len(planted),
        recovered_selected=len(set(selected) & set(planted)) / len(planted),
    )
    return out


def _save_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib

    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(nib.Nifti1Image(array, affine).to_bytes(), mtime=0))


def run_region_search(
    data: str | Path,
    config: RegionSearchConfig,
    out: str | Path,
    *,
    device: str = "auto",
    progress: Callable[[int], None] | None = None,
    on_event: Callable[[str], None] | None = None,
) -> dict:
    """Run ``brainmri regions`` and write its outputs.

    Parameters
    ----------
    data : path
        Dataset folder or CSV manifest of 3D NIfTI volumes on one grid.
    config : RegionSearchConfig
    device : str
        Where the ``--model`` network runs.
    out : path
        Output folder (:func:`check_regions_folder`): ``results.json``,
        ``regions.json`` and ``regions.csv`` (the ranked regions),
        ``mask.nii.gz`` (the selected regions, uint8 0/1 on the volumes'
        grid), ``atlas.nii.gz`` (the regions searched, on that grid) and
        ``report.html``.
    progress : callable or None
        Called with 1 after every volume read.
    on_event : callable or None
        Called with a line for the user (the regions used, each generation).

    Returns
    -------
    dict
        The content of ``results.json``.
    """
    say = on_event or (lambda line: logger.info("%s", line))
    started = time.perf_counter()
    dataset = load_dataset(data)
    out = check_regions_folder(
        out, inputs=[data, *([config.atlas] if config.atlas else []), *([config.model] if config.model else [])]
    )
    attribution = RegionAttribution(config.model, method=config.attribution, device=device) if config.model else None
    folder = OutputFolder(out, "regions")
    with folder.recording():
        folder.start({"config": asdict(config), "data": str(data)})
        v = _read_volumes(dataset, config, attribution, say=say, progress=progress)
        atlas, y, affine = v.atlas, v.y, v.grid[1]
        read_s = time.perf_counter() - started

        score, ranking, attributed = _ranking(attribution, v.features, v.densities, y)
        search = config.search()

        def generation(entry: dict) -> None:
            say(
                f"generation {entry['generation']}/{config.generations}: best fitness {entry['best_fitness']:.3f} "
                f"(accuracy {entry['best_accuracy']:.3f} with {entry['best_regions']} regions), "
                f"mean {entry['mean_fitness']:.3f}"
            )

        search.fit(v.features, y, groups=v.groups, ranking=ranking, progress=generation)
        ranked, selected = _ranked_regions(atlas, search, ranking, score, v.inside)
        planted = planted_comparison(dataset.root, atlas, [r["region"] for r in ranked], selected)
        mask = _write_masks_and_regions(out, atlas, affine, ranked, selected)
        results = {
            **_results_record(data, config, v, atlas, attributed, search, selected, planted),
            "seconds": {"reading": round(read_s, 2), "total": round(time.perf_counter() - started, 2)},
        }
        write_regions_report(results, ranked, v.mean, mask, out / "report.html")
        write_json(out / RESULTS, results)
        return results


def _results_record(data, config: RegionSearchConfig, v, atlas, attributed, search, selected, planted) -> dict:
    """``results.json`` of a finished search, but for its times."""
    return {
        "command": "regions",
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "data": str(data),
        "config": asdict(config),
        "classes": sorted(set(v.y.tolist())),
        "n_volumes": len(v.items),
        "skipped": v.skipped,
        "grid": {"shape": list(v.grid[0]), "affine": np.asarray(v.grid[1]).round(6).tolist()},
        "atlas": {"source": atlas.source, "note": atlas.note, "n_regions": len(atlas.regions)},
        "features": list(FEATURES),
        "attribution": attributed,
        **_search_record(search, v.grouping, len(atlas.regions)),
        "selected_regions": selected,
        "accuracy": {
            "mask": search.accuracy_,
            "whole_brain": search.whole_accuracy_,
            "difference": search.accuracy_ - search.whole_accuracy_,
            "note": "both on the same grouped inner folds; the mask was selected on them, so its accuracy "
            "is optimistic by the selection",
        },
        "planted": planted,
        "history": search.history_,
        "n_evaluations": search.n_evaluations_,
    }


@dataclass
class _Volumes:
    """The volumes that were read, on the atlas's grid, with what the search needs of them."""

    atlas: Atlas
    features: np.ndarray
    items: list
    skipped: list[dict]
    mean: np.ndarray
    grid: tuple
    densities: np.ndarray | None
    inside: dict
    y: np.ndarray
    groups: np.ndarray
    grouping: str


def _read_volumes(
    dataset, config: RegionSearchConfig, attribution, *, say: Callable[[str], None], progress
) -> _Volumes:
    """Every volume read once (:func:`~brainmri.regions.features.read_region_features`) with its labels and groups."""

    def atlas_for(shape, affine) -> Atlas:
        atlas = (
            load_atlas(config.atlas, shape, affine)
            if config.atlas
            else template_parcellation(shape, affine, n_regions=config.n_regions)
        )
        if atlas.note:
            say(atlas.note)
        return atlas

    atlas, features, kept, skipped, mean, grid, densities = read_region_features(
        dataset.items, atlas_for, attribution=attribution, progress=progress
    )
    inside = check_inside(atlas, brain_mask(mean))
    say(
        f"{len(atlas.regions)} regions from {atlas.source}; {len(kept)} volumes read"
        + (f", {len(skipped)} skipped" if skipped else "")
    )
    items = [dataset.items[k] for k in kept]
    if dataset.has_subjects:
        groups, grouping = np.array([it.subject for it in items]), "subject column of the manifest"
    else:
        groups, grouping = np.arange(len(items)), "one subject per volume (no subject column)"
    return _Volumes(
        atlas,
        features,
        items,
        skipped,
        mean,
        grid,
        densities,
        inside,
        np.array([it.label for it in items]),
        groups,
        grouping,
    )


def _ranking(attribution, features: np.ndarray, densities, y: np.ndarray) -> tuple[np.ndarray, np.ndarray, str]:
    """Each region's attribution score, the regions from most to least relevant, and how they were ranked (in words)."""
    if attribution is None:
        score, ranking = attribution_ranking(features, y)
        return score, ranking, "ANOVA F of the region's features between classes (the larger of mean and std)"
    score, ranking = class_relevance(densities, y)
    return (
        score,
        ranking,
        (
            f"density of the {attribution.source} of each volume's class in the region (its mean per "
            "voxel over the mean absolute map of all regions' voxels; 1: an average brain voxel), "
            "averaged with its sign over each class's volumes; the mean over the classes of its "
            "absolute value"
        ),
    )


def _ranked_regions(
    atlas: Atlas, search: GeneticRegionSearch, ranking, score, inside: dict
) -> tuple[list[dict], list[int]]:
    """``regions.json``'s rows (the selected regions first, in ranking order, then the others) and the selected ones."""
    regions = atlas.regions
    selected_idx = [int(i) for i in ranking if search.support_[i]]
    order = selected_idx + [int(i) for i in ranking if not search.support_[i]]
    sizes = np.bincount(atlas.labels.ravel(), minlength=regions.max() + 1)
    ranked = [
        {
            "rank": k + 1,
            "region": int(regions[i]),
            "selected": bool(search.support_[i]),
            "attribution": float(score[i]),
            "population_share": float(search.population_share_[i]),
            "voxels": int(sizes[regions[i]]),
            "inside_brain": inside[int(regions[i])],
        }
        for k, i in enumerate(order)
    ]
    return ranked, [int(regions[i]) for i in selected_idx]


def _write_masks_and_regions(out: Path, atlas: Atlas, affine, ranked: list[dict], selected: list[int]) -> np.ndarray:
    """``mask.nii.gz``, ``atlas.nii.gz``, ``regions.json`` and ``regions.csv``; the mask."""
    mask = np.isin(atlas.labels, selected).astype(np.uint8)
    _save_nifti(out / "mask.nii.gz", mask, affine)
    _save_nifti(out / "atlas.nii.gz", atlas.labels, affine)
    write_json(out / "regions.json", ranked)
    header = list(ranked[0])
    write_text(
        out / "regions.csv",
        ",".join(header) + "\n" + "".join(",".join(str(row[h]) for h in header) + "\n" for row in ranked),
    )
    return mask


def _search_record(search: GeneticRegionSearch, grouping: str, n_regions: int) -> dict:
    """What ``results.json`` says of the search: classifier, fitness, folds and mutation."""
    return {
        "classifier": f"standardised ridge classifier (alpha={search.alpha}) on the selected regions' features",
        "fitness": f"grouped cross-validated accuracy - {search.penalty} x selected regions",
        "cv": f"{search.cv_}; groups: {grouping}",
        "mutation": search.mutation if search.mutation is not None else 1 / n_regions,
    }


def format_summary(results: dict) -> list[str]:
    """The lines ``brainmri regions`` prints: the mask, the two accuracies and the known answer."""
    acc = results["accuracy"]
    lines = [
        f"selected {len(results['selected_regions'])} of {results['atlas']['n_regions']} regions: "
        f"{', '.join(map(str, results['selected_regions'])) or 'none'}",
        f"accuracy with the mask {acc['mask']:.3f} vs the whole brain {acc['whole_brain']:.3f} "
        f"({results['cv']}; the mask's is optimistic by its selection)",
    ]
    planted = results.get("planted")
    if planted and planted["comparable"]:
        lines.append(
            f"planted regions {', '.join(map(str, planted['planted_regions']))}: "
            f"{planted['recovered_top']:.0%} among the top {len(planted['planted_regions'])} ranked, "
            f"{planted['recovered_selected']:.0%} selected"
        )
    elif planted:
        lines.append(f"planted regions not compared: {planted['note']}")
    return lines
