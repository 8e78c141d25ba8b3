"""What a fitted method takes as input: the preprocessing it learned with, and the image size it sees.

Bundles record both in their manifest (``preprocess``, ``input_size``);
explanations and the ONNX export read them to prepare images as the model
saw them in training.
"""

from __future__ import annotations

from dataclasses import replace

from brainmri.data.preprocess import Preprocess
from brainmri.steps import final_step, first_step


def fitted_preprocess(model, preprocess: Preprocess) -> Preprocess:
    """``preprocess`` with the Nyúl landmarks that the fitted ``model``'s first step learned, if it learned some."""
    landmarks = getattr(getattr(first_step(model), "preprocess_", None), "landmarks", None)
    return preprocess if landmarks is None else replace(preprocess, landmarks=landmarks)


def input_size(model, preprocess: Preprocess) -> list[int] | None:
    """The image (or volume) size the method sees: its final step's ``input_shape_`` (deep methods), else the preprocessing's."""
    shape = getattr(final_step(model), "input_shape_", None)
    if shape is not None and len(shape) in (2, 3):
        return [int(v) for v in shape]
    return [preprocess.size, preprocess.size] if preprocess.size else None
