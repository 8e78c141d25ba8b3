"""The out-of-distribution score: how unlike the training images an image is, per prediction.

Every method reads its prediction from an embedding: the features its
classifier receives (classical and transfer-features methods) or the input
of a network's last linear layer (deep methods, :meth:`~brainmri.models.torch_classifier.TorchClassifier.embed`).
One detector serves them all: the class-conditional Mahalanobis distance of
Lee et al. (2018), the smallest over the classes of the distance to the
class mean under one covariance shared by the classes (standardised
features, Ledoit-Wolf shrinkage so that it is well conditioned with fewer
items than dimensions).

The distance is calibrated on the training data. Distances of training
items to a Gaussian fitted on those same items are too small (the more so
the more dimensions), so the reference distribution is cross-fitted: each
training item's distance comes from a Gaussian fitted on the other
:data:`CALIBRATION_FOLDS` - 1 folds. The score of an image is the share of
those training distances below its own, from 0 (typical) to 1 (farther than
every training image); an image beyond the 95th training percentile is
flagged as unlike the training data (:data:`FLAG_QUANTILE`). For a deep
method the network has also learned its training images, so clean test
images score somewhat higher than the training ones: read the flag as a
warning, and the benchmark's AUC as the evidence.

An embedding does not see every change of acquisition: the GLCM texture
features of ``glcm-svm`` barely move when an image is blurred, down-sampled
or smeared by motion or ghosts. So the score of a prediction
(:class:`OODDetector`) has a second detector of the same kind on the
image's acquisition descriptors (:mod:`brainmri.features.acquisition`:
sharpness, noise, block grid, ghosts, background, intensity quantiles, grey
levels), fitted and calibrated in the same way whatever the method. The two
are combined by their larger squared distance, each in units of its own
99th cross-fitted training percentile (:data:`UNIT_QUANTILE`), and that
combined distance is calibrated again on the training items' cross-fitted
values: the score stays a training percentile, and about 5% of images like
the training ones are flagged, while an image unlike the training data in
either respect is flagged. On brain-tumor-mri the descriptors raise the AUC
of glcm-svm's score, severely shifted against clean test images, from 0.833
to 0.908 (docs/benchmarks.md).

Where the flag stands is a trade: until version 3 it stood at the 99th
percentile. Trained on brain-tumor-mri and tested on TCGA gliomas (another
publisher and sequence), the recommended network's score flagged 1.8% of
the in-domain test and 30% of the wrong calls on the new source there, 5.0%
and 68% at the 95th (docs/benchmarks.md, "An out-of-distribution flag that
catches a new source"): an alert that misses two wrong calls of three on
another hospital's images protects nobody, and 5% of in-domain false flags
is the budget issue 23 allows. The score itself is unchanged.

A network's global average pool keeps the mean of its last feature map
over positions (the embedding) and throws away how much it varies. That
spread told another publisher's gliomas from the training source better
than the embedding did (wrong calls flagged by each alone at its 95th
percentile: 76% against 59%, docs/benchmarks.md), so since version 4 a
network with a global pool has a third detector of the same kind on it
(:func:`~brainmri.training.batches.capture_embedding`), combined like the
other two.

References
----------
K. Lee, K. Lee, H. Lee and J. Shin, "A simple unified framework for detecting
out-of-distribution samples and adversarial attacks", NeurIPS 2018.
https://doi.org/10.48550/arXiv.1807.03888

O. Ledoit and M. Wolf, "A well-conditioned estimator for large-dimensional
covariance matrices", Journal of Multivariate Analysis 88(2):365-411, 2004.
https://doi.org/10.1016/S0047-259X(03)00096-4
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.covariance import LedoitWolf
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.validation import check_is_fitted

from brainmri.errors import DataError
from brainmri.features.acquisition import DESCRIPTOR_PREPROCESS, AcquisitionDescriptors
from brainmri.features.extract import ImageFeatures
from brainmri.steps import split_model
from brainmri.timing import Stopwatch

#: Folds of the cross-fitted training distances that calibrate the score.
CALIBRATION_FOLDS = 5
#: Training percentile beyond which an image is flagged as unlike the training data (0.99 before version 3).
FLAG_QUANTILE = 0.95
#: Training percentile whose distance is a detector's unit when two are combined (:class:`OODDetector`).
UNIT_QUANTILE = 0.99
#: Version of the score's definition, in results and bundles (2: the acquisition detector added; 3: flagged at
#: the 95th percentile, not the 99th; the score itself is the same; 4: a network's spread, a detector of its own).
OOD_VERSION = 4
#: Quantiles of the training distances kept to turn a distance into a score (0, 0.005, ..., 1).
REFERENCE_QUANTILES = np.linspace(0.0, 1.0, 201)


def embed(final, Xt) -> np.ndarray:
    """The embedding the classifier ``final`` reads its prediction from, float64 of shape (n, d).

    A classifier with an ``embed`` method (a torch classifier) gives its own;
    for any other, the features it receives are the embedding.
    """
    return _finite(final.embed(Xt) if hasattr(final, "embed") else np.asarray(Xt).reshape(len(Xt), -1))


def _finite(Z) -> np.ndarray:
    """An embedding as float64 with every NaN or infinite value set to 0."""
    return np.nan_to_num(np.asarray(Z, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)


def _calibration(held_out: np.ndarray) -> tuple[np.ndarray, float]:
    """Reference quantiles (at :data:`REFERENCE_QUANTILES`) and unit (at :data:`UNIT_QUANTILE`) of cross-fitted
    training distances."""
    return np.quantile(held_out, REFERENCE_QUANTILES), float(np.quantile(held_out, UNIT_QUANTILE))


def _flag_distance(reference: np.ndarray) -> float:
    """The distance at :data:`FLAG_QUANTILE` of the training distances, from their reference quantiles."""
    return float(np.interp(FLAG_QUANTILE, REFERENCE_QUANTILES, reference))


def _score(d, reference: np.ndarray) -> np.ndarray:
    """Share of the training distances below each of the distances ``d``, from their reference quantiles."""
    # Tied reference quantiles (a flat stretch) would make interp pick one end; take their upper end.
    keep = np.r_[reference[1:] > reference[:-1], True]
    return np.interp(np.asarray(d, dtype=np.float64), reference[keep], REFERENCE_QUANTILES[keep], left=0.0, right=1.0)


def _finite_columns(Z: np.ndarray) -> np.ndarray:
    """``Z`` with every NaN or infinite value replaced by the mean of its column's finite values (0 when none).

    Calibration must not fail on one degenerate training item; the
    distance of such an item at prediction time is infinite instead
    (:meth:`MahalanobisOOD.distance`).
    """
    finite = np.isfinite(Z)
    if finite.all():
        return Z
    counts = finite.sum(0)
    means = np.where(counts > 0, np.where(finite, Z, 0.0).sum(0) / np.maximum(counts, 1), 0.0)
    return np.where(finite, Z, means)


def _gaussian(Z: np.ndarray, y: np.ndarray):
    """Class means and the shared precision matrix of standardised embeddings ``Z`` with labels ``y``."""
    classes = np.unique(y)
    means = np.stack([Z[y == c].mean(0) for c in classes])
    centred = Z - means[np.searchsorted(classes, y)]
    return means, LedoitWolf(assume_centered=True).fit(centred).precision_


def _distance(Z: np.ndarray, means: np.ndarray, precision: np.ndarray) -> np.ndarray:
    """Smallest squared Mahalanobis distance of each row of ``Z`` to the class means."""
    # A matrix product (BLAS) and a row sum: the same numbers as einsum("ij,jk,ik->i"), which without optimize
    # loops in C over n * d * d terms (4 s for 300 images of a 1280-d embedding; this takes milliseconds).
    d = [(((Z - m) @ precision) * (Z - m)).sum(axis=1) for m in means]
    return np.min(d, axis=0)


class MahalanobisOOD(BaseEstimator):
    """Out-of-distribution score of embeddings, calibrated on the training ones.

    Parameters
    ----------
    seed : int
        Seed of the calibration folds.

    Attributes
    ----------
    center_, scale_ : ndarray of shape (d,)
        Standardisation of the embeddings.
    means_ : ndarray of shape (n_classes, d)
    precision_ : ndarray of shape (d, d)
    reference_ : ndarray of shape (201,)
        Quantiles of the cross-fitted training distances, at :data:`REFERENCE_QUANTILES`.
    unit_ : float
        The training distance at :data:`UNIT_QUANTILE` (saved as ``threshold``, its name before version 3).
    training_distances_ : ndarray of shape (n,)
        The cross-fitted distance of each training item (not saved by :meth:`to_arrays`).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> ood = MahalanobisOOD().fit(rng.normal(size=(200, 3)), np.repeat(["a", "b"], 100))
    >>> ood.score(np.array([[0.0, 0.0, 0.0], [9.0, 9.0, 9.0]])).round(2).tolist()
    [0.0, 1.0]
    >>> ood.flag(np.array([[0.0, 0.0, 0.0], [9.0, 9.0, 9.0]])).tolist()
    [False, True]
    """

    def __init__(self, *, seed: int = 0):
        self.seed = seed

    def fit(self, Z, y) -> MahalanobisOOD:
        """Fit the Gaussian on the training embeddings ``Z`` (n, d) with labels ``y``, and calibrate it.

        Raises
        ------
        DataError
            Fewer than two items per class, or embeddings and labels of other lengths.
        """
        Z, y = np.asarray(Z, dtype=np.float64), np.asarray(y)
        if len(Z) != len(y):
            raise DataError(f"out-of-distribution score: {len(Z)} embeddings but {len(y)} labels")
        Z = _finite_columns(Z)
        classes, counts = np.unique(y, return_counts=True)
        if len(Z) < 4 or counts.min() < 2:
            raise DataError(
                f"out-of-distribution score: needs at least 2 training items per class, got "
                f"{dict(zip(classes.tolist(), counts.tolist(), strict=True))}"
            )
        self.center_ = Z.mean(0)
        scale = Z.std(0)
        self.scale_ = np.where(scale > 0, scale, 1.0)
        Z = (Z - self.center_) / self.scale_
        folds = min(CALIBRATION_FOLDS, int(counts.min()))
        held_out = np.empty(len(Z))
        for train, test in StratifiedKFold(folds, shuffle=True, random_state=self.seed).split(Z, y):
            held_out[test] = _distance(Z[test], *_gaussian(Z[train], y[train]))
        self.means_, self.precision_ = _gaussian(Z, y)
        self.training_distances_ = held_out
        self.reference_, self.unit_ = _calibration(held_out)
        return self

    def distance(self, Z) -> np.ndarray:
        """Squared class-conditional Mahalanobis distance of embeddings ``Z`` (n, d), float64 (n,)."""
        check_is_fitted(self, "reference_")
        Z = (np.asarray(Z, dtype=np.float64) - self.center_) / self.scale_
        finite = np.isfinite(Z).all(axis=1)
        d = np.full(len(Z), np.inf)  # an embedding with NaN or infinite values is unlike any training one
        d[finite] = _distance(Z[finite], self.means_, self.precision_)
        return d

    def score(self, Z) -> np.ndarray:
        """Share of the training distances below each embedding's: 0 like the training data, 1 unlike all of it."""
        return self.score_distance(self.distance(Z))

    def score_distance(self, d) -> np.ndarray:
        """:meth:`score` of squared distances ``d`` already computed by :meth:`distance`."""
        check_is_fitted(self, "reference_")
        return _score(d, self.reference_)

    def flag(self, Z) -> np.ndarray:
        """True for embeddings farther than :data:`FLAG_QUANTILE` of the training ones."""
        return self.score(Z) > FLAG_QUANTILE

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named arrays (saved with :func:`numpy.savez`)."""
        check_is_fitted(self, "reference_")
        return {
            "center": self.center_,
            "scale": self.scale_,
            "means": self.means_,
            "precision": self.precision_,
            "reference": self.reference_,
            "threshold": np.array(self.unit_),
        }

    @classmethod
    def from_arrays(cls, arrays) -> MahalanobisOOD:
        """A fitted detector from :meth:`to_arrays`' arrays."""
        ood = cls()
        ood.center_, ood.scale_, ood.means_ = (
            np.asarray(arrays[k], dtype=np.float64) for k in ("center", "scale", "means")
        )
        ood.precision_, ood.reference_ = np.asarray(arrays["precision"]), np.asarray(arrays["reference"])
        ood.unit_ = float(arrays["threshold"])
        return ood

    def summary(self) -> dict:
        """What manifests and results record: the method and its calibration."""
        return {
            "method": "class-conditional Mahalanobis distance of the embedding (Lee et al. 2018), "
            "Ledoit-Wolf covariance, calibrated on cross-fitted training distances",
            "dimensions": int(len(self.center_)),
            "flag_quantile": FLAG_QUANTILE,
            "threshold": round(_flag_distance(self.reference_), 6),
            "unit": round(self.unit_, 6),
            "median_training_distance": round(float(np.interp(0.5, REFERENCE_QUANTILES, self.reference_)), 6),
        }


