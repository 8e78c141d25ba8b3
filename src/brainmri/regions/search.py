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
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import numpy as np

from brainmri.data.io import read_image
from brainmri.data.preprocess import normalize_intensity
from brainmri.errors import ConfigError, DataError
from brainmri.files import atomic_path, write_json, write_text
from brainmri.outputs import OutputFolder
from brainmri.regions.atlas import Atlas, brain_mask, check_inside, load_atlas, template_parcellation
from brainmri.regions.genetic import GeneticRegionSearch
from brainmri.data.dataset import load_dataset
from brainmri.data.synthetic3d import ATLAS_FILE, PLANTED_FILE, REGIONS_FOLDER
from brainmri.data.volumes import VolumePreprocess
from brainmri.explain.explainer import ModelView
from brainmri.models.bundle import load_model

logger = logging.getLogger(__name__)

#: The file every region-search folder holds; a folder with other files and without it is never written into.
RESULTS = "results.json"
#: Region features, in their order in the feature array.
FEATURES = ("mean", "std")
#: ``--attribution`` maps of a ``--model`` network, the default first: a method of
#: :mod:`brainmri.explain.attribution` and its settings (occlusion would take thousands of passes per volume).
NETWORK_ATTRIBUTIONS = {"gradient": ("saliency", {"absolute": False}),
                        "integrated-gradients": ("integrated-gradients", {}), "gradcam": ("gradcam", {})}


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
            raise ConfigError(f"--attribution {self.attribution!r} is not a region attribution method; valid: "
                              f"{', '.join(NETWORK_ATTRIBUTIONS)}")
        self.search()._check_params(2)  # the GA's own checks, before any volume is read

    def search(self) -> GeneticRegionSearch:
        return GeneticRegionSearch(population=self.population, generations=self.generations, mutation=self.mutation,
                                   penalty=self.penalty, random_state=self.seed)


def check_regions_folder(out: str | Path, *, inputs=()) -> Path:
    """Refuse ``out`` unless it is new, empty or an earlier ``brainmri regions`` output
    (:class:`~brainmri.outputs.OutputFolder`)."""
    OutputFolder(out, "regions").check(inputs=inputs)
    return Path(out)


