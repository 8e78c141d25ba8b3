"""Transfer learning from ImageNet backbones, registered by name (family ``deep``).

``transfer-features`` is the fast path: a frozen backbone's pooled
embeddings (:class:`~brainmri.features.embeddings.BackboneEmbeddings`,
cached on disk like every feature), then a calibrated classifier whose
hyperparameters and calibration use grouped inner folds
(:func:`~brainmri.models.validation.inner_splits`), like the classical
methods. Like them it is a :class:`~brainmri.models.classical.GroupedPipeline`,
so benchmark, train and predict need nothing new: a bundle stores the
classifier, and the builder makes the embedding step again.

``transfer-finetune`` trains the whole network
(:class:`~brainmri.nets.finetune.FineTuneNet`) through the deep engine
(:class:`~brainmri.models.torch_classifier.TorchClassifier`), like
``ayadi-cnn``: discriminative learning rates, warm-up and cosine decay,
label smoothing, optional gradual unfreezing and test-time augmentation.

References
----------
A. Sharif Razavian, H. Azizpour, J. Sullivan and S. Carlsson, "CNN features
off-the-shelf: an astounding baseline for recognition", Proc. CVPR
Workshops 2014, 806-813. DOI: 10.1109/CVPRW.2014.131

M. Fayaz, N. Torokeldiev, S. Turdumamatov, M. S. Qureshi, M. B. Qureshi and
J. Gwak, "An efficient methodology for brain MRI classification based on DWT
and convolutional neural network", Sensors 21(22):7480, 2021.
DOI: 10.3390/s21227480

S. Mehnatkesh, S. M. J. Jalali, A. Khosravi and S. Nahavandi, "An intelligent
driven deep residual learning framework for brain tumor classification using
MRI images", Expert Systems with Applications 213:119087, 2023.
DOI: 10.1016/j.eswa.2022.119087

J. Howard and S. Ruder, "Universal language model fine-tuning for text
classification", Proc. 56th ACL, 328-339, 2018. DOI: 10.18653/v1/P18-1031
"""

from __future__ import annotations

import dataclasses

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from brainmri.data.preprocess import Preprocess
from brainmri.errors import ConfigError
from brainmri.features.embeddings import BackboneEmbeddings
from brainmri.features.extract import ImageFeatures
from brainmri.models.base import CalibratedClassifier, GroupedPipeline
from brainmri.models.classical import CalibratedSVC
from brainmri.models.registry import register_method
from brainmri.models.settings import MAX_IMAGE_SIZE, Rule
from brainmri.models.torch_classifier import TorchClassifier
from brainmri.models.validation import inner_splits
from brainmri.training.arrays import ImageArrays

HOWARD_2018 = (
    'J. Howard and S. Ruder (2018), "Universal language model fine-tuning for text classification", '
    "Proc. ACL 328-339, DOI 10.18653/v1/P18-1031"
)
RAZAVIAN_2014 = (
    'A. Sharif Razavian, H. Azizpour, J. Sullivan and S. Carlsson (2014), "CNN features off-the-shelf: '
    'an astounding baseline for recognition", CVPR Workshops 806-813, DOI 10.1109/CVPRW.2014.131'
)

#: C of the RBF SVM searched by grouped inner CV when the setting ``C`` is None.
SVM_GRID = [{"svc__kernel": ["rbf"], "svc__C": [1.0, 10.0], "svc__gamma": ["scale"]}]
#: Inverse regularisation of the logistic regression searched when the setting ``C`` is None.
LOGREG_GRID = [{"logreg__C": [0.01, 0.1, 1.0]}]
CLASSIFIERS = ("svm", "logreg")
#: What ``brainmri tune`` searches (format: :mod:`brainmri.tuning.space`): the classifier on frozen embeddings...
FEATURES_SPACE = {
    "C": {"type": "float", "low": 0.1, "high": 100.0, "log": True},
    "classifier": {"type": "categorical", "choices": list(CLASSIFIERS)},
}
#: ... and the learning rates, unfreezing and input size of fine-tuning.
FINETUNE_SPACE = {
    "lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "backbone_lr_factor": {"type": "float", "low": 0.01, "high": 1.0, "log": True},
    "unfreeze_after": {"type": "int", "low": 0, "high": 3},
    "frozen_stages": {"type": "int", "low": 0, "high": 4},
    "size": {"type": "categorical", "choices": [96, 128, 160, 224]},
}
#: Kernel cache of the fixed-C SVM, MB: the whole kernel matrix of 5,700 training images (260 MB) fits, so
#: libsvm never recomputes a row (scikit-learn's 200 MB default: 75 s per fit on 4,500 brain-tumor-mri
#: embeddings, 2,000 MB: 57 s, on the loaded 2-core machine; the fitted model is the same).
SVC_CACHE_MB = 500


