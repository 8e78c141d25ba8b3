"""Deep methods of the seed paper and of 3D volume classification, registered by name (family ``deep``).

Each is a :class:`~brainmri.models.classical.GroupedPipeline`: a first step
turning image (or volume) paths into arrays (cached,
:class:`~brainmri.training.arrays.ImageArrays`, :class:`~brainmri.training.arrays.VolumeArrays`), a last step
:class:`~brainmri.models.torch_classifier.TorchClassifier`.
"""

from __future__ import annotations

from brainmri.models.base import GroupedPipeline
from brainmri.models.registry import register_method
from brainmri.models.settings import MAX_VOLUME_SIZE, Rule
from brainmri.models.torch_classifier import TorchClassifier
from brainmri.training.arrays import ImageArrays, VolumeArrays

AYADI_2021 = (
    'W. Ayadi, W. Elhamzi, I. Charfi and M. Atri (2021), "Deep CNN for brain tumor classification", '
    "Neural Processing Letters 53:671-700, DOI 10.1007/s11063-020-10398-2"
)


#: What ``brainmri tune`` searches for ``ayadi-cnn`` (format: :mod:`brainmri.tuning.space`).
AYADI_SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "batch_size": {"type": "categorical", "choices": [16, 32, 64, 128]},
    "dropout": {"type": "float", "low": 0.0, "high": 0.6},
    "width": {"type": "categorical", "choices": [8, 16, 32, 48]},
}


@register_method(
    "ayadi-cnn",
    family="deep",
    reference=AYADI_2021,
    search_space=AYADI_SPACE,
    summary="10-layer sequential CNN on 128 px grayscale (Ayadi et al. 2021), AdamW one-cycle, EMA",
)
def ayadi_cnn_method(
    *,
    seed: int = 0,
    n_jobs: int = 1,
    cache_dir=None,
    preprocess=None,
    work_dir=None,
    device: str = "auto",
    size: int = 128,
    epochs: int = 30,
    lr: float = 2e-3,
    weight_decay: float = 0.05,
    batch_size: int = 64,
    label_smoothing: float = 0.05,
    augment: bool | str = True,
    sampling: str = "shuffle",
    ema_decay: float | None = 0.99,
    patience: int | None = None,
    precision: str = "bf16",
    channels_last: bool = True,
    width: int = 32,
    dropout: float = 0.3,
    val_fraction: float = 0.1,
    threads: int | None = None,
) -> GroupedPipeline:
    """Ayadi et al.'s CNN (:func:`brainmri.nets.cnn.ayadi_cnn`) on ``size x size`` grayscale slices.

    The defaults are the recipe that reached 99.4 % on the brain-tumor-mri
    official test (98.8 % without its training duplicates) in 23 minutes on
    a 2-core CPU: AdamW (lr 2e-3, weight decay 0.05), one-cycle cosine
    schedule, label smoothing 0.05, flips / small affine /
    brightness-contrast augmentation, bf16 autocast and channels-last
    (122 training images/s there). A tenth of the training items (grouped
    like the outer split) is held out to choose the epoch and fit the
    temperature (``val_fraction``). ``sampling`` draws the items of an
    epoch balanced over classes (``class``) or over sources and the classes
    in each (``source``: DATA's manifest ``source`` column and
    ``--extra-data``; :mod:`brainmri.training.sampling`). Every keyword
    after ``device`` is a ``--params`` setting (``ayadi-cnn.epochs=10``).

    References
    ----------
    W. Ayadi, W. Elhamzi, I. Charfi and M. Atri, "Deep CNN for brain tumor
    classification", Neural Processing Letters 53:671-700, 2021.
    DOI: 10.1007/s11063-020-10398-2
    """
    from brainmri.nets.cnn import ayadi_cnn

    images = ImageArrays(size=size, preprocess=preprocess, cache_dir=cache_dir, n_jobs=n_jobs)
    net = TorchClassifier(
        ayadi_cnn,
        module_params={"width": width, "dropout": dropout},
        epochs=epochs,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        label_smoothing=label_smoothing,
        augment=augment,
        sampling=sampling,
        ema_decay=ema_decay,
        patience=patience,
        precision=precision,
        channels_last=channels_last,
        val_fraction=val_fraction,
        device=device,
        threads=threads,
        seed=seed,
        work_dir=work_dir,
    )
    return GroupedPipeline([("images", images), ("classifier", net)])


