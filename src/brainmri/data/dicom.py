"""DICOM: one file (a slice, or a multi-frame stack), and a DICOM series read as one volume.

A **series** is what a scanner writes for one acquisition: one file per
slice, all sharing a ``SeriesInstanceUID``. brainmri reads it as a volume,
like a NIfTI file:

* a folder whose DICOM files hold one series of two or more single-frame
  slices is one item, named by the folder;
* a folder holding several such series is one item per series, each named
  ``folder/<SeriesInstanceUID>`` (a name, not a file on disk);
* a DICOM file that is alone in its series (or has no ``SeriesInstanceUID``)
  stays an image of its own, as before.

The slices are sorted by their position along the slice normal
(``ImagePositionPatient`` projected on the cross product of the two
``ImageOrientationPatient`` directions), and the volume is put in RAS+
voxel order (``nibabel.as_closest_canonical``, as for NIfTI), so that the
same scan read from DICOM or from its NIfTI conversion gives the same array.
Refused, each with its reason: several files at one position (a 4D series:
echoes, time points, diffusion directions), slices of different size or
orientation (a mixed series), unevenly spaced slices (missing files), slices
without position or orientation, and multi-frame or colour files in a series.

Why pydicom and numpy rather than a series reader: SimpleITK's
``ImageSeriesReader`` (GDCM's sorter) is an optional extra here and stacks a
4D or gappy series without complaint; ``nibabel.nicom`` calls itself
experimental; dicom2nifti writes NIfTI files to disk. Sorting by the
projection on the normal is the rule all three follow, and the checks are
the part a user needs to see, in our one-line errors.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from brainmri.data.formats import ImageMeta, check_pixel_count, image_format, one_line
from brainmri.errors import DataError

#: Fewest single-frame files of one ``SeriesInstanceUID`` read as a volume (one file alone is a 2D image).
MIN_SERIES_SLICES = 2

#: A DICOM UID: digits and dots (PS3.5 9.1), at most 64 characters.
_UID = re.compile(r"[0-9]+(\.[0-9]+)+")

#: Largest relative difference between slice gaps of one series (beyond it, slices are missing).
_GAP_TOLERANCE = 0.05


def read_dicom_file(path: Path, max_pixels: int) -> tuple[np.ndarray, ImageMeta]:
    """One DICOM file: ``(H, W)``, or ``(frames, H, W)`` for a multi-frame file.

    Rescale slope and intercept are applied and MONOCHROME1 is inverted.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path)
    except (InvalidDicomError, OSError, ValueError, EOFError) as exc:
        raise DataError(f"{path}: not a readable DICOM file ({one_line(exc)}); re-export or remove it") from None
    if "PixelData" not in ds:
        raise DataError(
            f"{path}: DICOM file has no pixel data (a report or structured file?); remove it from the dataset"
        )
    try:
        declared = (
            int(ds.get("NumberOfFrames", 1) or 1),
            int(ds.Rows),
            int(ds.Columns),
            int(ds.get("SamplesPerPixel", 1) or 1),
        )
    except (AttributeError, TypeError, ValueError):
        raise DataError(f"{path}: DICOM file without a valid Rows/Columns header; re-export or remove it") from None
    check_pixel_count(path, tuple(side for side in declared if side != 1) or (1,), max_pixels)
    raw, array = _pixels(path, ds)
    spacing = ds.get("PixelSpacing")
    meta = ImageMeta(
        str(path),
        "dicom",
        tuple(raw.shape),
        str(ds.get("PhotometricInterpretation", "MONOCHROME2")),
        int(ds.get("BitsStored", 8 * raw.dtype.itemsize)),
        tuple(float(s) for s in spacing) if spacing is not None else None,
        {"frames": int(ds.get("NumberOfFrames", 1))},
    )
    return array, meta


def _pixels(path: Path, ds) -> tuple[np.ndarray, np.ndarray]:
    """The stored pixels of ``ds`` and their values (modality LUT applied, MONOCHROME1 inverted), float32."""
    from pydicom.pixels import apply_modality_lut

    try:
        raw = ds.pixel_array
    except Exception as exc:  # pydicom raises many types for broken pixel data
        raise DataError(
            f"{path}: DICOM pixel data cannot be decoded ({one_line(exc)}); re-export or remove it"
        ) from None
    array = np.asarray(apply_modality_lut(raw, ds), dtype=np.float32)
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2"))
    if photometric == "MONOCHROME1":
        array = array.max() + array.min() - array
    elif photometric not in ("MONOCHROME2",):
        raise DataError(f"{path}: DICOM photometric interpretation {photometric} is not grayscale; convert it first")
    return raw, array


