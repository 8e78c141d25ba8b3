"""Synthetic brain-MRI-like axial slices for tests and the demo.

Each slice is a T1-like phantom: scalp, skull, CSF rim, folded cortex (gray
matter), white matter and lateral ventricles, with a smooth multiplicative
bias field and Rician noise. Classes differ the way real tumour classes do:

* ``notumor``: anatomy only;
* ``glioma``: an irregular, heterogeneous intra-axial mass in a hemisphere
  with a dark necrotic core, a bright rim and surrounding oedema;
* ``meningioma``: a round, homogeneous, bright extra-axial mass against the
  skull that pushes the cortex inwards;
* ``pituitary``: a small bright midline mass in the sellar region.

Masses displace the surrounding anatomy (mass effect). Every image is
determined by ``(seed, class, index)``.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from brainmri.errors import ConfigError, DataError

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")

#: Folder of ``write_demo_data``'s output holding the lesion masks. A hidden name, so that
#: :func:`~brainmri.data.dataset.load_dataset` never takes it for a class (it lists it as ignored).
MASKS_FOLDER = ".masks"

# T1-like tissue intensities.
_SCALP, _BONE, _CSF, _GM, _WM = 0.8, 0.08, 0.15, 0.5, 0.75


def synthetic_slice(label: str, rng: np.random.Generator, size: int = 128) -> np.ndarray:
    """One synthetic axial slice.

    Parameters
    ----------
    label : str
        One of :data:`CLASSES`.
    rng : numpy.random.Generator
    size : int
        Output is ``size x size``.

    Returns
    -------
    ndarray of float32, shape (size, size), values in [0, 1]
    """
    return synthetic_slice_and_mask(label, rng, size)[0]


def synthetic_slice_and_mask(label: str, rng: np.random.Generator, size: int = 128) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic axial slice and the mask of the lesion planted in it.

    The mask is the known answer of an explanation: the pixels whose
    intensity the tumour changed (for a glioma its oedema too, for a
    meningioma or pituitary mass the bright disc), before noise and bias.
    The anatomy the mass pushes aside (mass effect) is not part of it.

    Parameters
    ----------
    label, rng, size
        As :func:`synthetic_slice`, which returns the same image for the
        same generator state.

    Returns
    -------
    image : ndarray of float32, shape (size, size), values in [0, 1]
    mask : ndarray of bool, shape (size, size)
        All False for ``notumor``.
    """
    if label not in CLASSES:
        raise ConfigError(f"unknown synthetic class {label!r}; use one of {', '.join(CLASSES)}")
    y, x = np.mgrid[-1 : 1 : size * 1j, -1 : 1 : size * 1j]
    angle = rng.uniform(-0.15, 0.15)
    cx, cy = rng.uniform(-0.04, 0.04, size=2)
    x, y = (x - cx) * np.cos(angle) + (y - cy) * np.sin(angle), -(x - cx) * np.sin(angle) + (y - cy) * np.cos(angle)
    ax, ay = rng.uniform(0.70, 0.80), rng.uniform(0.84, 0.92)

    mass = _mass(label, rng, ax, ay)
    if mass is not None:
        mx, my, radius, strength = mass["x"], mass["y"], mass["r"], mass["push"]
        d2 = (x - mx) ** 2 + (y - my) ** 2
        shrink = 1 - strength * np.exp(-d2 / (2.5 * radius) ** 2)
        xs, ys = mx + (x - mx) * shrink, my + (y - my) * shrink
    else:
        xs, ys = x, y

    r = np.sqrt((xs / ax) ** 2 + (ys / ay) ** 2)
    theta = np.arctan2(ys, xs)
    gyri = 0.035 * np.sin(rng.integers(14, 22) * theta + rng.uniform(0, 2 * np.pi)) + 0.015 * np.sin(
        rng.integers(30, 40) * theta + rng.uniform(0, 2 * np.pi)
    )
    img = np.zeros_like(x)
    img[r < 1.0] = _SCALP
    img[r < 0.93] = _BONE
    img[r < 0.88] = _CSF
    img[r < 0.86 + gyri * 0.3] = _GM
    img[r < 0.70 + gyri] = _WM
    vent_w, vent_h = rng.uniform(0.05, 0.09), rng.uniform(0.15, 0.22)
    for side in (-1, 1):
        vx, vy, tilt = side * 0.11, -0.05, side * 0.35
        u = (xs - vx) * np.cos(tilt) + (ys - vy) * np.sin(tilt)
        v = -(xs - vx) * np.sin(tilt) + (ys - vy) * np.cos(tilt)
        img[(u / vent_w) ** 2 + (v / vent_h) ** 2 < 1] = _CSF

    mask = np.zeros(img.shape, dtype=bool)
    if mass is not None:
        img, mask = _draw_mass(img, x, y, mass, rng)

    img *= rng.uniform(0.85, 1.1)
    bias = 1 + rng.uniform(-0.2, 0.2) * x + rng.uniform(-0.2, 0.2) * y + rng.uniform(-0.1, 0.1) * x * y
    sigma = rng.uniform(0.02, 0.05)
    noisy = np.sqrt((img * bias + rng.normal(0, sigma, img.shape)) ** 2 + rng.normal(0, sigma, img.shape) ** 2)
    return np.clip(noisy / 1.2, 0, 1).astype(np.float32), mask