class OODDetector(BaseEstimator):
    """The out-of-distribution score of a prediction: its embedding's detector and its acquisition's, combined.

    Two :class:`MahalanobisOOD` detectors, one on the method's embedding and
    one on the image's acquisition descriptors
    (:class:`~brainmri.features.acquisition.AcquisitionDescriptors`). The
    distance of an item is the larger of its two squared distances, each
    divided by its detector's unit (1: at the :data:`UNIT_QUANTILE` training
    percentile of that detector); it is calibrated like each detector's,
    on the training items' cross-fitted values, so that the score is a
    training percentile and :data:`FLAG_QUANTILE` of training-like items
    stay below the flag.

    Parameters
    ----------
    acquisition : bool
        Fit the acquisition detector (2D images only); False scores the
        embedding alone (3D volumes).
    seed : int
        Seed of the calibration folds.
    cache_dir : str, MemoryCache or None
        Feature cache of the descriptors (as :class:`~brainmri.features.extract.ImageFeatures`).
    n_jobs : int
        Worker processes of the descriptors.

    Attributes
    ----------
    detectors_ : dict of str to MahalanobisOOD
        ``"embedding"`` and, with ``acquisition``, ``"acquisition"``.
    reference_ : ndarray of shape (201,)
        Quantiles of the combined cross-fitted training distances.
    unit_ : float
        The combined training distance at :data:`UNIT_QUANTILE` (saved as ``threshold``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> images = rng.uniform(size=(40, 16, 16))
    >>> Z, y = rng.normal(size=(40, 3)), np.repeat(["a", "b"], 20)
    >>> ood = OODDetector().fit(Z, images, y)
    >>> sorted(ood.detectors_), ood.score(Z[:1] + 9, ood.describe(images[:1])).round(2).tolist()
    (['acquisition', 'embedding'], [1.0])
    """

    def __init__(self, *, acquisition: bool = True, seed: int = 0, cache_dir=None, n_jobs: int = 1):
        self.acquisition = acquisition
        self.seed = seed
        self.cache_dir = cache_dir
        self.n_jobs = n_jobs

    def fit(self, Z, images, y, width: int | None = None) -> OODDetector:
        """Fit and calibrate the detectors on the training embeddings ``Z`` (n, d), their ``images`` and labels ``y``.

        ``images`` are what the method reads: file paths or 2D arrays.
        ``width``: the columns of ``Z`` that are the embedding proper, when
        the rest is its spread (a network's, :meth:`~brainmri.models.torch_classifier.TorchClassifier.embed`),
        which gets a detector of its own.
        """
        y = np.asarray(y)
        Z = np.asarray(Z)
        width = Z.shape[1] if width is None else int(width)
        self.detectors_ = {"embedding": MahalanobisOOD(seed=self.seed).fit(Z[:, :width], y)}
        if Z.shape[1] > width:
            self.detectors_["spread"] = MahalanobisOOD(seed=self.seed).fit(Z[:, width:], y)
        if self.acquisition:
            self.detectors_["acquisition"] = MahalanobisOOD(seed=self.seed).fit(self.describe(images), y)
        self.reference_, self.unit_ = _calibration(
            self._combine({name: d.training_distances_ for name, d in self.detectors_.items()})
        )
        return self

    def describe(self, images) -> np.ndarray | None:
        """Acquisition descriptors of ``images`` (file paths or 2D arrays), float64 (n, 14); None without them."""
        if not self.acquisition:
            return None

        images = list(images)
        in_memory = self.n_jobs > 1 and len(images) > 1 and all(isinstance(x, np.ndarray) for x in images)
        step = ImageFeatures(
            [("acquisition", AcquisitionDescriptors())],
            preprocess=DESCRIPTOR_PREPROCESS,
            cache_dir=self.cache_dir,
            n_jobs=1 if in_memory else self.n_jobs,
        ).fit(None)
        if not in_memory:
            return step.transform(images)
        # Images already read (predict's batches): threads share them without pickling, and the descriptors'
        # numpy and scipy calls release the GIL enough for 7.5 -> 5.4 ms per image on 2 cores; worker processes
        # were 3.6 ms once warm but cost 1.3 s to start in every command.
        parts = np.array_split(np.arange(len(images)), min(self.n_jobs, len(images)))
        with ThreadPoolExecutor(len(parts)) as pool:
            return np.vstack(list(pool.map(lambda part: step.transform([images[k] for k in part]), parts)))

    def _combine(self, distances: dict[str, np.ndarray]) -> np.ndarray:
        return np.max([distances[name] / max(d.unit_, 1e-12) for name, d in self.detectors_.items()], axis=0)

    def distance(self, Z, descriptors=None) -> np.ndarray:
        """Combined distance of embeddings ``Z`` (n, d) and their :meth:`describe` rows, float64 (n,)."""
        check_is_fitted(self, "reference_")
        Z = np.asarray(Z)
        width = len(self.detectors_["embedding"].center_)
        # Columns beyond the detectors' (a spread that a detector fitted before version 4 did not read) are ignored.
        spread = len(self.detectors_["spread"].center_) if "spread" in self.detectors_ else 0
        parts = {"embedding": Z[:, :width], "spread": Z[:, width : width + spread], "acquisition": descriptors}
        return self._combine({name: d.distance(parts[name]) for name, d in self.detectors_.items()})

    def score(self, Z, descriptors=None) -> np.ndarray:
        """Share of the training items whose combined distance is below each item's (0 to 1)."""
        return self.score_distance(self.distance(Z, descriptors))

    def score_distance(self, d) -> np.ndarray:
        """:meth:`score` of combined distances ``d`` already computed by :meth:`distance`."""
        check_is_fitted(self, "reference_")
        return _score(d, self.reference_)

    def to_arrays(self) -> dict[str, np.ndarray]:
        """The fitted state as named arrays (``embedding.center``, ..., ``reference``, ``threshold``)."""
        check_is_fitted(self, "reference_")
        return {
            **{f"{name}.{k}": v for name, d in self.detectors_.items() for k, v in d.to_arrays().items()},
            "reference": self.reference_,
            "threshold": np.array(self.unit_),
        }

    @classmethod
    def from_arrays(cls, arrays) -> OODDetector:
        """A fitted detector from :meth:`to_arrays`' arrays, or from a :class:`MahalanobisOOD`'s (bundles saved
        before the acquisition detector: their embedding detector alone, with the same scores as then)."""
        keys = set(arrays.keys()) if hasattr(arrays, "keys") else set(arrays.files)
        if "embedding.center" not in keys:
            embedding = MahalanobisOOD.from_arrays(arrays)
            ood = cls(acquisition=False)
            ood.detectors_ = {"embedding": embedding}
            ood.reference_, ood.unit_ = embedding.reference_ / max(embedding.unit_, 1e-12), 1.0
            return ood
        names = [name for name in ("embedding", "spread", "acquisition") if f"{name}.center" in keys]
        ood = cls(acquisition="acquisition" in names)
        ood.detectors_ = {
            name: MahalanobisOOD.from_arrays({k.split(".", 1)[1]: arrays[k] for k in keys if k.startswith(f"{name}.")})
            for name in names
        }
        ood.reference_, ood.unit_ = np.asarray(arrays["reference"]), float(arrays["threshold"])
        return ood

    def summary(self) -> dict:
        """What manifests and results record: the method, its calibration and each detector's."""
        check_is_fitted(self, "reference_")
        parts = (" and of its spread" if "spread" in self.detectors_ else "") + (
            " and of the image's acquisition descriptors" if "acquisition" in self.detectors_ else ""
        )
        return {
            "method": f"class-conditional Mahalanobis distance of the embedding{parts} (Lee et al. 2018), "
            "Ledoit-Wolf covariance, calibrated on cross-fitted training distances"
            + (", the largest of them in units of its 99th percentile" if parts else ""),
            "version": OOD_VERSION,
            "dimensions": int(len(self.detectors_["embedding"].center_)),
            "flag_quantile": FLAG_QUANTILE,
            "threshold": round(_flag_distance(self.reference_), 6),
            "median_training_distance": round(float(np.interp(0.5, REFERENCE_QUANTILES, self.reference_)), 6),
            "detectors": {
                name: {k: v for k, v in d.summary().items() if k != "method"} for name, d in self.detectors_.items()
            },
        }


