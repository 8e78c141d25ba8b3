"""The parts of a fitted method: the step that reads the images and the classifier at its end.

A method is a scikit-learn ``Pipeline`` (classical, transfer-features,
hybrid and deep methods alike) or a single estimator; these functions are
the one way to reach its parts, for every layer that needs them (robustness,
evaluation, models, explanations).
"""

from __future__ import annotations

import copy


def final_step(model):
    """The classifier at the end of a method: the last step of a pipeline, or the method itself.

    >>> from sklearn.pipeline import make_pipeline
    >>> from sklearn.preprocessing import StandardScaler
    >>> from sklearn.linear_model import LogisticRegression
    >>> type(final_step(make_pipeline(StandardScaler(), LogisticRegression()))).__name__
    'LogisticRegression'
    """
    return model.steps[-1][1] if _is_pipeline(model) else model


def first_step(model):
    """The step that reads the images: the first step of a pipeline, or the method itself."""
    return model.steps[0][1] if _is_pipeline(model) else model


def split_model(model):
    """``(head, final)``: the steps before a method's classifier (None when none), and the classifier."""
    if _is_pipeline(model):
        return (model[:-1] if len(model.steps) > 1 else None), model.steps[-1][1]
    return None, model


def all_steps(model) -> list:
    """Every step of a method, in order (the method itself when it is not a pipeline)."""
    return [step for _, step in model.steps] if _is_pipeline(model) else [model]


def with_final_step(model, final):
    """A shallow copy of the method with ``final`` in place of its classifier (``final`` itself for a single
    estimator); the original is not changed."""
    if not _is_pipeline(model):
        return final
    out = copy.copy(model)
    out.steps = [*model.steps[:-1], (model.steps[-1][0], final)]
    return out


def _is_pipeline(model) -> bool:
    # By its steps, as scikit-learn's own meta-estimators do, rather than isinstance(Pipeline): importing
    # sklearn.pipeline takes a second, and the command line reaches this module before it needs scikit-learn.
    return hasattr(model, "steps")
