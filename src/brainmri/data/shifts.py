"""Acquisition-like shifts of a 2D image, each at five severities.

A model trained on one collection learns its scanner, sequence, windowing
and export as much as the disease. The shifts below imitate what changes
from one source to another, in the spirit of ImageNet-C (Hendrycks and
Dietterich 2019, https://doi.org/10.48550/arXiv.1903.12261): each is a named
function of the image with one parameter fixed per severity 1-5
(:attr:`Shift.levels`), so that severity ``k`` is the same distortion on every
run. Where a shift draws random numbers (the noise, the bias field, the
direction of a motion), they are seeded by the run's seed, the shift and the
image's pixels (not the severity, which only scales them):
:func:`shift_image` is deterministic for a given seed and image, and two runs
see the same shifted test set.

A shift applies to the image as read, before a method's own preprocessing,
so it models how the image was acquired or exported. Its parameters are in
pixels of a 256-pixel image and scale with the image's size. The output has
the input's shape, is float32, and stays within the input's range of
intensities (the image is scaled to [0, 1] by its own minimum and maximum,
shifted, clipped to [0, 1] and scaled back).

TorchIO (Pérez-García et al. 2021, https://doi.org/10.1016/j.cmpb.2021.106236)
provides the MRI artefacts (bias field, motion, ghosting), the blur, the gamma
curve and the intensity window; the others are written here because no
installed library has them (each says why). The same functions serve as
appearance augmentation: call :func:`shift_image` with any severity.
"""

from __future__ import annotations

import hashlib
import io
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from brainmri.data.head import otsu_threshold
from brainmri.errors import ConfigError, DataError

#: The severities of every shift; 0 means the clean image.
SEVERITIES = (1, 2, 3, 4, 5)

#: Size (pixels) at which the spatial parameters (blur sigma, motion translation) are given.
REFERENCE_SIZE = 256


@dataclass(frozen=True)
class Shift:
    """One named shift.

    Attributes
    ----------
    name : str
        Its name on the command line and in results.
    description : str
        What it imitates, in words.
    parameter : str
        What the severity sets.
    levels : tuple
        The parameter at severities 1 to 5.
    source : str
        The library transform that applies it, or why it is written here.
    function : callable
        ``function(x, level, rng, scale) -> ndarray``: ``x`` a float32 image
        in [0, 1], ``level`` the parameter, ``rng`` a seeded generator and
        ``scale`` the image size over :data:`REFERENCE_SIZE`.
    """

    name: str
    description: str
    parameter: str
    levels: tuple
    source: str
    function: Callable[[np.ndarray, object, np.random.Generator, float], np.ndarray]

    def to_dict(self) -> dict:
        """Everything but the function, as written to ``results.json``."""
        return {
            "description": self.description,
            "parameter": self.parameter,
            "levels": list(self.levels),
            "source": self.source,
        }


#: Every shift by name, in the order of reports.
SHIFTS: dict[str, Shift] = {}


def _register(name: str, description: str, parameter: str, levels: tuple, source: str):
    def add(function):
        SHIFTS[name] = Shift(name, description, parameter, levels, source, function)
        return function

    return add


def _torchio(transform, x: np.ndarray, *, depth_axis: int = 3) -> np.ndarray:
    """Apply a TorchIO transform to a 2D image, held as a one-channel volume with a single slice.

    ``depth_axis`` is where the singleton axis goes (1 to 3): TorchIO's motion
    fills k-space in segments along the last axis, which must then be an
    image axis.
    """
    import torch

    try:
        import torchio
    except ImportError:
        raise ConfigError("the acquisition shifts need TorchIO: pip install 'brainmri[shift]'") from None
    tensor = torch.from_numpy(np.expand_dims(x, depth_axis - 1)[None].copy())
    # One torch thread for one small image: on a busy machine, torch's threads wait for each other and made
    # these transforms 3 to 10 times slower (gamma 85 ms against 10 ms per 224-pixel image, motion 357 against 31).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = transform(torchio.ScalarImage(tensor=tensor)).data[0].numpy()
    finally:
        torch.set_num_threads(threads)
    return np.squeeze(out, axis=depth_axis - 1)


@_register(
    "gamma",
    "contrast curve of another sequence or display: intensities raised to a power",
    "gamma exponent",
    (1.25, 1.5, 2.0, 2.5, 3.0),
    "TorchIO Gamma",
)
def _gamma(x, level, rng, scale):
    from torchio.transforms.augmentation.intensity.random_gamma import Gamma

    return _torchio(Gamma(gamma=level), x)