def fit_ood(model, X, y, *, seed: int = 0, acquisition: bool = True, cache_dir=None, n_jobs: int = 1) -> OODDetector:
    """An :class:`OODDetector` of a fitted method, calibrated on its training items ``X`` with labels ``y``.

    ``acquisition`` (2D images only), ``cache_dir`` and ``n_jobs`` are the detector's.
    """
    head, final = split_model(model)
    Xt = head.transform(X) if head is not None else X
    return OODDetector(acquisition=acquisition, seed=seed, cache_dir=cache_dir, n_jobs=n_jobs).fit(
        embed(final, Xt), X, np.asarray(y).astype(str), width=getattr(final, "embedding_width", None)
    )


def predict_with_ood(model, ood: OODDetector | None, X, watch=None) -> tuple[np.ndarray, np.ndarray | None]:
    """Class probabilities of a fitted method and the OOD distance of each item, in one pass of its head.

    ``watch`` (a :class:`~brainmri.timing.Stopwatch`, optional) adds the
    seconds of ``preprocessing`` (the head), ``network`` (the classifier and
    the embedding) and ``ood`` (the acquisition descriptors and distances).

    Returns
    -------
    proba : ndarray of shape (n, n_classes)
    distance : ndarray of shape (n,), or None without ``ood``
    """
    watch = watch or Stopwatch()
    head, final = split_model(model)
    with watch("preprocessing"):
        Xt = head.transform(X) if head is not None else X
    with watch("network"):
        if ood is None:
            return final.predict_proba(Xt), None
        if hasattr(final, "predict_proba_with_embedding"):  # a torch classifier: one pass of the network for both
            proba, Z = final.predict_proba_with_embedding(Xt)
            Z = _finite(Z)
        else:
            proba, Z = final.predict_proba(Xt), embed(final, Xt)
    with watch("ood"):
        return proba, ood.distance(Z, ood.describe(X))