def _mass(label: str, rng: np.random.Generator, ax: float, ay: float) -> dict | None:
    if label == "notumor":
        return None
    if label == "glioma":
        side = rng.choice((-1, 1))
        return {
            "x": side * rng.uniform(0.25, 0.45),
            "y": rng.uniform(-0.45, 0.35),
            "r": rng.uniform(0.12, 0.22),
            "push": 0.35,
            "kind": "glioma",
        }
    if label == "meningioma":
        phi = rng.uniform(-np.pi, 0) if rng.random() < 0.7 else rng.uniform(0, np.pi)
        return {
            "x": 0.74 * ax * np.cos(phi),
            "y": 0.74 * ay * np.sin(phi),
            "r": rng.uniform(0.1, 0.17),
            "push": 0.3,
            "kind": "meningioma",
        }
    return {
        "x": rng.uniform(-0.03, 0.03),
        "y": rng.uniform(0.35, 0.45),
        "r": rng.uniform(0.05, 0.09),
        "push": 0.15,
        "kind": "pituitary",
    }


def _draw_mass(
    img: np.ndarray, x: np.ndarray, y: np.ndarray, mass: dict, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The image with the mass drawn in, and the mask of the pixels it changed."""
    mx, my, radius = mass["x"], mass["y"], mass["r"]
    theta = np.arctan2(y - my, x - mx)
    d = np.sqrt((x - mx) ** 2 + (y - my) ** 2)
    img = img.copy()
    if mass["kind"] == "glioma":  #: irregular border, oedema, rim, necrosis
        wobble = 1 + 0.25 * np.sin(3 * theta + rng.uniform(0, 6)) + 0.15 * np.sin(5 * theta + rng.uniform(0, 6))
        rr = d / (radius * wobble)
        img[rr < 1.6] = np.minimum(img[rr < 1.6], 0.4)
        img[rr < 1.0] = rng.uniform(0.8, 0.95)
        img[rr < 0.7] = rng.uniform(0.3, 0.45) + 0.1 * rng.random(int((rr < 0.7).sum()))
        img[rr < 0.35] = 0.12
        return img, rr < 1.6
    img[d < radius] = rng.uniform(0.9, 1.0)  # meningioma and pituitary: round, homogeneous, bright
    return img, d < radius


def write_demo_data(
    out: str | Path,
    *,
    n: int = 40,
    seed: int = 0,
    size: int = 128,
    masks: bool = False,
    progress: Callable[[int], None] | None = None,
) -> Path:
    """Write a dataset folder of synthetic slices: ``out/<class>/<class>_NNNN.png``.

    With ``masks``, the lesion mask of every tumour image goes to
    ``out/.masks/<class>/<class>_NNNN.png`` (:data:`MASKS_FOLDER`; 255 inside
    the lesion, 0 elsewhere, same size as the image): the known answer that
    ``brainmri explain --masks`` checks attribution maps against. The
    folder is hidden, so dataset listing, the audit and the benchmark see
    the same classes and images as without it (they list it as ignored).

    Parameters
    ----------
    out : str or Path
        Folder to create; it must not exist or be empty.
    n : int
        Images per class.
    seed : int
        Same seed, same images.
    masks : bool
        Also write the lesion masks (``brainmri demo-data`` does).

    Returns
    -------
    Path
        ``out``. The folder appears complete or not at all (written to a
        temporary folder beside it, then renamed).
    """
    from PIL import Image

    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"--n must be a positive integer (images per class), got {n!r}")
    if not isinstance(size, int) or size < 8:
        raise ConfigError(f"--size must be an integer >= 8 (pixels), got {size!r}")
    with staged_folder(out) as tmp:
        for c, label in enumerate(CLASSES):
            (tmp / label).mkdir()
            if masks and label != "notumor":
                (tmp / MASKS_FOLDER / label).mkdir(parents=True)
            for k in range(n):
                rng = np.random.default_rng([seed, c, k])
                img, mask = synthetic_slice_and_mask(label, rng, size)
                name = f"{label}/{label}_{k:04d}.png"
                Image.fromarray((img * 255).round().astype(np.uint8)).save(tmp / name)
                if masks and mask.any():
                    Image.fromarray(mask.astype(np.uint8) * 255).save(tmp / MASKS_FOLDER / name)
                if progress:
                    progress(1)
    return Path(out)


@contextmanager
def staged_folder(out: str | Path) -> Iterator[Path]:
    """A temporary folder beside ``out`` to write into, renamed to ``out`` when the block ends without error.

    ``out`` must not exist or be an empty folder; on error the temporary
    folder is removed, so ``out`` appears complete or not at all.
    """
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise DataError(f"{out}: already exists and is not an empty folder; choose another output folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}"
    tmp.mkdir()  # honours the umask, unlike tempfile.mkdtemp (always 0700)
    try:
        yield tmp
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
