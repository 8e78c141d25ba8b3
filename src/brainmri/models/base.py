"""What every method shares: the method contract, the grouped pipeline, the calibrated classifier.

The contract (:class:`Method`) is what the runners, tuning, serving and the
explanations may rely on; :func:`final_step` is the one way to reach the
classifier at the end of a method, whatever its shape.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.pipeline import Pipeline
from sklearn.utils.validation import check_is_fitted

from brainmri.models.persist import load_steps, save_steps


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

    def fit(self, X, y=None, groups=None, **params):
        """Fit every step; ``groups`` (one id per item of ``X``) goes to the final step's ``fit``."""
        if groups is not None:
            params[f"{self.steps[-1][0]}__groups"] = groups
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
            self.calibrated_ = CalibratedClassifierCV(estimator, method=self.calibration, cv=splits,
                                                      ensemble=self.ensemble).fit(X, y)
        self.classes_ = self.calibrated_.classes_

    def calibration_params(self, how: str) -> dict:
        """What the calibration was, for ``params_``; ``how`` names the inner split."""
        if self.calibration is None:
            return {"calibration": "none", "inner_cv": how}
        return {"calibration": f"{self.calibration}{'' if self.ensemble else ', one calibrator on out-of-fold scores'}",
                "inner_cv": how}

    def predict_proba(self, X) -> np.ndarray:
        """Calibrated class probabilities, shape (n_items, n_classes), columns in ``classes_`` order.

        Raises
        ------
        AttributeError
            Fitted with ``calibration=None`` around an SVM, which has no probabilities.
        """
        check_is_fitted(self, "calibrated_")
        if not hasattr(self.calibrated_, "predict_proba"):
            raise AttributeError(f"{type(self).__name__} was fitted with calibration=None: it has no probabilities; "
                                 "use predict, or fit with a calibration")
        return self.calibrated_.predict_proba(np.asarray(X, dtype=np.float64))

    def predict(self, X) -> np.ndarray:
        """The most probable class of every item (the uncalibrated model's prediction with ``calibration=None``)."""
        check_is_fitted(self, "calibrated_")
        if self.calibration is None:
            return self.calibrated_.predict(np.asarray(X, dtype=np.float64))
        return self.classes_[self.predict_proba(X).argmax(axis=1)]
