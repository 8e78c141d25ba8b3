"""Synthetic brain volumes with a known answer: regional atrophy planted in chosen regions of a template.

The anatomy is the MNI152 T1 template (ICBM 2009, 2 mm) that nilearn ships
inside its package (``nilearn.datasets.load_mni152_template``: no download),
cropped to the head and resampled to ``size`` voxels a side. Its regions
come from a parcellation computed on the template, because nilearn ships no
atlas offline: SLIC supervoxels (Achanta et al. 2012,
``skimage.segmentation.slic``) of the brain mask, compact enough (spatial
distance weighted over intensity) to be blobs of similar size that follow
the tissue boundaries a little, numbered 1..R (0 outside the brain).

Every subject is the template under

* a smooth random deformation (Gaussian-filtered random displacements of
  about 2 % of the side) and a global scaling of the head (0.95-1.05),
  so that no two subjects line up voxel for voxel;
* for the ``atrophy`` class only, regional atrophy in the planted regions
  (the same for every subject of a seed): the tissue of each region shrinks
  towards the region's centre (by 20-35 %, a radial displacement weighted by
  the smoothed region) and loses 15-30 % of its intensity;
* a global intensity scale (0.9-1.1) and Rician noise.

The planted regions, the label volume and, per atrophy subject, the mask of
the planted regions as deformed into that subject (the known answer for
attribution maps, ``brainmri explain --masks``) are written beside the
volumes in hidden folders, which the dataset listing ignores.

References
----------
V. S. Fonov, A. C. Evans, R. C. McKinstry, C. R. Almli and D. L. Collins,
"Unbiased nonlinear average age-appropriate brain templates from birth to
adulthood", NeuroImage 47:S102, 2009. DOI 10.1016/S1053-8119(09)70884-5

R. Achanta, A. Shaji, K. Smith, A. Lucchi, P. Fua and S. Susstrunk, "SLIC
superpixels compared to state-of-the-art superpixel methods", IEEE TPAMI
34(11):2274-2282, 2012. DOI 10.1109/TPAMI.2012.120
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainmri.data.synthetic import MASKS_FOLDER, staged_folder
from brainmri.data.volumes import VolumePreprocess
from brainmri.errors import ConfigError
from brainmri.files import write_json

#: Classes of the synthetic volumes: regional atrophy (as in Alzheimer's disease) and controls.
CLASSES_3D = ("atrophy", "control")
#: Hidden folder of ``write_demo_volumes``'s output with the label volume and the planted-region list.
REGIONS_FOLDER = ".regions"
ATLAS_FILE = "atlas.nii.gz"
PLANTED_FILE = "planted_regions.json"


@dataclass(frozen=True)
class Template:
    """The template on the output grid.

    Attributes
    ----------
    volume : ndarray of float32, shape (size, size, size)
        T1 intensities in [0, 1].
    labels : ndarray of int16, same shape
        Region of every voxel (1..R), 0 outside the brain.
    affine : ndarray, shape (4, 4)
        Voxel to MNI millimetres.
    """

    volume: np.ndarray
    labels: np.ndarray
    affine: np.ndarray

    @property
    def regions(self) -> np.ndarray:
        """Region numbers, sorted."""
        return np.unique(self.labels[self.labels > 0])


def make_template(size: int = 32, *, n_regions: int = 24) -> Template:
    """The MNI152 template cropped to the head, on a ``size``-cube grid, and its SLIC parcellation.

    Parameters
    ----------
    size : int
        Voxels a side.
    n_regions : int
        Regions asked of SLIC (it returns about as many; deterministic).

    Returns
    -------
    Template
    """
    from skimage.segmentation import slic

    try:
        from nilearn.datasets import load_mni152_brain_mask, load_mni152_template
    except ImportError:
        raise ConfigError(
            "synthetic volumes (demo-data --3d) need nilearn, whose package holds the MNI152 template; "
            "it is not installed: pip install 'brainmri[volumes]'"
        ) from None

    image = load_mni152_template(resolution=2)
    brain = load_mni152_brain_mask(resolution=2).get_fdata() > 0
    raw = image.get_fdata().astype(np.float32)
    grid = VolumePreprocess(size=size, clip_percentiles=None)
    box = grid.box(raw)
    volume = np.clip(grid.resample(raw, box), 0, None)
    volume /= volume.max()
    mask = grid.resample(brain.astype(np.float32), box, order=0) > 0.5
    labels = slic(
        volume,
        n_segments=n_regions,
        compactness=0.2,
        mask=mask,
        channel_axis=None,
        start_label=1,
        enforce_connectivity=True,
    )
    scale = np.array([(s.stop - s.start) / size for s in box])
    start = np.array([s.start for s in box])
    to_raw = np.eye(4)
    to_raw[:3, :3] = np.diag(scale)
    to_raw[:3, 3] = start + 0.5 * scale - 0.5  # voxel centres of the new grid in the template's voxels
    return Template(volume.astype(np.float32), labels.astype(np.int16), image.affine @ to_raw)


def plant_regions(template: Template, n: int, rng: np.random.Generator) -> list[int]:
    """``n`` regions drawn among those larger than the median region (small ones would carry little signal)."""
    numbers, sizes = np.unique(template.labels[template.labels > 0], return_counts=True)
    large = numbers[sizes >= np.median(sizes)]
    if not 1 <= n <= len(large):
        raise ConfigError(f"--planted must be between 1 and {len(large)} (regions of at least median size), got {n!r}")
    return sorted(int(r) for r in rng.choice(large, size=n, replace=False))


def synthetic_volume(
    template: Template,
    planted: list[int],
    atrophy: bool,
    rng: np.random.Generator,
    *,
    deform: float = 0.02,
    noise: float = 0.03,
) -> tuple[np.ndarray, np.ndarray]:
    """One subject: the deformed template, with atrophy of the ``planted`` regions when ``atrophy``.

    Parameters
    ----------
    template : Template
    planted : list of int
        Region numbers of ``template.labels``.
    atrophy : bool
    rng : numpy.random.Generator
    deform : float
        Typical size of the random deformation, as a share of the side.
    noise : float
        Standard deviation of the Rician noise.

    Returns
    -------
    volume : ndarray of float32, shape of the template, values >= 0
    mask : ndarray of bool
        The planted regions as deformed into this subject (all False for a
        control: nothing was planted).
    """
    from scipy.ndimage import gaussian_filter, map_coordinates

    shape = template.volume.shape
    grid = np.indices(shape, dtype=np.float32)
    centre = (np.asarray(shape, dtype=np.float32) - 1) / 2
    coords = centre[:, None, None, None] + (grid - centre[:, None, None, None]) / rng.uniform(0.95, 1.05)
    for axis in range(3):
        field = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma=shape[0] / 6)
        coords[axis] += deform * shape[0] * field / (field.std() + 1e-8)
    loss = np.zeros(shape, dtype=np.float32)
    if atrophy:
        for region in planted:
            inside = template.labels == region
            weight = gaussian_filter(inside.astype(np.float32), sigma=1.0)
            middle = np.array([c.mean() for c in np.nonzero(inside)], dtype=np.float32)[:, None, None, None]
            # Sampling farther from the centre draws the region's tissue inwards: the region shrinks.
            coords += rng.uniform(0.2, 0.35) * weight * (grid - middle)
            loss = np.maximum(loss, rng.uniform(0.15, 0.3) * weight)
    volume = map_coordinates(template.volume * (1 - loss), coords, order=1, mode="constant")
    mask = (
        map_coordinates(np.isin(template.labels, planted).astype(np.float32), coords, order=0) > 0.5
        if atrophy
        else np.zeros(shape, dtype=bool)
    )
    volume *= rng.uniform(0.9, 1.1)
    volume = np.hypot(volume + rng.normal(0, noise, shape), rng.normal(0, noise, shape))
    return volume.astype(np.float32), mask


def write_demo_volumes(
    out: str | Path,
    *,
    n: int = 20,
    size: int = 32,
    n_regions: int = 24,
    planted: int = 3,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write a dataset folder of synthetic volumes with their known answer.

    ``out/<class>/sub-<class>NNN.nii.gz`` for :data:`CLASSES_3D` (one volume
    per subject, float32, MNI affine); ``out/.regions/atlas.nii.gz`` (the
    label volume, int16, on the volumes' grid) and
    ``out/.regions/planted_regions.json`` (the planted regions and how
    they were planted); ``out/.masks/atrophy/<name>`` (the planted regions
    of each atrophy subject, uint8 0/1: ``brainmri explain --masks``).

    Parameters
    ----------
    out : path
        Folder to create; it must not exist or be empty.
    n : int
        Subjects per class.
    size : int
        Voxels a side (>= 16).
    n_regions : int
        Regions of the parcellation asked of SLIC.
    planted : int
        Regions carrying the atrophy.
    seed : int
        Same seed, same volumes and planted regions.

    Returns
    -------
    Path
        ``out``, written completely or not at all.
    """
    import nibabel as nib

    for name, value, low in (("--n", n, 1), ("--size", size, 16), ("--regions", n_regions, 2)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    template = make_template(size, n_regions=n_regions)
    chosen = plant_regions(template, planted, np.random.default_rng([seed, 999]))
    with staged_folder(out) as tmp:
        (tmp / REGIONS_FOLDER).mkdir()
        (tmp / MASKS_FOLDER / CLASSES_3D[0]).mkdir(parents=True)
        nib.save(nib.Nifti1Image(template.labels, template.affine), tmp / REGIONS_FOLDER / ATLAS_FILE)
        write_json(tmp / REGIONS_FOLDER / PLANTED_FILE, _planted_record(template, chosen, n, size, n_regions, seed))
        for c, label in enumerate(CLASSES_3D):
            (tmp / label).mkdir()
            for k in range(n):
                volume, mask = synthetic_volume(
                    template, chosen, label == CLASSES_3D[0], np.random.default_rng([seed, c, k])
                )
                name = f"{label}/sub-{label}{k:03d}.nii.gz"
                nib.save(nib.Nifti1Image(volume, template.affine), tmp / name)
                if mask.any():
                    nib.save(nib.Nifti1Image(mask.astype(np.uint8), template.affine), tmp / MASKS_FOLDER / name)
                if progress:
                    progress(1)
    return Path(out)


def _planted_record(template, chosen: list, n: int, size: int, n_regions: int, seed: int) -> dict:
    """``planted_regions.json``: the planted regions of the demo volumes and how they were planted."""
    sizes = {int(r): int((template.labels == r).sum()) for r in template.regions}
    return {
        "planted_regions": chosen,
        "affected_class": CLASSES_3D[0],
        "control_class": CLASSES_3D[1],
        "atlas": f"{REGIONS_FOLDER}/{ATLAS_FILE}",
        "n_regions": len(sizes),
        "region_voxels": sizes,
        "parcellation": f"SLIC supervoxels of the MNI152 2009 template (nilearn), {n_regions} asked",
        "signal": "atrophy subjects: each planted region shrinks towards its centre by 20-35 % and loses 15-30 % "
        "of its intensity; every subject: smooth random deformation, head scale 0.95-1.05, intensity "
        "scale 0.9-1.1, Rician noise",
        "size": size,
        "seed": seed,
        "n_per_class": n,
    }
