"""Shared fixtures: a small synthetic dataset and writers of tiny image files.

Writers are exposed as fixtures that return a function, so a test asks for
exactly the formats it needs. Every writer creates missing parent folders and
returns the path it wrote.
"""

from __future__ import annotations

import io
import logging
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from brainmri.data.synthetic import write_demo_data


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """In CI (``BRAINMRI_CI`` set by .ci/run, which installs them), a ``system`` test that skips is a failure."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get("BRAINMRI_CI") and item.get_closest_marker("system"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where it must run: {reason}"


#: The demo dataset used throughout: 4 classes x 6 images of 64 x 64 pixels.
DEMO_N, DEMO_SIZE, DEMO_SEED = 6, 64, 0


def _write_pil(path, array, **save_kwargs) -> Path:
    """Write ``array`` with Pillow; the suffix picks the format.

    uint8 (H, W) -> mode L, uint16 (H, W) -> I;16, uint8 (H, W, 3) -> RGB.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array)).save(path, **save_kwargs)
    return path


def _jpeg_roundtrip(array: np.ndarray, quality: int = 90) -> np.ndarray:
    """What ``array`` (uint8) looks like after a JPEG re-encode at ``quality``."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="JPEG", quality=quality)
    buffer.seek(0)
    with Image.open(buffer) as im:
        return np.asarray(im)


def _write_dicom(
    path,
    pixels,
    *,
    photometric: str = "MONOCHROME2",
    slope: float | None = None,
    intercept: float | None = None,
    spacing: tuple[float, float] | None = None,
    pixel_data: bool = True,
    **attributes,
) -> Path:
    """Write a minimal MR DICOM file (Explicit VR Little Endian, 16-bit unsigned, 12 bits stored).

    ``pixels`` of shape (frames, H, W) writes a multi-frame file; ``pixel_data=False`` writes
    a DICOM with no PixelData element (like a structured report). ``attributes`` are further
    elements by keyword (``SeriesInstanceUID=...``, ``ImagePositionPatient=[...]``).
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, MRImageStorage, generate_uid

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    if pixel_data:
        pixels = np.asarray(pixels, dtype=np.uint16)
        ds.Rows, ds.Columns = pixels.shape[-2:]
        if pixels.ndim == 3:
            ds.NumberOfFrames = pixels.shape[0]
        ds.SamplesPerPixel = 1
        ds.PhotometricInterpretation = photometric
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
        ds.PixelRepresentation = 0
        if slope is not None:
            ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
        if spacing is not None:
            ds.PixelSpacing = list(spacing)
        ds.PixelData = pixels.tobytes()
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    ds.save_as(path, enforce_file_format=True)
    return path


def _write_dicom_series(
    folder,
    volume,
    *,
    row=(1.0, 0.0, 0.0),
    column=(0.0, 1.0, 0.0),
    uid: str | None = None,
    seed: int = 0,
    skip: tuple[int, ...] = (),
) -> str:
    """Write the RAS volume ``volume`` (voxel i, j, k at i, j, k mm) as a DICOM series; return its SeriesInstanceUID.

    ``row`` and ``column`` are the ImageOrientationPatient directions in DICOM's LPS space (axis-aligned); one
    file per slice along their normal, named in a shuffled order so that the names do not give the order.
    ``skip`` leaves those slice indices out (a series with missing slices).
    """
    from pydicom.uid import generate_uid

    folder = Path(folder)
    uid = uid or generate_uid()
    flip = np.array([-1.0, -1.0, 1.0])  # LPS <-> RAS
    row, column = np.asarray(row, float), np.asarray(column, float)
    normal = np.cross(row, column)
    steps = [flip * d for d in (row, column, normal)]  # RAS voxel steps of a column, a row, a slice
    shape = np.array(volume.shape)
    sizes = [int(shape[np.argmax(np.abs(step))]) for step in steps]
    origin = np.sum([np.where(step < 0, shape - 1, 0) * (np.abs(step) > 0.5) for step in steps], axis=0)
    names = np.random.default_rng(seed).permutation(sizes[2])
    c, r = np.meshgrid(np.arange(sizes[0]), np.arange(sizes[1]))
    for k in range(sizes[2]):
        if k in skip:
            continue
        index = (
            origin[:, None, None]
            + steps[0][:, None, None] * c
            + steps[1][:, None, None] * r
            + steps[2][:, None, None] * k
        )
        pixels = volume[tuple(np.rint(index).astype(int))]
        _write_dicom(
            folder / f"IM{names[k]:04d}.dcm",
            pixels,
            spacing=(1.0, 1.0),
            SeriesInstanceUID=uid,
            ImageOrientationPatient=[*map(float, row), *map(float, column)],
            ImagePositionPatient=[float(v) for v in flip * (origin + steps[2] * k)],
            InstanceNumber=int(names[k]) + 1,
        )
    return uid