class CalibratedLogistic(CalibratedClassifier):
    """Standardisation + multinomial logistic regression, C chosen by grouped inner CV, calibrated.

    Parameters
    ----------
    param_grid : list of dict or None
        ``GridSearchCV`` grid over the ``logreg__`` parameters; None fits ``C``.
    C : float
        Inverse regularisation strength when no grid is searched.
    calibration : {"sigmoid", "isotonic", "temperature"}
    ensemble : bool
        See :class:`~brainmri.models.classical.CalibratedSVC`.
    random_state : int
    n_jobs : int

    Attributes
    ----------
    params_ : dict
    search_ : GridSearchCV
        The inner search (only with ``param_grid``).
    calibrated_ : CalibratedClassifierCV
    classes_ : ndarray
    """

    def __init__(self, *, param_grid=None, C=1.0, calibration="isotonic", ensemble=False, random_state=0, n_jobs=1):
        self.param_grid = param_grid
        self.C = C
        self.calibration = calibration
        self.ensemble = ensemble
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y, groups=None):
        """Search C (optionally), then calibrate, on the same (grouped) inner folds (see ``CalibratedSVC.fit``)."""
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        splits, how = inner_splits(y, groups, random_state=self.random_state)
        base = Pipeline([("scale", StandardScaler()), ("logreg", LogisticRegression(C=self.C, max_iter=2000))])
        chosen = {"C": self.C}
        if self.param_grid:
            self.search_ = GridSearchCV(
                base, list(self.param_grid), cv=splits, n_jobs=self.n_jobs, scoring="balanced_accuracy", refit=False
            ).fit(X, y)
            base.set_params(**self.search_.best_params_)
            chosen = {k.removeprefix("logreg__"): v for k, v in self.search_.best_params_.items()}
        self.calibrate(base, X, y, splits)
        self.params_ = {**chosen, **self.calibration_params(how)}
        return self


