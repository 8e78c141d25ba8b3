"""Regions of a dataset's volumes: a label atlas given by the user, or a parcellation of the template.

A region search needs every volume in one space and a label volume on the
same voxel grid. The user's atlas (``--atlas``: AAL, Harvard-Oxford
maximum-probability labels or any integer label NIfTI in the volumes'
space) is reoriented like the volumes (RAS+) and, when its grid differs
(shape or affine), resampled onto the volumes' grid by nearest neighbour
(``nibabel.processing.resample_from_to``, ``order=0``: labels stay
labels), and the user is told so. Without an atlas, the regions are the
SLIC supervoxels of the MNI152 template that the synthetic volumes use
(:func:`brainmri.data.synthetic3d.make_template`), moved onto the volumes'
grid through the affines the same way, so a search runs out of the box on
volumes in MNI space (and matches ``demo-data --3d``'s regions exactly).

An atlas in another space than the volumes is caught by its labels: every
label must have at least half of its voxels inside the brain of the
volumes (their mean, thresholded at a tenth of its maximum, holes filled,
one voxel of margin); a label below that is refused with its number, and
one below 90 % is reported.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from brainmri.data.synthetic3d import make_template
from brainmri.errors import ConfigError, DataError

logger = logging.getLogger(__name__)

#: A label with a smaller share of its voxels inside the brain mask is refused.
MIN_INSIDE = 0.5
#: A label with a smaller share is reported (a warning).
WARN_INSIDE = 0.9


@dataclass(frozen=True)
class Atlas:
    """Integer regions on the volumes' grid.

    Attributes
    ----------
    labels : ndarray of int32, shape of the volumes
        Region of every voxel, 0 for none.
    source : str
        Where the regions come from (the ``--atlas`` path or the parcellation).
    note : str or None
        What was done to put them on the volumes' grid (resampling), for the user.
    """

    labels: np.ndarray
    source: str
    note: str | None = None

    @property
    def regions(self) -> np.ndarray:
        """Region numbers present on the grid, sorted."""
        return np.unique(self.labels[self.labels > 0])


def _on_grid(labels: np.ndarray, affine: np.ndarray, shape: tuple[int, ...], target: np.ndarray) -> np.ndarray | None:
    """``labels`` (with ``affine``) on the grid ``shape``/``target`` by nearest neighbour; None when already on it."""
    import nibabel as nib
    from nibabel.processing import resample_from_to

    if labels.shape == tuple(shape) and np.allclose(affine, target, atol=1e-3):
        return None
    image = nib.Nifti1Image(labels.astype(np.int32), affine)
    moved = resample_from_to(image, (tuple(shape), target), order=0, mode="constant", cval=0)
    return np.rint(np.asanyarray(moved.dataobj)).astype(np.int32)


def _grid(shape, affine) -> str:
    zooms = np.sqrt((np.asarray(affine)[:3, :3] ** 2).sum(axis=0))
    return f"{'x'.join(map(str, shape))} voxels of {'x'.join(f'{z:.3g}' for z in zooms)} mm"


def load_atlas(path: str | Path, shape: tuple[int, ...], affine: np.ndarray) -> Atlas:
    """Read a label atlas and put it on the volumes' grid.

    Parameters
    ----------
    path : path
        NIfTI label volume (3D, or 4D with one volume), integer values, 0 for
        no region.
    shape : tuple of int
        The volumes' grid (RAS+ voxel order, as :func:`brainmri.data.io.read_image` returns them).
    affine : ndarray, shape (4, 4)
        The volumes' voxel-to-world affine (RAS+).

    Returns
    -------
    Atlas
        With ``note`` set when the atlas was resampled.

    Raises
    ------
    DataError
        Unreadable, not a 3D volume, values that are not whole non-negative
        numbers, no region at all, or no region left on the volumes' grid.
    """
    import nibabel as nib

    path = Path(path)
    try:
        image = nib.as_closest_canonical(nib.load(str(path)))
        data = np.asanyarray(image.dataobj)
    except Exception as exc:  # nibabel raises many kinds; the user needs the file and the cause
        detail = str(exc).splitlines()[0] if str(exc) else "no detail"
        raise DataError(
            f"--atlas {path}: cannot be read as a NIfTI label volume ({type(exc).__name__}: {detail}); "
            "give a .nii or .nii.gz file"
        ) from None
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim != 3:
        raise DataError(
            f"--atlas {path}: a label atlas must be one 3D volume, got shape {data.shape}; for a "
            "probabilistic (4D) atlas use its maximum-probability label volume"
        )
    labels = _whole_labels(path, data)
    if not labels.any():
        raise DataError(f"--atlas {path}: every voxel is 0, so it has no region; give a label volume")
    moved = _on_grid(labels, image.affine, shape, affine)
    note = None
    if moved is not None:
        lost = sorted(set(np.unique(labels[labels > 0]).tolist()) - set(np.unique(moved[moved > 0]).tolist()))
        note = (
            f"--atlas {path}: on another grid ({_grid(labels.shape, image.affine)}) than the volumes "
            f"({_grid(shape, affine)}); resampled onto the volumes' grid by nearest neighbour"
            + (
                f"; label(s) {', '.join(map(str, lost))} fell outside it or between its voxels and are left out"
                if lost
                else ""
            )
        )
        labels = moved
        if not labels.any():
            raise DataError(
                f"--atlas {path}: no region is left on the volumes' grid after resampling: the atlas and "
                "the volumes do not overlap in world coordinates; register them to the same space"
            )
    return Atlas(labels, str(path), note)


def _whole_labels(path: Path, data: np.ndarray) -> np.ndarray:
    """The atlas's values as int32 labels; refused unless they are finite, whole and non-negative."""
    data = np.asarray(data, dtype=np.float64)
    if not np.isfinite(data).all():
        raise DataError(
            f"--atlas {path}: holds NaN or infinite values, so it is not a label volume; give integer "
            "region labels (0 = no region)"
        )
    fractional = data[np.abs(data - np.rint(data)) > 1e-3]
    if fractional.size:
        raise DataError(
            f"--atlas {path}: holds values that are not whole numbers (e.g. {fractional[0]:.4g}), so it "
            "is an image rather than a label volume; give integer region labels (0 = no region)"
        )
    if (data < 0).any():
        raise DataError(
            f"--atlas {path}: holds negative labels (e.g. {data[data < 0][0]:.0f}); labels must be 0 "
            "(no region) or positive region numbers"
        )
    return np.rint(data).astype(np.int32)