def _write_nifti(path, volume, zooms=(1.0, 1.0, 1.0)) -> Path:
    """Write ``volume`` as NIfTI-1 with voxel size ``zooms`` (``.nii`` or ``.nii.gz``)."""
    import nibabel as nib

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    volume = np.asarray(volume)
    nib.Nifti1Image(volume, np.diag([*zooms, 1.0])).to_filename(path)
    return path


@pytest.fixture
def listing():
    """``listing(root)``: ``{relative path: (size, mtime_ns)}`` of everything below ``root``, hidden entries included."""

    def snapshot(root: Path) -> dict[str, tuple[int, int]]:
        return {
            p.relative_to(root).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(root.rglob("*"))
        }

    return snapshot


@pytest.fixture
def write_pil():
    return _write_pil


@pytest.fixture(scope="session")
def write_dicom():
    return _write_dicom


@pytest.fixture(scope="session")
def write_dicom_series():
    return _write_dicom_series


@pytest.fixture(scope="session")
def write_nifti():
    return _write_nifti


@pytest.fixture
def jpeg_roundtrip():
    return _jpeg_roundtrip


@pytest.fixture(scope="session")
def demo_source(tmp_path_factory) -> Path:
    """The demo dataset, written once per session. Read-only: copy it (``demo_data``) to change it."""
    return write_demo_data(tmp_path_factory.mktemp("demo") / "data", n=DEMO_N, seed=DEMO_SEED, size=DEMO_SIZE)


@pytest.fixture(scope="session")
def volume_source(tmp_path_factory) -> Path:
    """Synthetic volumes (``demo-data --3d``): 2 classes x 6 subjects of 16^3 voxels, with ``.regions`` and
    ``.masks``. Read-only."""
    from brainmri.data.synthetic3d import write_demo_volumes

    return write_demo_volumes(tmp_path_factory.mktemp("volumes") / "data", n=6, size=16, n_regions=12, seed=DEMO_SEED)


@pytest.fixture
def demo_data(demo_source, tmp_path) -> Path:
    """A private, writable copy of the demo dataset: ``<class>/<class>_NNNN.png``."""
    return Path(shutil.copytree(demo_source, tmp_path / "data"))


@pytest.fixture
def load_gray():
    """Read an 8-bit image file as a uint8 array."""

    def load(path) -> np.ndarray:
        with Image.open(path) as im:
            return np.asarray(im)

    return load


@pytest.fixture
def leaky_split(demo_source, tmp_path) -> Path:
    """A Training/Testing dataset where one test image copies a training image exactly
    and another is a JPEG re-encode (quality 90) of a different training image.

    Training holds images 0-3 of each demo class, Testing images 4-5, plus
    ``Testing/glioma/copy_of_glioma_0000.png`` and ``Testing/notumor/reencoded_notumor_0001.jpg``.
    """
    return _write_leaky_split(demo_source, tmp_path / "split")


@pytest.fixture(scope="session")
def leaky_split_source(demo_source, tmp_path_factory) -> Path:
    """``leaky_split`` written once per session. Read-only: use ``leaky_split`` to change it."""
    return _write_leaky_split(demo_source, tmp_path_factory.mktemp("leaky") / "split")


def _write_leaky_split(demo_source: Path, root: Path) -> Path:
    for cls_dir in sorted(p for p in demo_source.iterdir() if p.is_dir()):
        for k, src in enumerate(sorted(cls_dir.glob("*.png"))):
            dest = root / ("Training" if k < 4 else "Testing") / cls_dir.name / src.name
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dest)
    shutil.copy(root / "Training/glioma/glioma_0000.png", root / "Testing/glioma/copy_of_glioma_0000.png")
    with Image.open(root / "Training/notumor/notumor_0001.png") as im:
        original = np.asarray(im)
    _write_pil(root / "Testing/notumor/reencoded_notumor_0001.jpg", original, quality=90)
    return root


