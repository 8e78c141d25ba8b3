"""Where a fitted method looked, on a few test items per class: the attribution overlays of the benchmark report.

For each true class, the most confident correct prediction and the most
confident wrong one (when the method made one) are explained for the class
the method predicted: a wrong call that rests on the image border or the
skull, not the lesion, shows in a glance what a metric hides. Networks on
the images get Grad-CAM; every other method gets occlusion through its
``predict_proba``, with a coarser window than ``brainmri explain``'s (a
quarter of the side, stride an eighth: 49 occluded copies per image
instead of 225), since a classical method computes its features again for
every occluded copy.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from brainmri.data.io import read_image
from brainmri.explain.overlay import Overlay
from brainmri.explain.view import ModelView
from brainmri.models.bundle import Bundle

#: Test items explained per true class and outcome (correct, wrong).
PER_CLASS = 1


def pick_examples(y_true, proba: np.ndarray, classes, *, per_class: int = PER_CLASS) -> list[tuple[int, bool]]:
    """The most confident correct and the most confident wrong predictions of each true class.

    Parameters
    ----------
    y_true : array-like of str, shape (n,)
    proba : ndarray, shape (n, n_classes)
        Columns in ``classes`` order.
    classes : sequence of str
    per_class : int
        Items per class and outcome.

    Returns
    -------
    list of (int, bool)
        Row index and whether the prediction was correct, class by class
        (correct first); ties keep the row order.
    """
    y_true = np.asarray(y_true).astype(str)
    predicted = proba.argmax(axis=1)
    confidence = proba.max(axis=1)
    chosen = []
    for c, name in enumerate(classes):
        for correct in (True, False):
            rows = np.flatnonzero((y_true == str(name)) & ((predicted == c) == correct))
            rows = rows[np.argsort(-confidence[rows], kind="stable")][:per_class]
            chosen += [(int(k), correct) for k in rows]
    return chosen


def explain_examples(
    model, paths, y_true, proba: np.ndarray, *, method: str, preprocess, max_pixels: int, per_class: int = PER_CLASS
) -> list[dict]:
    """Attribution overlays of :func:`pick_examples` for a fitted method.

    Parameters
    ----------
    model : fitted estimator
        As :func:`~brainmri.models.registry.get_method` builds it.
    paths, y_true : array-like, shape (n,)
        Test images and their labels.
    proba : ndarray, shape (n, n_classes)
        The method's probabilities of ``paths``, columns in ``model.classes_`` order.
    method : str
        Registry name (in the titles).
    preprocess : Preprocess
        The run's preprocessing (what the model learned, such as Nyúl
        landmarks, is added from the model).
    max_pixels : int
        As the run reads its images.
    per_class : int

    Returns
    -------
    list of dict
        ``{"index", "correct", "attribution", "caption", "png"}`` per
        explained item (``png``: bytes); empty without Captum (explanations
        are an optional extra).
    """
    if importlib.util.find_spec("captum") is None:
        return []
    import torch

    classes = [str(c) for c in model.classes_]
    picks = pick_examples(y_true, proba, classes, per_class=per_class)
    if not picks:
        return []
    view = ModelView(Bundle.of(model, name=method, preprocess=preprocess))
    if "gradcam" in view.methods():
        name, attribute = "gradcam", view.attribution("gradcam")
    else:
        side = view.preprocess.size or 64
        name, attribute = "occlusion", view.attribution("occlusion", window=max(2, side // 4), stride=max(1, side // 8))
    images = np.stack([view.preprocess(read_image(paths[k], max_pixels=max_pixels)[0]) for k, _ in picks])
    targets = proba[[k for k, _ in picks]].argmax(axis=1)
    with view.running():
        maps = attribute(view.tensor(images), torch.as_tensor(targets))
    overlay = Overlay()
    examples = []
    for (k, correct), image, heat, target in zip(picks, images, maps, targets, strict=True):
        called = f"{classes[target]} p={proba[k, target]:.2f}"
        examples.append(
            {
                "index": k,
                "correct": correct,
                "attribution": name,
                "caption": f"{'correct' if correct else 'wrong'}: {y_true[k]} called {called} ({name})",
                "png": overlay.png(image, heat, f"{name}: {called} (label {y_true[k]})"),
            }
        )
    return examples
