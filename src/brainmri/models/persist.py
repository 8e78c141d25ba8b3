"""The fitted steps of a method as files: skops for scikit-learn steps, a torch step's own safetensors + JSON.

Every method is saved the same way (:func:`save_steps`): a step with learned
torch state writes itself (``save_state(folder, prefix)``, see
:class:`~brainmri.models.torch_classifier.TorchClassifier`); a step that
learns nothing (scikit-learn tag ``requires_fit`` False, such as
:class:`~brainmri.features.extract.ImageFeatures`) is not stored at all, the
method's builder makes it again; every other step is a skops file. A
:class:`~brainmri.models.base.GroupedPipeline` applies the same rule to each
of its steps.

Loading never executes code from the files: skops files are loaded with
:data:`TRUSTED_TYPES`, an explicit list of the types brainmri itself saves
(``skops.io.load(..., trusted=True)`` is never used), and a saved step must
be of the type the method's builder makes at its place, so that a manifest
naming another method is refused.

References
----------
skops: "Secure persistence of scikit-learn models", https://skops.readthedocs.io
(``skops.io``).
"""

from __future__ import annotations

from pathlib import Path

from brainmri.errors import DataError
from brainmri.files import atomic_path

#: Types that skops does not trust by default but brainmri's own methods save. Loading a skops file
#: that holds any other untrusted type is refused.
TRUSTED_TYPES = [
    "brainmri.models.classical.CalibratedForest",
    "brainmri.models.classical.CalibratedSVC",
    "brainmri.models.transfer.CalibratedLogistic",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.metrics._classification.balanced_accuracy_score",
    "sklearn.metrics._scorer._Scorer",
    "sklearn.model_selection._split._CVIterableWrapper",
    "sklearn.tree._tree.Tree",
]


def learns_nothing(step) -> bool:
    """Whether ``step`` learns nothing in ``fit`` (scikit-learn's ``requires_fit`` tag): a bundle stores no file of it."""
    from sklearn.utils import get_tags

    return not get_tags(step).requires_fit


def save_steps(steps, folder: str | Path, prefix: str) -> list[str]:
    """Save fitted ``(name, step)`` pairs into ``folder``; the names of the files written.

    A step with ``save_state`` writes its own files (named ``prefix + name +
    "."...``); a step that learns nothing writes none; any other step is
    dumped with skops to ``prefix + name + ".skops"``.
    """
    folder = Path(folder)
    files: list[str] = []
    for name, step in steps:
        if hasattr(step, "save_state"):
            files += step.save_state(folder, f"{prefix}{name}.")
        elif not learns_nothing(step):
            import skops.io

            with atomic_path(folder / f"{prefix}{name}.skops") as tmp:
                skops.io.dump(step, tmp)
            files.append(f"{prefix}{name}.skops")
    return files


def load_steps(steps, folder: str | Path, prefix: str) -> list:
    """The ``(name, step)`` pairs of unfitted ``steps`` restored from what :func:`save_steps` wrote."""
    folder = Path(folder)
    loaded = []
    for name, step in steps:
        if hasattr(step, "load_state"):
            step = step.load_state(folder, f"{prefix}{name}.")
        elif learns_nothing(step):
            step = step.fit([])
        else:
            path = folder / f"{prefix}{name}.skops"
            saved = _load_skops(path)
            if type(saved) is not type(step):  # a manifest naming another method than the one saved
                raise DataError(
                    f"{path}: holds a {type(saved).__name__}, but the method the manifest names builds a "
                    f"{type(step).__name__} there; the manifest was changed or belongs to another bundle, "
                    "train the bundle again"
                )
            step = saved
        loaded.append((name, step))
    return loaded


def _load_skops(path: Path):
    import skops.io
    from skops.io.exceptions import UntrustedTypesFoundException

    try:
        return skops.io.load(path, trusted=TRUSTED_TYPES)
    except UntrustedTypesFoundException as exc:
        raise DataError(
            f"{path}: holds types that brainmri does not load ({exc}); use bundles written by brainmri train"
        ) from None
    except FileNotFoundError:
        raise DataError(f"{path}: missing; the bundle is incomplete, train it again with brainmri train") from None
    except Exception as exc:  # zipfile, json and skops raise many types for a damaged file
        raise DataError(
            f"{path}: cannot be read as a skops file ({type(exc).__name__}: {exc}); "
            "the bundle is damaged, train it again with brainmri train"
        ) from None