@register_method(
    "transfer-features",
    family="deep",
    reference=RAZAVIAN_2014,
    search_space=FEATURES_SPACE,
    rules={"C": Rule("float", 0, low_open=True, none=True)},  # None: C chosen by grouped inner CV
    summary="frozen ImageNet backbone (offline EfficientNet-Lite0 by default), pooled embeddings of "
    "several depths, calibrated RBF SVM",
)
def transfer_features(
    *,
    seed: int = 0,
    n_jobs: int = 1,
    cache_dir=None,
    preprocess=None,
    work_dir=None,
    device: str = "auto",
    backbone: str = "efficientnet_lite0",
    weights_file: str | None = None,
    size: int = 224,
    depths: int = 3,
    classifier: str = "svm",
    C: float | None = 10.0,
    precision: str = "bf16",
    batch_size: int = 64,
    threads: int | None = None,
) -> GroupedPipeline:
    """Pooled embeddings of a frozen backbone, then a calibrated classifier with grouped inner CV.

    Every keyword after ``device`` is a ``--params`` setting
    (``transfer-features.backbone=mobilenet_v2``): ``backbone``
    (:func:`brainmri.nets.backbones.available_backbones`),
    ``weights_file`` (a local state dict), ``size`` (input side, px),
    ``depths`` (final stages pooled), ``classifier`` (``svm``: RBF SVM;
    ``logreg``: multinomial logistic regression), ``C`` (the classifier's
    C; None searches it by grouped inner CV, over {1, 10} for the SVM and
    {0.01, 0.1, 1} for the logistic regression), ``precision`` (``bf16`` or
    ``fp32``), ``batch_size`` and ``threads``.

    The defaults reached 98.0 % accuracy on the brain-tumor-mri official
    test (96.7 % without its training duplicates, ECE 0.028), see
    ``bench/transfer_benchmark.sh``. C = 10 is what the grouped inner search
    over {1, 10} chose on its training split; fixing it saves the search's
    ten SVM fits (fit 492 s with the search, 273 s without, on the 2-core
    CPU under a load of about 10).

    References
    ----------
    A. Sharif Razavian, H. Azizpour, J. Sullivan and S. Carlsson, "CNN
    features off-the-shelf: an astounding baseline for recognition", Proc.
    CVPR Workshops 2014, 806-813. DOI: 10.1109/CVPRW.2014.131

    M. Tan and Q. V. Le, "EfficientNet: Rethinking model scaling for
    convolutional neural networks", Proc. 36th ICML, PMLR 97:6105-6114, 2019.
    """
    if classifier not in CLASSIFIERS:
        raise ConfigError(f"--params transfer-features.classifier={classifier!r}: use one of {', '.join(CLASSIFIERS)}")
    embeddings = BackboneEmbeddings(
        backbone,
        weights_file=weights_file,
        size=size,
        depths=depths,
        precision=precision,
        batch_size=batch_size,
        device=device,
        threads=threads,
    )
    embeddings.fit()  # checks every setting (and loads the weights) before any image is read
    images = dataclasses.replace(preprocess or Preprocess(), size=size)
    features = ImageFeatures([("embeddings", embeddings)], preprocess=images, cache_dir=cache_dir, n_jobs=n_jobs)
    if classifier == "svm":
        model = CalibratedSVC(
            param_grid=SVM_GRID if C is None else None,
            svc_params=None if C is None else {"kernel": "rbf", "C": C, "gamma": "scale", "cache_size": SVC_CACHE_MB},
            random_state=seed,
            n_jobs=n_jobs,
        )
    else:
        model = CalibratedLogistic(
            param_grid=LOGREG_GRID if C is None else None, C=1.0 if C is None else C, random_state=seed, n_jobs=n_jobs
        )
    return GroupedPipeline([("features", features), ("classifier", model)])