@_register(
    "window",
    "a narrower intensity window at export: darks crushed to black, brights saturated",
    "window (low, high) as fractions of the range",
    ((0.02, 0.9), (0.04, 0.8), (0.07, 0.65), (0.1, 0.5), (0.15, 0.35)),
    "TorchIO RescaleIntensity from the window to [0, 1], then clipped",
)
def _window(x, level, rng, scale):
    from torchio import RescaleIntensity

    return _torchio(RescaleIntensity(out_min_max=(0, 1), in_min_max=level), x)


@_register(
    "bias-field",
    "smooth intensity non-uniformity of the receive coil",
    "largest coefficient of the order-3 polynomial log-field",
    (0.1, 0.2, 0.35, 0.5, 0.7),
    "TorchIO BiasField, coefficients drawn once per image in [-level, level]",
)
def _bias_field(x, level, rng, scale):
    from torchio.transforms.augmentation.intensity.random_bias_field import BiasField

    # An order-3 polynomial in three coordinates has 20 coefficients (TorchIO orders them itself).
    return _torchio(BiasField(coefficients=rng.uniform(-level, level, 20).tolist(), order=3), x)


@_register(
    "blur",
    "a smoother reconstruction or a thicker slice: Gaussian blur",
    "sigma in pixels of a 256-pixel image",
    (0.5, 1.0, 1.5, 2.25, 3.0),
    "TorchIO Blur",
)
def _blur(x, level, rng, scale):
    from torchio.transforms.augmentation.intensity.random_blur import Blur

    sigma = level * scale
    return _torchio(Blur(std=(sigma, sigma, 0.0)), x)


@_register(
    "resolution",
    "a coarser acquisition matrix: down-sampled, then up-sampled back",
    "down-sampling factor",
    (1.5, 2.0, 3.0, 4.0, 6.0),
    "Pillow resize (antialiased box down, bilinear up): TorchIO's RandomAnisotropy coarsens one axis only",
)
def _resolution(x, level, rng, scale):
    from PIL import Image

    h, w = x.shape
    small = Image.fromarray(x, mode="F").resize((max(round(w / level), 1), max(round(h / level), 1)), Image.BOX)
    return np.asarray(small.resize((w, h), Image.BILINEAR))


@_register(
    "rician-noise",
    "thermal noise of a magnitude image (Rician, not Gaussian, in the background)",
    "noise sigma as a fraction of the range",
    (0.02, 0.04, 0.07, 0.1, 0.15),
    "written here: TorchIO's RandomNoise adds Gaussian noise, which a magnitude image cannot have",
)
def _rician_noise(x, level, rng, scale):
    # Gudbjartsson and Patz 1995 (https://doi.org/10.1002/mrm.1910340618): the magnitude of a complex
    # signal with Gaussian noise of the same sigma in its real and imaginary parts.
    real = x + rng.normal(0.0, level, x.shape)
    imaginary = rng.normal(0.0, level, x.shape)
    return np.hypot(real, imaginary)


@_register(
    "motion",
    "the head moved during the acquisition: ghosts and ringing along the phase-encoding axis",
    "(share of k-space acquired after the movement, displacement in pixels of a 256-pixel image)",
    ((0.1, 2.0), (0.2, 3.0), (0.3, 4.0), (0.4, 6.0), (0.45, 8.0)),
    "TorchIO Motion (Shaw et al. 2019), one movement, its direction drawn once per image",
)
def _motion(x, level, rng, scale):
    from torchio.transforms.augmentation.intensity.random_motion import Motion

    share, pixels = level
    # The image is held as (rows, 1, columns): TorchIO fills k-space in segments along the columns, and the
    # in-plane rotation (half a degree per pixel of displacement) is about the middle axis. The centre of
    # k-space stays with the unmoved image; a larger share moved by more makes a stronger artefact.
    sign = rng.choice([-1.0, 1.0], size=3)
    motion = Motion(
        degrees=np.array([[0.0, pixels / 2, 0.0]]) * sign,
        translation=np.array([[pixels, 0.0, pixels]]) * scale * sign,
        times=np.array([1.0 - share]),
        image_interpolation="linear",
    )
    return _torchio(motion, x, depth_axis=2)


@_register(
    "ghosting",
    "periodic signal changes (pulsation, breathing): shifted copies along the phase axis",
    "ghost intensity",
    (0.15, 0.3, 0.5, 0.75, 1.0),
    "TorchIO Ghosting, 4 ghosts along the rows",
)
def _ghosting(x, level, rng, scale):
    from torchio.transforms.augmentation.intensity.random_ghosting import Ghosting

    return _torchio(Ghosting(num_ghosts=4, axis=0, intensity=level, restore=0.02), x)


@_register(
    "jpeg",
    "lossy re-compression when the image is exported or shared",
    "JPEG quality",
    (60, 40, 25, 12, 5),
    "Pillow JPEG encoder: no imaging library transform re-encodes",
)
def _jpeg(x, level, rng, scale):
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.round(x * 255).astype(np.uint8)).save(buffer, format="JPEG", quality=level)
    buffer.seek(0)
    with Image.open(buffer) as image:
        return np.asarray(image, dtype=np.float32) / 255


