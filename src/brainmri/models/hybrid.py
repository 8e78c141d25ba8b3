"""Hand-made features fed to a neural network: ``fcm-dwt-dnn`` (Mohsen et al. 2018) and ``mlp``.

Both are :class:`~brainmri.models.classical.GroupedPipeline` s whose first
step computes features through the feature cache
(:class:`~brainmri.features.extract.ImageFeatures`: the features learn
nothing from data, so they are computed once per image and reused by every
fold), whose middle step is fitted on the training items only (PCA,
standardisation), and whose last step is a
:class:`~brainmri.models.torch_classifier.TorchClassifier` on vectors, with
its grouped validation part for the epoch choice and the temperature.

The networks are small, so they train on one CPU thread by default
(``threads=1``): on this project's shared 2-core machine an epoch of 600
PCA vectors took 0.09 s on one thread and 0.35-7.8 s on two, which fought
over the cores with the other processes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from brainmri.data.preprocess import Preprocess, load_preprocessed
from brainmri.features.extract import ImageFeatures
from brainmri.features.fcm import FCMWaveletFeatures
from brainmri.models.base import GroupedPipeline
from brainmri.models.classical import feature_sets
from brainmri.models.registry import register_method
from brainmri.models.torch_classifier import TorchClassifier

MOHSEN_2018 = (
    'H. Mohsen, E.-S. A. El-Dahshan, E.-S. M. El-Horbaty and A.-B. M. Salem (2018), "Classification '
    'using deep learning neural networks for brain tumors", Future Computing and Informatics Journal '
    "3(1):68-71, DOI 10.1016/j.fcij.2017.12.001"
)
RUMELHART_1986 = (
    'D. E. Rumelhart, G. E. Hinton and R. J. Williams (1986), "Learning representations by '
    'back-propagating errors", Nature 323:533-536, DOI 10.1038/323533a0 (the multilayer perceptron; '
    "features as in ovo-svm and rf)"
)


#: The builder arguments of both methods that go to their TorchClassifier as they are.
_TRAINING = (
    "epochs",
    "lr",
    "weight_decay",
    "batch_size",
    "label_smoothing",
    "ema_decay",
    "patience",
    "device",
    "threads",
    "seed",
    "work_dir",
)


def _training(arguments: dict) -> dict:
    """The :data:`_TRAINING` entries of a builder's ``locals()``."""
    return {name: arguments[name] for name in _TRAINING}


class IllustratedPipeline(GroupedPipeline):
    """A :class:`GroupedPipeline` that draws what its feature extractors see (the ``illustrate`` hook).

    The first step is an :class:`~brainmri.features.extract.ImageFeatures`;
    every extractor of it with an ``illustrate(image) -> (caption, RGB)``
    method (e.g. the FCM segmentation of
    :class:`~brainmri.features.fcm.FCMWaveletFeatures`) draws each image.
    """

    def illustrate(self, paths) -> list[tuple[str, np.ndarray]]:
        """Pictures of ``paths`` as the extractors see them.

        Parameters
        ----------
        paths : sequence of path

        Returns
        -------
        list of (str, ndarray of uint8 of shape (H, W, 3))
            A caption and an RGB picture per image and drawing extractor,
            images in the order of ``paths``.
        """
        features = self.steps[0][1]
        preprocess = features.preprocess or Preprocess()
        drawing = [(name, ex) for name, ex in features.extractors if hasattr(ex, "illustrate")]
        pictures = []
        for path in paths:
            image = load_preprocessed(path, preprocess)
            for name, extractor in drawing:
                caption, picture = extractor.illustrate(image)
                pictures.append((f"{name}: {caption}", picture))
        return pictures


#: What ``brainmri tune`` searches for the two networks of this module (format: :mod:`brainmri.tuning.space`).
NETWORK_SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "dropout": {"type": "float", "low": 0.0, "high": 0.5},
    "weight_decay": {"type": "float", "low": 1e-4, "high": 0.1, "log": True},
}