def region_features(volume: np.ndarray, labels: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Mean and standard deviation of ``volume`` inside each region.

    Parameters
    ----------
    volume : ndarray, shape (X, Y, Z)
    labels : ndarray of int, same shape
    regions : ndarray of int, shape (R,)
        Region numbers present in ``labels``.

    Returns
    -------
    ndarray of float64, shape (R, 2)

    Examples
    --------
    >>> labels = np.array([[[1, 1, 2, 0]]]); volume = np.array([[[1.0, 3.0, 5.0, 9.0]]])
    >>> region_features(volume, labels, np.array([1, 2])).tolist()
    [[2.0, 1.0], [5.0, 0.0]]
    """
    flat, values = labels.ravel(), np.asarray(volume, dtype=np.float64).ravel()
    count = np.bincount(flat, minlength=regions.max() + 1)[regions]
    mean = np.bincount(flat, weights=values, minlength=regions.max() + 1)[regions] / count
    square = np.bincount(flat, weights=values ** 2, minlength=regions.max() + 1)[regions] / count
    return np.stack([mean, np.sqrt(np.maximum(square - mean ** 2, 0))], axis=1)


def attribution_ranking(features: np.ndarray, y) -> tuple[np.ndarray, np.ndarray]:
    """Relevance of every region (the largest ANOVA F of its features) and the regions' order by it.

    Returns
    -------
    score : ndarray of float, shape (R,)
        0 for a region whose features do not vary.
    ranking : ndarray of int, shape (R,)
        Region indices, most relevant first (ties by index).
    """
    import warnings

    from sklearn.feature_selection import f_classif

    n, r, f = features.shape
    with warnings.catch_warnings():
        # A constant feature (a region outside every volume's field of view) gives F = NaN, scored 0 below.
        warnings.simplefilter("ignore", RuntimeWarning)
        warnings.simplefilter("ignore", UserWarning)
        score, _ = f_classif(features.reshape(n, r * f), np.asarray(y))
    score = np.nan_to_num(score.reshape(r, f), nan=0.0).max(axis=1)
    return score, np.argsort(-score, kind="stable")


def attribution_density(attribution: np.ndarray, labels: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Mean of an attribution map over each region's voxels, relative to the mean absolute map over every region's.

    ``density(r) = mean(a over r) / mean(|a| over the voxels of all regions)``:
    1 is the attribution of an average voxel of the regions, whatever the
    region's size and the map's scale.

    Parameters
    ----------
    attribution : ndarray, shape (X, Y, Z)
    labels : ndarray of int, same shape
        Region of every voxel (0 outside).
    regions : ndarray of int, shape (R,)
        Region numbers present in ``labels``.

    Returns
    -------
    ndarray of float64, shape (R,)
        All 0 when the map is 0 on every region.

    Examples
    --------
    >>> labels = np.array([[[1, 1, 1, 2, 0]]]); attribution = np.array([[[1.0, 1.0, 1.0, 3.0, 9.0]]])
    >>> attribution_density(attribution, labels, np.array([1, 2])).tolist()
    [0.6666666666666666, 2.0]
    """
    flat, values = np.asarray(labels).ravel(), np.asarray(attribution, dtype=np.float64).ravel()
    inside = np.isin(flat, regions)
    scale = np.abs(values[inside]).mean() if inside.any() else 0.0
    if scale == 0:
        return np.zeros(len(regions))
    size = np.bincount(flat, minlength=regions.max() + 1)[regions]
    return np.bincount(flat, weights=values, minlength=regions.max() + 1)[regions] / np.maximum(size, 1) / scale


def class_relevance(densities: np.ndarray, y) -> tuple[np.ndarray, np.ndarray]:
    """Relevance of every region from signed attribution densities: how consistently each class's maps mark it.

    Per class, the densities of its volumes (each toward its own class) are
    averaged with their sign; a region's relevance is the mean over the
    classes of the absolute class average. Gradients that change sign from
    one subject to the next (noise, edges the network does not use
    consistently) cancel; a region whose intensity moves the decision the
    same way in every subject adds up. For maps that are never negative
    (Grad-CAM) it is the mean density, each class weighing the same.

    Parameters
    ----------
    densities : ndarray, shape (n, R)
        :func:`attribution_density` of each volume's map of its own class.
    y : array-like, shape (n,)
        Class of each volume.

    Returns
    -------
    score : ndarray of float, shape (R,)
    ranking : ndarray of int, shape (R,)
        Region indices, most relevant first (ties by index).

    Examples
    --------
    Region 0 is marked strongly but with changing signs, region 1 weakly
    and consistently (with opposite signs in the two classes, as an
    intensity that raises one class's score lowers the other's):

    >>> densities = np.array([[2.0, 1.0], [-2.0, 1.0], [2.0, -1.0], [-2.0, -1.0]])
    >>> score, ranking = class_relevance(densities, ["a", "a", "b", "b"])
    >>> score.tolist(), ranking.tolist()
    ([0.0, 1.0], [1, 0])
    """
    y = np.asarray(y)
    score = np.mean([np.abs(densities[y == c].mean(axis=0)) for c in np.unique(y)], axis=0)
    return score, np.argsort(-score, kind="stable")


class RegionAttribution:
    """Region-level attribution of a volume CNN bundle: the density of the network's map of each volume in each region.

    Each volume is preprocessed as the bundle preprocesses it; the atlas is
    moved into that space the same way (cropped with the volume's head box,
    resized by nearest neighbour). The map of the volume's own class
    (:mod:`brainmri.explain.attribution`, Captum's) is averaged over each
    region's voxels and divided by the mean absolute map over all regions'
    voxels (:func:`attribution_density`): 1 is the attribution of an
    average brain voxel, so a region does not rank high by its size alone
    and every volume weighs the same. :func:`class_relevance` turns the
    densities of all volumes into the ranking.

    Shojaei et al. (2023) combine a genetic occlusion search with a set of
    backpropagation maps of their 3D CNN; this is the backpropagation step,
    with the map chosen on volumes with a known answer (``demo-data --3d``,
    measurements in docs/benchmarks.md, "Region masks"):

    * ``gradient`` (default): the signed input gradient of the class score
      (the saliency of Simonyan et al. 2014 before its absolute value), one
      backward pass per volume. Signed, so that :func:`class_relevance`
      cancels what is inconsistent across subjects. It put all planted
      regions in the top 3 on the benchmark's volumes (two trainings of
      cnn3d) and 13 of 15 on five smaller sets; the absolute saliency 12
      of 15.
    * ``integrated-gradients`` (Sundararajan et al. 2017): signed too; 12
      of 15, at 32 passes per volume.
    * ``gradcam``: the cnn3d's last convolution sees a 32^3 volume at 4^3,
      so its map, upsampled, is nearly flat over regions of a few hundred
      voxels: 0 of 3 on the benchmark, 3 of 15 on the smaller sets.

    Parameters
    ----------
    model : path
        A bundle of a volume CNN (``brainmri train --method cnn3d``).
    method : str
        A name of :data:`NETWORK_ATTRIBUTIONS`.
    device : str
        Where the network runs.

    Raises
    ------
    ConfigError
        The bundle is not a network on volumes (no gradient attribution
        applies), or Captum is missing.

    References
    ----------
    S. Shojaei, M. Saniee Abadeh and Z. Momeni, "An evolutionary explainable
    deep learning approach for Alzheimer's MRI classification", Expert
    Systems with Applications 220:119709, 2023. DOI 10.1016/j.eswa.2023.119709
    K. Simonyan, A. Vedaldi and A. Zisserman, "Deep inside convolutional
    networks: visualising image classification models and saliency maps",
    ICLR workshop 2014, arXiv:1312.6034.
    """

    def __init__(self, model: str | Path, *, method: str = "gradient", device: str = "auto"):
        self.view = ModelView(load_model(model, device=device))
        if not isinstance(self.view.preprocess, VolumePreprocess) or self.view.module is None:
            name = self.view.bundle.manifest["method"]["name"]
            raise ConfigError(f"--model {model}: is a {name} bundle; the attribution "
                              "ranking needs a network on volumes (brainmri train --method cnn3d), or leave --model "
                              "out for the ANOVA ranking")
        name, settings = NETWORK_ATTRIBUTIONS[method]
        self.attribution = self.view.attribution(name, **settings)
        self.classes = [str(c) for c in self.view.bundle.classes_]
        self.source = f"{method} maps of {model} ({self.view.bundle.manifest['method']['name']})"

    def __call__(self, volume: np.ndarray, label: str, labels: np.ndarray, regions: np.ndarray) -> np.ndarray:
        """Densities ``(R,)`` of the map of class ``label`` of ``volume`` in each region (0 when the map is 0)."""
        import torch

        if label not in self.classes:
            raise DataError(f"class '{label}' is not one of the model's classes ({', '.join(self.classes)}); the "
                            "attribution ranking needs a model trained on these classes")
        x = self.view.preprocess(volume)
        box = self.view.preprocess.box(np.asarray(volume, dtype=np.float32))
        moved = np.rint(self.view.preprocess.resample(labels, box, order=0)).astype(np.int64)
        with self.view.running():
            attribution = self.attribution(self.view.tensor(x[None]), torch.as_tensor([self.classes.index(label)]))
        return attribution_density(attribution[0], moved, regions)


def _volume_grid(path: Path) -> tuple[tuple[int, ...], np.ndarray]:
    """Shape and RAS+ affine of a NIfTI volume (as :func:`read_image` orients it)."""
    import nibabel as nib

    image = nib.as_closest_canonical(nib.load(str(path)))
    return tuple(int(s) for s in image.shape[:3]), image.affine


def read_region_features(items, atlas_for: Callable[[tuple, np.ndarray], Atlas], *,
                         attribution: RegionAttribution | None = None, progress: Callable[[int], None] | None = None):
    """Read every volume once: the atlas on their grid, their region features and their mean.

    With ``attribution``, also the region densities of the map of every
    volume read (``densities``, shape (n_read, R)); otherwise ``densities``
    is None.

    Returns
    -------
    atlas : Atlas
    features : ndarray, shape (n_read, R, 2)
    kept : list of int
        Indices of the items read; the others are in ``skipped``.
    skipped : list of dict
        ``{path, reason}`` of volumes that could not be read or are on another grid.
    mean : ndarray
        Mean of the scaled volumes.
    grid : tuple
        ``(shape, affine)`` of the volumes.
    densities : ndarray or None
    """
    atlas = grid = regions = total = None
    features, densities, kept, skipped = [], [], [], []
    for k, item in enumerate(items):
        try:
            volume, meta = read_image(item.path)
            if volume.ndim != 3 or meta.mode != "volume":
                raise DataError(f"{item.path}: not a 3D volume (shape {volume.shape}); brainmri regions needs NIfTI "
                                "volumes in one space")
            shape, affine = _volume_grid(item.path)
            if grid is not None and (shape != grid[0] or not np.allclose(affine, grid[1], atol=1e-3)):
                raise DataError(f"{item.path}: on another voxel grid ({shape}) than the first volume ({grid[0]}); "
                                "resample every volume to one space (e.g. MNI) first")
        except DataError as exc:
            logger.warning("skipped: %s", exc)
            skipped.append({"path": str(item.path), "reason": str(exc)})
            continue
        finally:
            if progress:
                progress(1)
        if grid is None:  # the first volume read sets the grid; the atlas's own errors stop the run
            grid = (shape, affine)
            atlas = atlas_for(shape, affine)
            regions = atlas.regions
        scaled = normalize_intensity(volume, (0.5, 99.5))
        total = scaled.astype(np.float64) if total is None else total + scaled
        if attribution is not None:
            densities.append(attribution(volume, item.label, atlas.labels, regions))
        features.append(region_features(scaled, atlas.labels, regions))
        kept.append(k)
    if not kept:
        raise DataError(f"none of the {len(items)} volume(s) could be read; see the messages above")
    return (atlas, np.stack(features), kept, skipped, (total / len(kept)).astype(np.float32), grid,
            np.stack(densities) if densities else None)


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
        out["note"] = (f"the regions searched are not {folder / ATLAS_FILE}, so its planted region numbers do not "
                       f"name them; to compare, rerun with --atlas {folder / ATLAS_FILE}")
        return out
    top = ranked[:len(planted)]
    out.update(top_ranked=top, recovered_top=len(set(top) & set(planted)) / len(planted),
               recovered_selected=len(set(selected) & set(planted)) / len(planted))
    return out


def _save_nifti(path: Path, array: np.ndarray, affine: np.ndarray) -> None:
    import nibabel as nib

    with atomic_path(path) as tmp:
        tmp.write_bytes(gzip.compress(nib.Nifti1Image(array, affine).to_bytes(), mtime=0))


def run_region_search(data: str | Path, config: RegionSearchConfig, out: str | Path, *, device: str = "auto",
                      progress: Callable[[int], None] | None = None,
                      on_event: Callable[[str], None] | None = None) -> dict:
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
    from brainmri.regions.report import write_regions_report

    say = on_event or (lambda line: logger.info("%s", line))
    started = time.perf_counter()
    dataset = load_dataset(data)
    out = check_regions_folder(out, inputs=[data, *([config.atlas] if config.atlas else []),
                                            *([config.model] if config.model else [])])
    attribution = (RegionAttribution(config.model, method=config.attribution, device=device) if config.model
                   else None)
    folder = OutputFolder(out, "regions")
    with folder.recording():
        folder.start({"config": asdict(config), "data": str(data)})

        def atlas_for(shape, affine) -> Atlas:
            atlas = (load_atlas(config.atlas, shape, affine) if config.atlas
                     else template_parcellation(shape, affine, n_regions=config.n_regions))
            if atlas.note:
                say(atlas.note)
            return atlas

        atlas, features, kept, skipped, mean, (shape, affine), densities = read_region_features(
            dataset.items, atlas_for, attribution=attribution, progress=progress)
        inside = check_inside(atlas, brain_mask(mean))
        regions = atlas.regions
        say(f"{len(regions)} regions from {atlas.source}; {len(kept)} volumes read"
            + (f", {len(skipped)} skipped" if skipped else ""))
        items = [dataset.items[k] for k in kept]
        y = np.array([it.label for it in items])
        if dataset.has_subjects:
            groups, grouping = np.array([it.subject for it in items]), "subject column of the manifest"
        else:
            groups, grouping = np.arange(len(items)), "one subject per volume (no subject column)"
        read_s = time.perf_counter() - started

        if attribution is None:
            score, ranking = attribution_ranking(features, y)
            attributed = "ANOVA F of the region's features between classes (the larger of mean and std)"
        else:
            score, ranking = class_relevance(densities, y)
            attributed = (f"density of the {attribution.source} of each volume's class in the region (its mean per "
                          "voxel over the mean absolute map of all regions' voxels; 1: an average brain voxel), averaged "
                          "with its sign over each class's volumes; the mean over the classes of its absolute value")
        search = config.search()

        def generation(entry: dict) -> None:
            say(f"generation {entry['generation']}/{config.generations}: best fitness {entry['best_fitness']:.3f} "
                f"(accuracy {entry['best_accuracy']:.3f} with {entry['best_regions']} regions), "
                f"mean {entry['mean_fitness']:.3f}")

        search.fit(features, y, groups=groups, ranking=ranking, progress=generation)
        selected_idx = [int(i) for i in ranking if search.support_[i]]
        order = selected_idx + [int(i) for i in ranking if not search.support_[i]]
        sizes = np.bincount(atlas.labels.ravel(), minlength=regions.max() + 1)
        ranked = [{"rank": k + 1, "region": int(regions[i]), "selected": bool(search.support_[i]),
                   "attribution": float(score[i]), "population_share": float(search.population_share_[i]),
                   "voxels": int(sizes[regions[i]]), "inside_brain": inside[int(regions[i])]}
                  for k, i in enumerate(order)]
        selected = [int(regions[i]) for i in selected_idx]
        planted = planted_comparison(dataset.root, atlas, [r["region"] for r in ranked], selected)

        mask = np.isin(atlas.labels, selected).astype(np.uint8)
        _save_nifti(out / "mask.nii.gz", mask, affine)
        _save_nifti(out / "atlas.nii.gz", atlas.labels, affine)
        write_json(out / "regions.json", ranked)
        header = list(ranked[0])
        write_text(out / "regions.csv", ",".join(header) + "\n"
                   + "".join(",".join(str(row[h]) for h in header) + "\n" for row in ranked))
        results = {
            "command": "regions",
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "data": str(data),
            "config": asdict(config),
            "classes": sorted(set(y.tolist())),
            "n_volumes": len(items),
            "skipped": skipped,
            "grid": {"shape": list(shape), "affine": np.asarray(affine).round(6).tolist()},
            "atlas": {"source": atlas.source, "note": atlas.note, "n_regions": len(regions)},
            "features": list(FEATURES),
            "attribution": attributed,
            "classifier": f"standardised ridge classifier (alpha={search.alpha}) on the selected regions' features",
            "fitness": f"grouped cross-validated accuracy - {search.penalty} x selected regions",
            "cv": f"{search.cv_}; groups: {grouping}",
            "mutation": search.mutation if search.mutation is not None else 1 / len(regions),
            "selected_regions": selected,
            "accuracy": {"mask": search.accuracy_, "whole_brain": search.whole_accuracy_,
                         "difference": search.accuracy_ - search.whole_accuracy_,
                         "note": "both on the same grouped inner folds; the mask was selected on them, so its accuracy "
                                 "is optimistic by the selection"},
            "planted": planted,
            "history": search.history_,
            "n_evaluations": search.n_evaluations_,
            "seconds": {"reading": round(read_s, 2), "total": round(time.perf_counter() - started, 2)},
        }
        write_regions_report(results, ranked, mean, mask, out / "report.html")
        write_json(out / RESULTS, results)
        return results


def format_summary(results: dict) -> list[str]:
    """The lines ``brainmri regions`` prints: the mask, the two accuracies and the known answer."""
    acc = results["accuracy"]
    lines = [f"selected {len(results['selected_regions'])} of {results['atlas']['n_regions']} regions: "
             f"{', '.join(map(str, results['selected_regions'])) or 'none'}",
             f"accuracy with the mask {acc['mask']:.3f} vs the whole brain {acc['whole_brain']:.3f} "
             f"({results['cv']}; the mask's is optimistic by its selection)"]
    planted = results.get("planted")
    if planted and planted["comparable"]:
        lines.append(f"planted regions {', '.join(map(str, planted['planted_regions']))}: "
                     f"{planted['recovered_top']:.0%} among the top {len(planted['planted_regions'])} ranked, "
                     f"{planted['recovered_selected']:.0%} selected")
    elif planted:
        lines.append(f"planted regions not compared: {planted['note']}")
    return lines