# --------------------------------------------------------------------------------------------------- finding series


def _series_uid(path: Path) -> str | None:
    """The ``SeriesInstanceUID`` of a single-frame DICOM file, or None (unreadable, multi-frame, or none recorded)."""
    import pydicom

    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, specific_tags=["SeriesInstanceUID", "NumberOfFrames"])
    except Exception:  # noqa: BLE001 - an unreadable file stays an item of its own; reading it reports why
        return None
    if int(ds.get("NumberOfFrames", 1) or 1) > 1:
        return None
    uid = str(ds.get("SeriesInstanceUID", "") or "").strip()
    return uid or None


def _dicom_files(folder: Path) -> list[Path]:
    return sorted(
        p for p in folder.iterdir() if not p.name.startswith(".") and image_format(p) == "dicom" and p.is_file()
    )


@lru_cache(maxsize=256)
def _series_in(folder: str, mtime_ns: int) -> dict[str, tuple[Path, ...]]:
    """``{SeriesInstanceUID: files}`` of the series of ``folder`` (memoised on its modification time)."""
    groups: dict[str, list[Path]] = {}
    for path in _dicom_files(Path(folder)):
        uid = _series_uid(path)
        if uid is not None:
            groups.setdefault(uid, []).append(path)
    return {uid: tuple(files) for uid, files in sorted(groups.items()) if len(files) >= MIN_SERIES_SLICES}


def series_in(folder: Path) -> dict[str, tuple[Path, ...]]:
    """The DICOM series of ``folder``: ``{SeriesInstanceUID: its files}`` (only series of two or more slices)."""
    return dict(_series_in(str(folder), os.stat(folder).st_mtime_ns))


def series_items(folder: Path, files: list[Path]) -> list[Path]:
    """The items among ``files`` (the files of ``folder``): each series as one path, other files as themselves.

    A folder with one series gives the folder; with several, ``folder/<SeriesInstanceUID>`` for each.
    """
    if sum(image_format(f) == "dicom" for f in files) < MIN_SERIES_SLICES:
        return files
    series = series_in(folder)
    if not series:
        return files
    members = {f for group in series.values() for f in group}
    names = [folder] if len(series) == 1 else [folder / uid for uid in series]
    return [f for f in files if f not in members] + names


@dataclass(frozen=True)
class Series:
    """A DICOM series named by an item path: its folder, UID and files."""

    path: Path
    uid: str
    files: tuple[Path, ...]


def find_series(path: str | Path) -> Series | None:
    """The series ``path`` names (a folder holding one, or ``folder/<SeriesInstanceUID>``), or None for a file.

    A folder without a series is None too: reading it says it is a folder.

    Raises
    ------
    DataError
        ``path`` is a folder holding several series (the message names them).
    """
    path = Path(path)
    if path.is_dir():
        series = series_in(path)
        if len(series) == 1:
            ((uid, files),) = series.items()
            return Series(path, uid, files)
        if not series:
            return None
        raise DataError(
            f"{path}: the folder holds {len(series)} DICOM series; name one as {path}/<SeriesInstanceUID> "
            f"(here: {', '.join(list(series)[:3])}{', ...' if len(series) > 3 else ''})"
        )
    if _UID.fullmatch(path.name) and not os.path.lexists(path) and path.parent.is_dir():
        files = series_in(path.parent).get(path.name)
        if files:
            return Series(path, path.name, files)
    return None


# --------------------------------------------------------------------------------------------------- reading series


