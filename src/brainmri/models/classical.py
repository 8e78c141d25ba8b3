"""Classical methods of the seed paper: texture/shape features + SVM or random forest.

Each builder returns a scikit-learn ``Pipeline`` whose first step reads the
image files and computes (cached) features, so every method takes image
paths like the deep methods do. Every method returns calibrated class
probabilities: ``CalibratedClassifierCV`` with sigmoid (Platt) scaling
fitted by internal cross-validation on the training data only (scikit-learn
1.9 deprecates ``SVC(probability=True)``).
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import GridSearchCV, StratifiedKFold
from sklearn.multiclass import OneVsOneClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted

from brainmri.errors import DataError
from brainmri.features import GLCMFeatures, IntensityFeatures, OtsuFeatures, ShapeFeatures, WaveletFeatures
from brainmri.features.extract import ImageFeatures
from brainmri.models.registry import register_method

#: Folds of the internal cross-validation (kernel search and calibration).
INNER_FOLDS = 3

#: Kernels and C/gamma searched by ``glcm-svm`` (Kumari 2013 chose the kernel by CV).
SVM_GRID = [
    {"svc__kernel": ["linear"], "svc__C": [0.1, 1.0]},
    {"svc__kernel": ["rbf"], "svc__C": [1.0, 10.0, 100.0], "svc__gamma": ["scale"]},
    {"svc__kernel": ["poly"], "svc__degree": [2, 3], "svc__C": [1.0, 10.0], "svc__gamma": ["scale"]},
]


def feature_sets() -> dict[str, list[tuple[str, BaseEstimator]]]:
    """The extractor lists used by the classical methods, by name."""
    glcm = ("glcm", GLCMFeatures())
    zhan = [glcm, ("intensity", IntensityFeatures()), ("otsu", OtsuFeatures()), ("shape", ShapeFeatures())]
    return {
        "glcm": [glcm],
        "multifeature": zhan,
        "extended": zhan + [("wavelet", WaveletFeatures())],
    }


def check_class_counts(y, need: int, purpose: str) -> None:
    """Raise a clear error when a class has fewer than ``need`` training items."""
    labels, counts = np.unique(np.asarray(y), return_counts=True)
    if len(labels) < 2:
        raise DataError(f"training data has a single class ({labels[0] if len(labels) else 'none'}); a classifier needs at least two")
    small = [f"'{lab}' ({n})" for lab, n in zip(labels, counts) if n < need]
    if small:
        raise DataError(
            f"class(es) {', '.join(small)} have fewer than {need} training images, too few for {purpose}; "
            "add images, merge classes, or use fewer folds"
        )


class CalibratedSVC(ClassifierMixin, BaseEstimator):
    """Standardisation + SVM, kernel and C chosen by inner CV, Platt-calibrated probabilities.

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
    random_state : int
    n_jobs : int
        Parallel jobs of the grid search.

    Attributes
    ----------
    best_params_ : dict
        The parameters chosen by the inner search (or the fixed ones).
    classes_ : ndarray
    """

    def __init__(self, *, param_grid=None, svc_params=None, one_vs_one=False, random_state=0, n_jobs=1):
        self.param_grid = param_grid
        self.svc_params = svc_params
        self.one_vs_one = one_vs_one
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y):
        X = np.asarray(X, dtype=np.float64)
        y = np.asarray(y)
        check_class_counts(y, INNER_FOLDS, f"{INNER_FOLDS}-fold inner cross-validation")
        base = Pipeline([("scale", StandardScaler()), ("svc", SVC(**(self.svc_params or {})))])
        inner = StratifiedKFold(INNER_FOLDS, shuffle=True, random_state=self.random_state)
        if self.param_grid:
            search = GridSearchCV(base, self.param_grid, cv=inner, n_jobs=self.n_jobs, scoring="balanced_accuracy")
            search.fit(X, y)
            base.set_params(**search.best_params_)
            self.best_params_ = {k.removeprefix("svc__"): v for k, v in search.best_params_.items()}
        else:
            self.best_params_ = dict(self.svc_params or {})
        estimator = OneVsOneClassifier(base, n_jobs=1) if self.one_vs_one else base
        self.calibrated_ = CalibratedClassifierCV(estimator, method="sigmoid", cv=inner).fit(X, y)
        self.classes_ = self.calibrated_.classes_
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "calibrated_")
        return self.calibrated_.predict_proba(np.asarray(X, dtype=np.float64))

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class CalibratedForest(ClassifierMixin, BaseEstimator):
    """Random forest with sigmoid-calibrated probabilities.

    Parameters
    ----------
    n_estimators : int
    random_state : int
    n_jobs : int
    """

    def __init__(self, *, n_estimators=300, random_state=0, n_jobs=1):
        self.n_estimators = n_estimators
        self.random_state = random_state
        self.n_jobs = n_jobs

    def fit(self, X, y):
        y = np.asarray(y)
        check_class_counts(y, INNER_FOLDS, "calibrating probabilities by cross-validation")
        forest = RandomForestClassifier(n_estimators=self.n_estimators, random_state=self.random_state, n_jobs=self.n_jobs)
        inner = StratifiedKFold(INNER_FOLDS, shuffle=True, random_state=self.random_state)
        self.calibrated_ = CalibratedClassifierCV(forest, method="sigmoid", cv=inner).fit(X, y)
        self.classes_ = self.calibrated_.classes_
        return self

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self, "calibrated_")
        return self.calibrated_.predict_proba(X)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


def _pipeline(features: str, classifier, *, preprocess, cache_dir, n_jobs) -> Pipeline:
    extract = ImageFeatures(feature_sets()[features], preprocess=preprocess, cache_dir=cache_dir, n_jobs=n_jobs)
    return Pipeline([("features", extract), ("classifier", classifier)])


@register_method(
    "glcm-svm",
    summary="GLCM texture features + SVM, kernel and C chosen by inner CV",
    reference="Kumari R. (2013), SVM classification an approach on detecting abnormality in brain MRI images, "
    "Int. J. Engineering Research and Applications 3(4):1686-1690",
)
def glcm_svm(*, seed: int = 0, n_jobs: int = 1, cache_dir=None, preprocess=None) -> Pipeline:
    """GLCM features, standardisation, SVM with kernel/C/gamma chosen by 3-fold inner CV (Kumari 2013)."""
    return _pipeline("glcm", CalibratedSVC(param_grid=SVM_GRID, random_state=seed, n_jobs=n_jobs),
                     preprocess=preprocess, cache_dir=cache_dir, n_jobs=n_jobs)


@register_method(
    "multifeature-rf",
    summary="texture + gray-level + histogram + Otsu + shape features + random forest",
    reference="Zhan T. et al. (2013), Automatic detection of abnormal brain MR images using texture, gray-level "
    "and histogram features (as reviewed in the seed paper)",
)
def multifeature_rf(*, seed: int = 0, n_jobs: int = 1, cache_dir=None, preprocess=None) -> Pipeline:
    """GLCM, first-order, histogram, Otsu and shape features with a random forest (Zhan et al. 2013)."""
    return _pipeline("multifeature", CalibratedForest(random_state=seed, n_jobs=n_jobs),
                     preprocess=preprocess, cache_dir=cache_dir, n_jobs=n_jobs)


@register_method(
    "ovo-svm",
    summary="one-vs-one RBF SVMs on texture, intensity, Otsu, shape and wavelet features (multi-class staging)",
    reference="Zheng et al. (2023), pairwise SVM classification from binary to 5-class Alzheimer's disease "
    "staging (as reviewed in the seed paper)",
)
def ovo_svm(*, seed: int = 0, n_jobs: int = 1, cache_dir=None, preprocess=None) -> Pipeline:
    """Explicit one-vs-one RBF SVMs on every classical feature, calibrated (Zheng et al. 2023)."""
    classifier = CalibratedSVC(svc_params={"kernel": "rbf", "C": 10.0, "gamma": "scale"}, one_vs_one=True,
                               random_state=seed, n_jobs=n_jobs)
    return _pipeline("extended", classifier, preprocess=preprocess, cache_dir=cache_dir, n_jobs=n_jobs)


@register_method(
    "rf",
    summary="random forest on the features of ovo-svm (its RF counterpart)",
    reference="Zheng et al. (2023), random-forest baseline for Alzheimer's disease staging "
    "(as reviewed in the seed paper)",
)
def rf(*, seed: int = 0, n_jobs: int = 1, cache_dir=None, preprocess=None) -> Pipeline:
    """Random forest on every classical feature, calibrated (Zheng et al. 2023's RF baseline)."""
    return _pipeline("extended", CalibratedForest(random_state=seed, n_jobs=n_jobs),
                     preprocess=preprocess, cache_dir=cache_dir, n_jobs=n_jobs)