@register_method(
    "transfer-finetune",
    family="deep",
    reference=HOWARD_2018,
    search_space=FINETUNE_SPACE,
    rules={"size": Rule("int", 32, MAX_IMAGE_SIZE)},
    summary="ImageNet backbone (offline EfficientNet-Lite0 by default) fine-tuned end to end, its first "
    "stages frozen: warm-up + cosine, label smoothing, TTA; discriminative learning rates and "
    "gradual unfreezing as settings",
)
def transfer_finetune(
    *,
    seed: int = 0,
    n_jobs: int = 1,
    cache_dir=None,
    preprocess=None,
    work_dir=None,
    device: str = "auto",
    backbone: str = "efficientnet_lite0",
    weights_file: str | None = None,
    size: int = 128,
    epochs: int = 12,
    lr: float = 1e-3,
    backbone_lr_factor: float = 1.0,
    unfreeze_after: int = 0,
    frozen_stages: int = 3,
    weight_decay: float = 0.01,
    batch_size: int = 32,
    label_smoothing: float = 0.1,
    class_weight: str | None = "balanced",
    augment: bool | str = True,
    style: str | None = None,
    sampling: str = "shuffle",
    dropout: float = 0.2,
    ema_decay: float | None = 0.99,
    precision: str = "bf16",
    channels_last: bool = True,
    tta: bool = True,
    val_fraction: float = 0.1,
    threads: int | None = None,
) -> GroupedPipeline:
    """A pretrained backbone and a new linear head, fine-tuned end to end (:mod:`brainmri.nets.finetune`).

    Every keyword after ``device`` is a ``--params`` setting
    (``transfer-finetune.size=160``): ``backbone``
    (:func:`brainmri.nets.backbones.available_backbones`), ``weights_file``
    (a local state dict), ``size`` (input side, px), ``epochs``, ``lr`` (the
    head's peak learning rate), ``backbone_lr_factor`` (the backbone's peak
    is ``lr`` times this), ``unfreeze_after`` (epochs with a frozen backbone
    first; 0: never frozen), ``frozen_stages`` (the backbone's first stages
    stay frozen in every epoch, saving their backward pass), ``weight_decay``, ``batch_size``,
    ``label_smoothing``, ``class_weight`` (``balanced`` weighs each class's
    loss by its inverse frequency; ``null``: none, as on alzheimer-mri, where
    the 25x weight of a class of 64 slices made fine-tuning predict it for
    almost everything), ``augment`` (flips, small affine,
    brightness-contrast; ``appearance``, ``tissue-contrast``: :mod:`brainmri.training.augment`),
    ``style`` (``mixstyle`` or ``dsu``: early feature statistics perturbed in training,
    :mod:`brainmri.training.style`), ``sampling`` (:mod:`brainmri.training.sampling`), ``dropout`` (before the
    head), ``ema_decay``,
    ``precision`` (``bf16`` autocast or ``fp32``), ``channels_last``,
    ``tta`` (average the logits of each image and its mirror, in prediction
    and calibration), ``val_fraction`` (grouped validation part choosing
    the epoch and fitting the temperature) and ``threads``.

    The defaults are the recipe measured in ``bench/finetune_benchmark.sh``
    (docs/benchmarks.md, "Transfer learning: fine-tuning"): 128 px, bf16
    autocast with channels-last memory (4-10x faster than fp32 on the
    CPU), the first 3 of EfficientNet-Lite0's 9 stages frozen (1.3x faster
    training steps), the whole rest learning at ``lr`` from the first epoch
    (``backbone_lr_factor`` 1). The gentler Howard and Ruder schedule (one
    frozen epoch, backbone at 0.1x) reached only 0.937 validation accuracy
    in 8 epochs where this one reached 0.975 in 4: MRI slices are far from
    ImageNet, and the backbone has to move. Both are settings. A trained
    bundle predicts with the test-time augmentation it was trained with.

    References
    ----------
    J. Howard and S. Ruder, "Universal language model fine-tuning for text
    classification", Proc. 56th ACL, 328-339, 2018. DOI: 10.18653/v1/P18-1031

    M. Tan and Q. V. Le, "EfficientNet: Rethinking model scaling for
    convolutional neural networks", Proc. 36th ICML, PMLR 97:6105-6114, 2019.
    """
    from brainmri.nets.finetune import finetune_net  # torch: the deep extra

    _check_finetune(backbone, weights_file, size=size, dropout=dropout)
    images = ImageArrays(size=size, preprocess=preprocess, cache_dir=cache_dir, n_jobs=n_jobs)
    module_params = {"backbone_name": backbone, "weights_file": weights_file, "dropout": dropout}
    net = TorchClassifier(finetune_net, module_params=module_params, **_finetune_training(locals()))
    return GroupedPipeline([("images", images), ("classifier", net)])


#: The settings of ``transfer-finetune`` that go to its TorchClassifier as they are.
_FINETUNE_TRAINING = (
    "epochs",
    "lr",
    "weight_decay",
    "batch_size",
    "label_smoothing",
    "class_weight",
    "augment",
    "style",
    "sampling",
    "backbone_lr_factor",
    "unfreeze_after",
    "frozen_stages",
    "tta",
    "ema_decay",
    "precision",
    "channels_last",
    "val_fraction",
    "device",
    "threads",
    "seed",
    "work_dir",
)


def _finetune_training(arguments: dict) -> dict:
    """The :data:`_FINETUNE_TRAINING` entries of ``transfer_finetune``'s ``locals()``."""
    return {name: arguments[name] for name in _FINETUNE_TRAINING}


def _check_finetune(backbone: str, weights_file: str | None, *, size, dropout) -> None:
    """Refuse an unknown backbone, a missing weights file, or a ``size`` or ``dropout`` out of range, before any
    image is read."""
    from brainmri.nets.backbones import weights_for  # torch: the deep extra

    weights_for(backbone, weights_file)
    checks = [
        ("size", size, isinstance(size, int) and size >= 32, "an integer of at least 32 (pixels)"),
        ("dropout", dropout, isinstance(dropout, (int, float)) and 0 <= dropout < 1, "a number in [0, 1)"),
    ]
    for name, value, ok, allowed in checks:
        if not ok:
            raise ConfigError(f"--params transfer-finetune.{name}={value!r}: use {allowed}")