@_register(
    "bit-depth",
    "an export at a lower bit depth (a 16-bit scan saved at 8 bits, and fewer)",
    "bits kept",
    (6, 5, 4, 3, 2),
    "written here: a rounding to 2**bits levels, which no library wraps",
)
def _bit_depth(x, level, rng, scale):
    steps = 2**level - 1
    return np.round(x * steps) / steps


@_register(
    "background-inversion",
    "a bright background (inverted padding or display): the air outside the head is blended towards white",
    "blend towards the inverted background",
    (0.2, 0.4, 0.6, 0.8, 1.0),
    "written here: it needs the head mask of brainmri's own crop (Otsu threshold)",
)
def _background_inversion(x, level, rng, scale):
    from scipy import ndimage

    # Background: the dark regions that touch the border of the image (dark tissue inside the head is kept).
    labels, _ = ndimage.label(x <= otsu_threshold(x))
    border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    background = np.isin(labels, border[border > 0])
    return np.where(background, (1 - level) * x + level * (1 - x), x)


def parse_shifts(text: str | None) -> tuple[str, ...]:
    """Shift names from ``--shift``: ``all``, or a comma-separated list.

    >>> parse_shifts("blur, jpeg")
    ('blur', 'jpeg')

    Raises
    ------
    ConfigError
        A name that is not a shift (the message lists the valid names).
    """
    if text is None or not text.strip():
        return ()
    if text.strip() == "all":
        return tuple(SHIFTS)
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    check_shifts(names)
    return names


def check_shifts(names) -> None:
    """Refuse a name that is not in :data:`SHIFTS`, listing the valid ones."""
    unknown = [n for n in names if n not in SHIFTS]
    if unknown:
        raise ConfigError(f"--shift: unknown shift {unknown[0]!r}; choose among all, {', '.join(SHIFTS)}")


def check_severities(severities) -> tuple[int, ...]:
    """Validate ``--shift-severities`` (distinct integers from 1 to 5) and return them sorted.

    >>> check_severities([5, 1, 3])
    (1, 3, 5)
    """
    values = tuple(severities)
    if not values or any(isinstance(s, bool) or s not in SEVERITIES for s in values) or len(set(values)) < len(values):
        raise ConfigError(
            f"--shift-severities must be distinct integers from 1 to 5 (e.g. 1,3,5), got {list(values)!r}"
        )
    return tuple(sorted(values))


def parse_severities(text: str) -> tuple[int, ...]:
    """Severities from ``--shift-severities``: a comma-separated list of integers from 1 to 5, sorted.

    >>> parse_severities("5,1,3")
    (1, 3, 5)
    """
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        values = [text]
    return check_severities(values)


def shift_image(image: np.ndarray, name: str, severity: int, *, seed: int = 0) -> np.ndarray:
    """The image under shift ``name`` at ``severity``.

    Parameters
    ----------
    image : ndarray, shape (H, W)
        An image as read (any intensity scale).
    name : str
        A key of :data:`SHIFTS`.
    severity : int
        0 (the image unchanged) to 5.
    seed : int
        With the shift and the pixels, seeds the random draws of the shifts
        that have some.

    Returns
    -------
    ndarray of float32, shape (H, W)
        Values within ``[image.min(), image.max()]``.

    Raises
    ------
    DataError
        ``image`` is not 2D.
    ConfigError
        An unknown shift or a severity outside 0-5.

    Examples
    --------
    >>> image = np.arange(16, dtype=np.float32).reshape(4, 4)
    >>> shift_image(image, "bit-depth", 5).tolist()[0]
    [0.0, 0.0, 0.0, 5.0]
    """
    check_shifts([name])
    if severity not in (0, *SEVERITIES):
        raise ConfigError(f"shift severity must be an integer from 0 to 5, got {severity!r}")
    image = np.asarray(image, dtype=np.float32)
    if image.ndim != 2:
        raise DataError(f"a shift needs a 2D slice, got an array of shape {image.shape}; slice 3D volumes first")
    low, high = float(image.min()), float(image.max())
    if severity == 0 or high == low:
        return image.copy()
    x = (image - low) / (high - low)
    shift = SHIFTS[name]
    pixels = int.from_bytes(hashlib.blake2b(x.tobytes(), digest_size=8).digest(), "little")
    # Not seeded by the severity: every severity scales the same draws, so a higher one is a stronger shift.
    rng = np.random.default_rng([seed, zlib.crc32(name.encode()), pixels])
    y = shift.function(x, shift.levels[severity - 1], rng, min(image.shape) / REFERENCE_SIZE)
    return (low + np.clip(y, 0.0, 1.0) * (high - low)).astype(np.float32)