@register_method(
    "fcm-dwt-dnn",
    family="deep",
    reference=MOHSEN_2018,
    default_cv=7,
    search_space=NETWORK_SPACE,
    summary="fuzzy C-means segmentation (5 classes), Haar DWT approximation, PCA, 7-hidden-layer DNN "
    "(Mohsen et al. 2018; 7-fold CV by default)",
)
def fcm_dwt_dnn(
    *,
    seed: int = 0,
    n_jobs: int = 1,
    cache_dir=None,
    preprocess=None,
    work_dir: str | Path | None = None,
    device: str = "auto",
    n_clusters: int = 5,
    size: int = 256,
    level: int = 3,
    n_components: float | int = 0.9,
    dropout: float = 0.1,
    epochs: int = 60,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    batch_size: int = 64,
    label_smoothing: float = 0.05,
    ema_decay: float | None = 0.99,
    patience: int | None = None,
    threads: int | None = 1,
) -> IllustratedPipeline:
    """Mohsen et al.'s method: FCM segmentation, DWT features, PCA, a DNN with 7 hidden layers.

    Each preprocessed slice is resized to ``size`` (256 as in the study),
    segmented by fuzzy C-means into ``n_clusters`` intensity classes, and the
    ``level``-level Haar approximation of the segmented slice (1024 values)
    is its feature vector (:class:`~brainmri.features.fcm.FCMWaveletFeatures`,
    cached). PCA, fitted on the training items only, keeps ``n_components``
    (a share of the variance when below 1, else a number of components),
    whitened; :func:`brainmri.nets.dnn.dnn7` classifies them. The study's
    number of PCA components, layer widths and training settings are not in
    our sources; the defaults here are ours. On 600 brain-tumor-mri
    training slices (3-fold, item-level, 60 epochs) PCA kept 120 components
    at 0.9 of the variance (accuracy 0.75-0.81), 189 at 0.95 (0.73-0.77);
    64 fixed components did as well as 0.9 (0.78-0.81) but fail on training
    sets of fewer than 64 items, so a share of the variance is the default. Every keyword after ``device``
    is a ``--params`` setting (``fcm-dwt-dnn.epochs=30``). The study
    evaluated the method by 7-fold cross-validation, ``brainmri benchmark``'s
    default for it (``default_cv=7``).

    The fitted method draws the segmentation of given images
    (:meth:`IllustratedPipeline.illustrate`); the benchmark report shows a
    few.

    References
    ----------
    H. Mohsen, E.-S. A. El-Dahshan, E.-S. M. El-Horbaty and A.-B. M. Salem,
    "Classification using deep learning neural networks for brain tumors",
    Future Computing and Informatics Journal 3(1):68-71, 2018.
    DOI: 10.1016/j.fcij.2017.12.001
    """
    from sklearn.decomposition import PCA

    from brainmri.nets.dnn import dnn7

    features = ImageFeatures(
        [("fcm_dwt", FCMWaveletFeatures(n_clusters=n_clusters, size=size, level=level))],
        preprocess=preprocess,
        cache_dir=cache_dir,
        n_jobs=n_jobs,
    )
    net = TorchClassifier(dnn7, module_params={"dropout": dropout}, **_training(locals()))
    pca = PCA(n_components=n_components, whiten=True, svd_solver="full", random_state=seed)
    return IllustratedPipeline([("features", features), ("pca", pca), ("classifier", net)])


@register_method(
    "mlp",
    family="deep",
    reference=RUMELHART_1986,
    search_space=NETWORK_SPACE,
    summary="2-hidden-layer perceptron on the standardised classical features of ovo-svm and rf "
    "(a baseline between the classical and deep methods)",
)
def mlp_method(
    *,
    seed: int = 0,
    n_jobs: int = 1,
    cache_dir=None,
    preprocess=None,
    work_dir: str | Path | None = None,
    device: str = "auto",
    hidden: tuple[int, ...] = (256, 128),
    dropout: float = 0.2,
    epochs: int = 60,
    lr: float = 1e-3,
    weight_decay: float = 0.01,
    batch_size: int = 64,
    label_smoothing: float = 0.05,
    ema_decay: float | None = 0.99,
    patience: int | None = None,
    threads: int | None = 1,
) -> GroupedPipeline:
    """A small network on the ``extended`` classical features (GLCM, intensity, Otsu, shape, wavelet).

    The features are those of ``ovo-svm`` and ``rf`` (cached, shared with
    them), standardised on the training items, classified by
    :func:`brainmri.nets.dnn.mlp`. Every keyword after ``device`` is a
    ``--params`` setting (``mlp.epochs=30``).

    References
    ----------
    D. E. Rumelhart, G. E. Hinton and R. J. Williams, "Learning
    representations by back-propagating errors", Nature 323:533-536, 1986.
    DOI: 10.1038/323533a0
    """
    from sklearn.preprocessing import StandardScaler

    from brainmri.nets.dnn import mlp

    features = ImageFeatures(feature_sets()["extended"], preprocess=preprocess, cache_dir=cache_dir, n_jobs=n_jobs)
    net = TorchClassifier(mlp, module_params={"hidden": tuple(hidden), "dropout": dropout}, **_training(locals()))
    return GroupedPipeline([("features", features), ("scale", StandardScaler()), ("classifier", net)])
