"""What the region search knows of each region of each volume: its intensity features, and where attribution fell.

:func:`read_region_features` reads every volume once, on the atlas's grid,
and gives the mean and standard deviation of each region
(:func:`region_features`) and, with a ``cnn3d`` bundle
(:class:`RegionAttribution`), the density of its attribution maps per region
(:func:`attribution_density`), from which the regions are ranked
(:func:`attribution_ranking`, :func:`class_relevance`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from brainmri.data.io import read_image
from brainmri.data.preprocess import normalize_intensity
from brainmri.data.volumes import VolumePreprocess
from brainmri.errors import ConfigError, DataError
from brainmri.explain.view import ModelView
from brainmri.models.bundle import load_model
from brainmri.regions.atlas import Atlas

logger = logging.getLogger(__name__)


#: Region features, in their order in the feature array.
FEATURES = ("mean", "std")


#: ``--attribution`` maps of a ``--model`` network, the default first: a method of
#: :mod:`brainmri.explain.attribution` and its settings (occlusion would take thousands of passes per volume).
NETWORK_ATTRIBUTIONS = {
    "gradient": ("saliency", {"absolute": False}),
    "integrated-gradients": ("integrated-gradients", {}),
    "gradcam": ("gradcam", {}),
}


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
    square = np.bincount(flat, weights=values**2, minlength=regions.max() + 1)[regions] / count
    return np.stack([mean, np.sqrt(np.maximum(square - mean**2, 0))], axis=1)


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
            raise ConfigError(
                f"--model {model}: is a {name} bundle; the attribution "
                "ranking needs a network on volumes (brainmri train --method cnn3d), or leave --model "
                "out for the ANOVA ranking"
            )
        name, settings = NETWORK_ATTRIBUTIONS[method]
        self.attribution = self.view.attribution(name, **settings)
        self.classes = [str(c) for c in self.view.bundle.classes_]
        self.source = f"{method} maps of {model} ({self.view.bundle.manifest['method']['name']})"

    def __call__(self, volume: np.ndarray, label: str, labels: np.ndarray, regions: np.ndarray) -> np.ndarray:
        """Densities ``(R,)`` of the map of class ``label`` of ``volume`` in each region (0 when the map is 0)."""
        import torch

        if label not in self.classes:
            raise DataError(
                f"class '{label}' is not one of the model's classes ({', '.join(self.classes)}); the "
                "attribution ranking needs a model trained on these classes"
            )
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


def read_region_features(
    items,
    atlas_for: Callable[[tuple, np.ndarray], Atlas],
    *,
    attribution: RegionAttribution | None = None,
    progress: Callable[[int], None] | None = None,
):
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
                raise DataError(
                    f"{item.path}: not a 3D volume (shape {volume.shape}); brainmri regions needs NIfTI "
                    "volumes in one space"
                )
            shape, affine = _volume_grid(item.path)
            if grid is not None and (shape != grid[0] or not np.allclose(affine, grid[1], atol=1e-3)):
                raise DataError(
                    f"{item.path}: on another voxel grid ({shape}) than the first volume ({grid[0]}); "
                    "resample every volume to one space (e.g. MNI) first"
                )
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
    return (
        atlas,
        np.stack(features),
        kept,
        skipped,
        (total / len(kept)).astype(np.float32),
        grid,
        np.stack(densities) if densities else None,
    )