def template_parcellation(shape: tuple[int, ...], affine: np.ndarray, *, n_regions: int = 24) -> Atlas:
    """The SLIC parcellation of the MNI152 template on the volumes' grid (the regions of ``demo-data --3d``).

    Parameters
    ----------
    shape, affine
        The volumes' grid, as in :func:`load_atlas`.
    n_regions : int
        Regions asked of SLIC (>= 2).

    Returns
    -------
    Atlas
        The parcellation computed on a cube of ``min(longest side, 64)``
        voxels over the template's head; resampled (with a ``note``) when
        that is not the volumes' grid.
    """
    if isinstance(n_regions, bool) or not isinstance(n_regions, int) or n_regions < 2:
        raise ConfigError(f"--regions must be an integer >= 2, got {n_regions!r}")
    template = make_template(int(min(max(shape), 64)), n_regions=n_regions)
    source = f"SLIC supervoxels of the MNI152 2009 template (nilearn), {n_regions} asked (no --atlas given)"
    moved = _on_grid(template.labels, template.affine, shape, affine)
    if moved is None:
        return Atlas(template.labels.astype(np.int32), source)
    if not moved.any():
        raise DataError(
            "the volumes do not overlap the MNI152 template in world coordinates, so the template's "
            "regions do not apply; register the volumes to MNI space or give --atlas in their space"
        )
    return Atlas(
        moved,
        source,
        f"the template's parcellation ({_grid(template.labels.shape, template.affine)}) was "
        f"resampled onto the volumes' grid ({_grid(shape, affine)}) by nearest neighbour; the volumes must "
        "be in MNI space for its regions to mean anything",
    )


def brain_mask(mean_volume: np.ndarray) -> np.ndarray:
    """Voxels of the brain: the mean volume above a tenth of its maximum, holes filled, dilated by one voxel."""
    from scipy.ndimage import binary_dilation, binary_fill_holes

    return binary_dilation(binary_fill_holes(mean_volume > 0.1 * mean_volume.max()))


def check_inside(atlas: Atlas, mask: np.ndarray) -> dict[int, float]:
    """Share of each region's voxels inside ``mask``; refuse regions mostly outside it.

    Returns
    -------
    dict
        ``{region: share}`` for every region.

    Raises
    ------
    DataError
        A region has less than :data:`MIN_INSIDE` of its voxels inside.
    """
    regions = atlas.regions
    size = np.bincount(atlas.labels.ravel(), minlength=regions.max() + 1)
    inside = np.bincount(atlas.labels[mask], minlength=regions.max() + 1)
    share = {int(r): float(inside[r] / size[r]) for r in regions}
    outside = {r: s for r, s in share.items() if s < MIN_INSIDE}
    if outside:
        shown = ", ".join(f"{r} ({s:.0%} inside)" for r, s in list(outside.items())[:10])
        raise DataError(
            f"atlas {atlas.source}: {len(outside)} label(s) lie mostly outside the brain of the volumes: "
            f"{shown}; the atlas is not in the volumes' space: register it (or the volumes) to the same "
            "template, or remove those labels"
        )
    partly = {r: s for r, s in share.items() if s < WARN_INSIDE}
    if partly:
        logger.warning(
            "atlas %s: %d label(s) lie partly outside the brain of the volumes: %s",
            atlas.source,
            len(partly),
            ", ".join(f"{r} ({s:.0%} inside)" for r, s in list(partly.items())[:10]),
        )
    return share
