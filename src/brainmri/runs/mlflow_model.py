"""The MLflow ``pyfunc`` model of a brainmri bundle (:class:`BundleModel`), logged by ``train --mlflow``.

Apart from :mod:`brainmri.runs.tracking` because importing it imports ``mlflow.pyfunc`` (a second or two), which a
run that logs no bundle does not need.
"""

from __future__ import annotations

from mlflow.pyfunc import PythonModel


class BundleModel(PythonModel):
    """An MLflow ``pyfunc`` model that predicts with a brainmri bundle.

    ``predict`` takes image paths (a list, or a DataFrame whose first column holds them) and returns a DataFrame
    with one probability column per class and ``predicted``. Loading it needs brainmri installed: the bundle is
    loaded by :func:`brainmri.load_model`, with its checks.

    >>> model = mlflow.pyfunc.load_model("runs:/<run id>/model")          # doctest: +SKIP
    >>> model.predict(["scan.png"])                                       # doctest: +SKIP
    """

    def load_context(self, context) -> None:
        from brainmri.models.bundle import load_model

        self.bundle = load_model(context.artifacts["bundle"])

    def predict(self, context, model_input, params=None):
        import pandas as pd

        paths = list(model_input.iloc[:, 0]) if isinstance(model_input, pd.DataFrame) else list(model_input)
        proba = self.bundle.predict_proba([str(p) for p in paths])
        frame = pd.DataFrame(proba, columns=[str(c) for c in self.bundle.classes_])
        frame["predicted"] = [str(self.bundle.classes_[k]) for k in proba.argmax(axis=1)]
        return frame