@pytest.fixture(scope="session")
def copies_elsewhere(demo_source, tmp_path_factory) -> Path:
    """A second dataset: 3 fresh demo images per class (another seed) plus copies of ``demo_source`` images.

    * ``glioma/copy_of_glioma_0000.jpg``: resized to 80 x 80, JPEG quality 85;
    * ``notumor/copy_of_notumor_0001.jpg``: resized to 96 x 72 (other aspect), JPEG quality 90;
    * ``notumor/copy_of_notumor_0002.jpg``: resized to 128 x 128, JPEG quality 90;
    * ``pituitary/copy_of_pituitary_0003.png``: an exact copy.

    So 1 of 4 glioma, 2 of 5 notumor, 0 of 3 meningioma and 1 of 4 pituitary items copy ``demo_source``.
    """
    root = write_demo_data(tmp_path_factory.mktemp("other") / "other", n=3, seed=DEMO_SEED + 1, size=DEMO_SIZE)
    for name, size, quality in (
        ("glioma/glioma_0000", (80, 80), 85),
        ("notumor/notumor_0001", (96, 72), 90),
        ("notumor/notumor_0002", (128, 128), 90),
    ):
        with Image.open(demo_source / f"{name}.png") as im:
            resized = im.resize(size, Image.BILINEAR)
        cls, stem = name.split("/")
        resized.save(root / cls / f"copy_of_{stem}.jpg", quality=quality)
    shutil.copy(demo_source / "pituitary/pituitary_0003.png", root / "pituitary/copy_of_pituitary_0003.png")
    return root


@pytest.fixture
def one_torch_thread():
    """Run a test on one torch thread (tiny networks gain nothing from more, and tests run side by side)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


_BRAINMRI_LOG = logging.getLogger("brainmri")
#: The "brainmri" logger as the session found it, before any test ran ``brainmri.cli.main``.
_PRISTINE_LOG = (_BRAINMRI_LOG.handlers[:], _BRAINMRI_LOG.level, _BRAINMRI_LOG.propagate)


@pytest.fixture(autouse=True)
def _restore_brainmri_logger():
    """``brainmri.cli.main`` points the "brainmri" logger at the stderr pytest captured for one
    test; restore it afterwards so later tests neither log to a closed stream nor miss records
    in ``caplog``. The state restored is the session's first one, not the one before the test:
    a module-scoped fixture that runs ``main`` changes the logger outside any single test."""
    yield
    handlers, level, propagate = _PRISTINE_LOG
    _BRAINMRI_LOG.handlers[:] = handlers
    _BRAINMRI_LOG.setLevel(level)
    _BRAINMRI_LOG.propagate = propagate


@pytest.fixture
def error_line(capsys):
    """Read stderr: check it is one brainmri error line of ``command`` and return that line."""

    def read(command: str) -> str:
        err = capsys.readouterr().err
        lines = err.strip().splitlines()
        assert len(lines) == 1, err
        assert lines[0].startswith(f"brainmri {command}: error: ")
        return lines[0]

    return read


@pytest.fixture
def tmpfs(tmp_path):
    """``tmpfs(name, size="1m", read_only=False)``: a folder of ``tmp_path`` on a tmpfs of ``size``.

    Disk-full and read-only cases need a real file system: permission bits do
    not bind root, and a full disk cannot be faked faithfully. Mounting needs
    root (CI runs as root); elsewhere the test skips, and a test that uses
    this fixture is marked ``system`` so that CI fails instead of skipping.
    ``tmpfs.resize(path, size)`` grows a mounted folder (to rerun after a
    full disk). Every mount is undone after the test.
    """
    mounts: list[Path] = []

    def mount(name: str, size: str = "1m", read_only: bool = False) -> Path:
        path = tmp_path / name
        path.mkdir()
        options = f"size={size}" + (",ro" if read_only else "")
        run = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True
        )
        if run.returncode:
            pytest.skip(f"cannot mount a tmpfs here ({run.stderr.strip()}); run as root")
        mounts.append(path)
        return path

    def resize(path: Path, size: str) -> None:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(path)], check=True)

    mount.resize = resize
    yield mount
    for path in mounts:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture(autouse=True, scope="session")
def _private_default_cache(tmp_path_factory):
    """Commands that cache by default (the ONNX exports of predict and serve, features without --cache-dir)
    write into a folder of the test session, never into the user's ~/.cache/brainmri."""
    saved = os.environ.get("BRAINMRI_CACHE")
    os.environ["BRAINMRI_CACHE"] = str(tmp_path_factory.mktemp("default-cache"))
    yield
    if saved is None:
        os.environ.pop("BRAINMRI_CACHE", None)
    else:
        os.environ["BRAINMRI_CACHE"] = saved