def read_series(series: Series, max_pixels: int) -> tuple[np.ndarray, ImageMeta]:
    """The volume of ``series``, in RAS+ voxel order, float32, with its metadata.

    Raises
    ------
    DataError
        A file unreadable, or the series 4D, mixed, gappy, without geometry or above ``max_pixels``.
    """
    import pydicom

    headers = []
    for file in series.files:
        try:
            headers.append(pydicom.dcmread(file, stop_before_pixels=True))
        except Exception as exc:  # noqa: BLE001 - pydicom raises many types for a broken file
            raise DataError(f"{series.path}: slice {file.name} is not readable DICOM ({one_line(exc)})") from None
    geometry = _geometry(series, headers)
    check_pixel_count(series.path, (geometry.rows, geometry.columns, len(series.files)), max_pixels)
    slices = []
    for k in geometry.order:
        ds = pydicom.dcmread(series.files[k])
        _, array = _pixels(series.files[k], ds)
        slices.append(array.T)  # (columns, rows): the first axis runs along the row direction
    return _canonical(series, np.stack(slices, axis=-1), geometry, headers[0])


@dataclass(frozen=True)
class _Geometry:
    rows: int
    columns: int
    order: list[int]  # file indices sorted along the normal
    affine: np.ndarray  # voxel (column, row, slice) -> RAS mm


def _geometry(series: Series, headers: list) -> _Geometry:
    """Check that ``headers`` make one 3D grid and return its order and affine."""
    where = f"{series.path}: DICOM series {series.uid}"
    try:
        sizes = {(int(h.Rows), int(h.Columns)) for h in headers}
        orientations = np.array([[float(v) for v in h.ImageOrientationPatient] for h in headers])
        positions = np.array([[float(v) for v in h.ImagePositionPatient] for h in headers])
        spacing = [float(v) for v in headers[0].get("PixelSpacing", [1.0, 1.0])]
    except (AttributeError, TypeError, ValueError):
        raise DataError(
            f"{where} has slices without ImagePositionPatient/ImageOrientationPatient, so they cannot be put in "
            "order; export the series with its geometry, or convert it to NIfTI (dcm2niix)"
        ) from None
    if any(int(h.get("NumberOfFrames", 1) or 1) > 1 for h in headers):
        raise DataError(f"{where} mixes multi-frame files with slices; give the multi-frame file alone")
    if len(sizes) > 1 or np.abs(orientations - orientations[0]).max() > 1e-3:
        what = "sizes " + ", ".join(f"{r}x{c}" for r, c in sorted(sizes)) if len(sizes) > 1 else "orientations"
        raise DataError(
            f"{where} mixes slices of different {what} (a localiser or several acquisitions in one series); "
            "move the odd slices to another folder"
        )
    row, col = orientations[0][:3], orientations[0][3:]
    normal = np.cross(row, col)
    along = positions @ normal
    order = [int(k) for k in np.argsort(along, kind="stable")]
    steps = np.diff(along[order])
    if np.any(np.abs(steps) < 1e-3):
        n_positions = len(np.unique(np.round(along, 3)))
        raise DataError(
            f"{where} has {len(headers)} slices at {n_positions} positions: a 4D series (echoes, time points or "
            "diffusion directions); split it into one folder per volume, or convert it with dcm2niix"
        )
    gap = float(np.median(steps))
    if np.abs(steps - gap).max() > _GAP_TOLERANCE * gap:
        raise DataError(
            f"{where} has unevenly spaced slices (gaps from {steps.min():.3g} to {steps.max():.3g} mm): slices are "
            "missing; export the whole series"
        )
    (rows, columns) = sizes.pop()
    lps = np.eye(4)
    lps[:3, 0] = row * spacing[1]  # along a row: the column index, PixelSpacing's second value
    lps[:3, 1] = col * spacing[0]
    lps[:3, 2] = normal * gap
    lps[:3, 3] = positions[order[0]]
    return _Geometry(rows, columns, order, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps)  # DICOM's LPS to RAS


def _canonical(series: Series, volume: np.ndarray, geometry: _Geometry, first) -> tuple[np.ndarray, ImageMeta]:
    import nibabel as nib

    image = nib.as_closest_canonical(nib.Nifti1Image(volume, geometry.affine))
    array = np.asarray(image.dataobj, dtype=np.float32)
    zooms = tuple(float(z) for z in image.header.get_zooms()[:3])
    meta = ImageMeta(
        str(series.path),
        "dicom",
        (geometry.rows, geometry.columns, volume.shape[-1]),
        "volume",
        int(first.get("BitsStored", 16)),
        zooms,
        {"series": series.uid, "slices": volume.shape[-1]},
    )
    return array, meta