SHOJAEI_2023 = (
    'S. Shojaei, M. Saniee Abadeh and Z. Momeni (2023), "An evolutionary explainable deep learning approach '
    "for Alzheimer's MRI classification\", Expert Systems with Applications 220:119709, "
    "DOI 10.1016/j.eswa.2023.119709"
)


#: What ``brainmri tune`` searches for cnn3d: its optimiser and width (batches of a few volumes on a CPU).
CNN3D_SPACE = {
    "lr": {"type": "float", "low": 3e-4, "high": 1e-2, "log": True},
    "batch_size": {"type": "categorical", "choices": [2, 4, 8]},
    "dropout": {"type": "float", "low": 0.0, "high": 0.6},
    "width": {"type": "categorical", "choices": [4, 8, 16]},
}


@register_method(
    "cnn3d",
    family="deep",
    reference=SHOJAEI_2023,
    inputs="volumes",
    search_space=CNN3D_SPACE,
    rules={"size": Rule("int", 8, MAX_VOLUME_SIZE)},
    summary="small 3D CNN on whole NIfTI volumes resampled to size^3 voxels (after Shojaei et al. 2023)",
)
def cnn3d_method(
    *,
    seed: int = 0,
    n_jobs: int = 1,
    cache_dir=None,
    preprocess=None,
    work_dir=None,
    device: str = "auto",
    size: int = 32,
    epochs: int = 40,
    lr: float = 3e-3,
    weight_decay: float = 0.05,
    batch_size: int = 4,
    label_smoothing: float = 0.05,
    ema_decay: float | None = 0.9,
    patience: int | None = None,
    precision: str = "auto",
    width: int = 8,
    dropout: float = 0.3,
    val_fraction: float = 0.2,
    threads: int | None = None,
) -> GroupedPipeline:
    """:func:`brainmri.nets.cnn.cnn3d` on volumes of ``size`` voxels a side.

    Volumes (NIfTI, reoriented to RAS+) are cropped to the head, resampled
    to ``size^3`` and scaled to [0, 1]
    (:class:`~brainmri.training.arrays.VolumeArrays`, cached like the 2D
    arrays); 32 (the default) or 48 keep training on a 2-core CPU to
    minutes. The training loop is the one of every deep method (AdamW,
    one-cycle schedule, EMA weights, epoch chosen on a grouped validation
    part, temperature scaling), without augmentation; ``precision`` auto is
    float32 on a CPU. Batches of 4 and 40 epochs, because a few dozen
    subjects give few optimizer steps: on 40 synthetic subjects
    (``demo-data --3d``, 32^3) batches of 8 for 20 epochs (40 steps) left
    the network at chance on held-out subjects, batches of 4 for 40 epochs
    (200 steps) classified all of them. Every keyword after ``device`` is
    a ``--params`` setting (``cnn3d.size=48``).

    References
    ----------
    S. Shojaei, M. Saniee Abadeh and Z. Momeni, "An evolutionary explainable
    deep learning approach for Alzheimer's MRI classification", Expert
    Systems with Applications 220:119709, 2023.
    DOI: 10.1016/j.eswa.2023.119709
    """
    from brainmri.nets.cnn import cnn3d

    volumes = VolumeArrays(size=size, preprocess=preprocess, cache_dir=cache_dir, n_jobs=n_jobs)
    net = TorchClassifier(
        cnn3d,
        module_params={"width": width, "dropout": dropout},
        epochs=epochs,
        lr=lr,
        weight_decay=weight_decay,
        batch_size=batch_size,
        label_smoothing=label_smoothing,
        ema_decay=ema_decay,
        patience=patience,
        precision=precision,
        val_fraction=val_fraction,
        device=device,
        threads=threads,
        seed=seed,
        work_dir=work_dir,
    )
    return GroupedPipeline([("volumes", volumes), ("classifier", net)])
