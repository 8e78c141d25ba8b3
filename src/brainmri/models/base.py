"""What every method shares: the method contract, the grouped pipeline, the calibrated classifier.

The contract (:class:`Method`) is what the runners, tuning, serving and the
explanations may rely on; :func:`brainmri.steps.final_step` is the one way
to reach the classifier at the end of a method, whatever its shape. The
contract test (``tests/models/test_contract.py``) checks every registered
method against it, a method added later included.
"""

from __future__ import annotations

import inspect
from typing import Protocol, runtime_checkable

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from brainmri.models.persist import load_steps, save_steps


@runtime_checkable
class Method(Protocol):
    """The contract of a method: what its builder (``MethodSpec.build``) returns.

    Required
    --------
    ``fit(X, y, groups=None)``
        ``X``: an array of image file paths (or 2D/3D arrays), ``y`` their
        labels, ``groups`` one group id per item (subject, near-duplicate
        cluster or look-alike group: the grouping of the outer split). Every
        split the method makes inside ``fit`` (hyperparameter search,
        probability calibration, early stopping, validation) keeps each group
        on one side, e.g. through :func:`brainmri.models.validation.inner_splits`.
        Returns the method. Called without groups, it splits item by item.
    ``predict_proba(X)``
        Float array of shape ``(n_items, n_classes)`` whose rows sum to 1,
        columns in :attr:`classes_` order. An item of the wrong kind (a
        volume for a slice method, or the reverse) is a one-line
        :class:`~brainmri.errors.DataError`, never a stray exception.
    ``classes_``
        The class names seen in ``fit``, sorted.
    ``get_params()`` / ``set_params()``
        A scikit-learn estimator's, so that ``sklearn.base.clone`` makes an
        unfitted copy with the same settings; the same seed gives the same
        probabilities on the CPU.

    Optional hooks, each read where present, never by method name
    --------------------------------------------------------------
    ``params_`` (the method, after ``fit``)
        What it chose and how (hyperparameters, calibration,
        ``params_["inner_cv"]``), written to results and manifests.
    ``history_`` (the final step)
        Per-epoch records (``epoch``, ``val_loss``, ``val_accuracy``...); the
        report draws learning curves, ``train`` reports the kept epoch.
    ``input_shape_``, ``module_``, ``embed(Xt)`` (the final step)
        A torch classifier's input size, its network (explanations, ONNX,
        test-time adaptation) and the embedding of the OOD score.
    ``preprocess_`` (the first step)
        The preprocessing it learned (Nyúl landmarks), recorded in bundles.
    ``illustrate(images)`` (the final step)
        Pictures of what the method computes, shown in the report.
    ``save_state(folder, prefix)`` / ``load_state(folder, prefix)`` (a step)
        Its own files in a bundle, instead of a skops file
        (:mod:`brainmri.models.persist`).
    """

    classes_: np.ndarray

    def fit(self, X, y, groups=None, sources=None) -> Method: ...

    def predict_proba(self, X) -> np.ndarray: ...

    def get_params(self, deep: bool = True) -> dict: ...

    def set_params(self, **params) -> Method: ...


class GroupedPipeline(Pipeline):
    """A ``Pipeline`` whose ``fit`` hands the training items' group ids to its final step.

    Methods receive the outer split's groups as an explicit ``groups``
    argument (see :mod:`brainmri.models.registry`) rather than through
    scikit-learn's metadata routing: routing must be switched on globally
    (``sklearn.set_config(enable_metadata_routing=True)``), which changes how
    every other scikit-learn object in the process handles fit parameters,
    and deep methods outside scikit-learn would need their own routing. An
    explicit argument is visible in the signature and works for both.

    Attributes
    ----------
    params_ : dict
        What the final step chose while fitting (its ``params_``), and what
        earlier steps learned (theirs, such as the Nyúl landmarks of a
        first step).
    """

    def fit(self, X, y=None, groups=None, sources=None, **params):
        """Fit every step; ``groups`` (one id per item of ``X``) goes to the final step's ``fit``, and so do
        ``sources`` (one per item) when that ``fit`` takes them (the deep methods' source-balanced sampling)."""
        name, final = self.steps[-1]
        if groups is not None:
            params[f"{name}__groups"] = groups
        if sources is not None and "sources" in inspect.signature(final.fit).parameters:
            params[f"{name}__sources"] = sources
        return super().fit(X, y, **params)

    @property
    def params_(self) -> dict:
        learned = [getattr(step, "params_", {}) for _, step in self.steps[:-1]]
        return {**{k: v for d in learned for k, v in d.items()}, **self.steps[-1][1].params_}

    def save_state(self, folder, prefix: str) -> list[str]:
        """Write the fitted steps as files ``prefix<step>.*`` in ``folder`` (:func:`~brainmri.models.persist.save_steps`)."""
        return save_steps(self.steps, folder, prefix)

    def load_state(self, folder, prefix: str) -> GroupedPipeline:
        """Restore into this unfitted pipeline (made by the same builder) what :meth:`save_state` wrote."""
        self.steps = load_steps(self.steps, folder, prefix)
        return self


class CalibratedClassifier(ClassifierMixin, BaseEstimator):
    """Shared part of brainmri's calibrated classifiers: calibrate on the inner folds, predict from the calibrated
    model (:class:`~brainmri.models.classical.CalibratedSVC`, :class:`~brainmri.models.classical.CalibratedForest`,
    :class:`~brainmri.models.transfer.CalibratedLogistic`).

    A subclass sets ``calibration`` (None, ``"sigmoid"`` or ``"isotonic"``)
    and ``ensemble`` in its ``__init__`` and calls :meth:`calibrate` in its
    ``fit``.
    """

    def calibrate(self, estimator, X, y, splits) -> None:
        """Fit ``estimator`` on ``X``, ``y`` and calibrate it on the inner ``splits`` (or not, ``calibration=None``)."""
        if self.calibration is None:
            # brainmri tune scores its trials this way (one fit instead of one per inner fold and a final one):
            # hyperparameters are chosen on the uncalibrated predictions, as GridSearchCV does inside fit.
            self.calibrated_ = estimator.fit(X, y)
        else:
            self.calibrated_ = CalibratedClassifierCV(
                estimator, method=self.calibration, cv=splits, ensemble=self.ensemble
            ).fit(X, y)
        self.classes_ = self.calibrated_.classes_

    def calibration_params(self, how: str) -> dict:
        """What the calibration was, for ``params_``; ``how`` names the inner split."""
        if self.calibration is None:
            return {"calibration": "none", "inner_cv": how}
        return {
            "calibration": f"{self.calibration}{'' if self.ensemble else ', one calibrator on out-of-fold scores'}",
            "inner_cv": how,
        }

    def predict_proba(self, X) -> np.ndarray:
        """Calibrated class probabilities, shape (n_items, n_classes), columns in ``classes_`` order.

        Raises
        ------
        AttributeError
            Fitted with ``calibration=None`` around an SVM, which has no probabilities.
        """
        check_is_fitted(self, "calibrated_")
        if not hasattr(self.calibrated_, "predict_proba"):
            raise AttributeError(
                f"{type(self).__name__} was fitted with calibration=None: it has no probabilities; "
                "use predict, or fit with a calibration"
            )
        return self.calibrated_.predict_proba(np.asarray(X, dtype=np.float64))

    def predict(self, X) -> np.ndarray:
        """The most probable class of every item (the uncalibrated model's prediction with ``calibration=None``)."""
        check_is_fitted(self, "calibrated_")
        if self.calibration is None:
            return self.calibrated_.predict(np.asarray(X, dtype=np.float64))
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
