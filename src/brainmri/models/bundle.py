"""Model bundles: a fitted method saved to a folder, and loaded again without running code from it.

A bundle is a folder written by ``brainmri train`` (:func:`train_bundle`)::

    model/
      manifest.json              what the model is, how it was trained, sha256 of every other file
      model.classifier.skops     a scikit-learn step (skops format, never pickle)
      model.classifier.*         or a torch step's own files (weights as safetensors + JSON)
      ood.npz                    the out-of-distribution detector (arrays only, :mod:`brainmri.robust.ood`)

Every method is saved the same way (:func:`save_steps`): a step with learned
torch state writes itself (``save_state(folder, prefix)``, see
:class:`~brainmri.models.torch_classifier.TorchClassifier`); a step that
learns nothing (scikit-learn tag ``requires_fit`` False, such as
:class:`~brainmri.features.extract.ImageFeatures`) is not stored at all, the
method's builder makes it again; every other step is a skops file. A
:class:`~brainmri.models.classical.GroupedPipeline` applies the same rule to
each of its steps.

Loading (:func:`load_model`) never executes code from the bundle: the
manifest is JSON, torch weights are safetensors, and skops files are loaded
with :data:`TRUSTED_TYPES`, an explicit list of the types brainmri itself
saves (``skops.io.load(..., trusted=True)`` is never used). Before anything
is loaded, the sha256 of every file is checked against the manifest, and the
bundle's format version, brainmri major version and preprocessing/extractor
versions against this installation's, so that a tampered, truncated or
incompatible bundle is refused with one line naming the file.

References
----------
skops: "Secure persistence of scikit-learn models", https://skops.readthedocs.io
(``skops.io``); safetensors: https://huggingface.co/docs/safetensors.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from importlib import metadata
from pathlib import Path

import numpy as np

from brainmri.data.preprocess import Preprocess
from brainmri.errors import ConfigError, DataError
from brainmri.files import check_output_folder, sha256, write_json
from brainmri.models.catalog import available_methods, get_method
from brainmri.models.inputs import fitted_preprocess, input_size
from brainmri.models.manifest import MANIFEST, read_manifest, replaceable_bundle, verify_files
from brainmri.models.persist import load_steps, save_steps
from brainmri.outputs import containing_inputs
from brainmri.robust.adapt import adapt_model
from brainmri.robust.ood import OODDetector, predict_with_ood
from brainmri.version import __version__

logger = logging.getLogger(__name__)

#: The out-of-distribution detector's arrays in a bundle (bundles written before it have none).
OOD_FILE = "ood.npz"


def check_bundle_target(out: str | Path, *, inputs=()) -> Path:
    """Refuse ``--out`` of ``brainmri train`` unless it is new, empty or an earlier bundle, outside ``inputs``.

    An earlier bundle is replaced only when it is recognisably one that
    brainmri wrote and nobody changed since
    (:func:`~brainmri.models.manifest.replaceable_bundle`), and
    when it holds none of the inputs: replacing a folder deletes it.

    Raises
    ------
    ConfigError
        The message names the folder, what makes it not brainmri's to
        replace, and what to do.
    """
    out = check_output_folder(out, "--out", inputs=inputs)
    if out.is_dir() and any(out.iterdir()):
        inside = containing_inputs(out, inputs)
        if inside:
            raise ConfigError(
                f"--out {out}: holds the input {inside[0]}, which replacing the folder would delete; "
                "choose a new folder"
            )
        problem = replaceable_bundle(out)
        if problem:
            raise ConfigError(
                f"--out {out}: {problem}, so brainmri does not replace it; choose a new folder, or an "
                "earlier bundle to replace"
            )
    return out


def save_bundle(model, out: str | Path, manifest: dict, *, ood=None) -> dict:
    """Write a fitted ``model`` and its ``manifest`` as the bundle folder ``out``, atomically.

    ``ood``, a fitted :class:`~brainmri.robust.ood.OODDetector`, is saved
    as :data:`OOD_FILE`.

    The files go to a temporary folder beside ``out``, which is then renamed
    to ``out`` (an earlier bundle there is replaced); on any failure nothing
    is left behind. ``manifest`` gets ``files``: the sha256 of every file.

    Returns
    -------
    dict
        The manifest written, with ``files``.
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        files = save_steps([("model", model)], tmp, "")
        if ood is not None:
            with open(tmp / OOD_FILE, "wb") as fh:
                np.savez(fh, **ood.to_arrays())
            files.append(OOD_FILE)
        manifest = {**manifest, "files": {name: sha256(tmp / name) for name in sorted(files)}}
        write_json(tmp / MANIFEST, manifest)
        if out.exists() and any(out.iterdir()):
            problem = replaceable_bundle(out)
            if problem:  # changed while the model trained: keep both
                kept = out.parent / f"{out.name}-new-{uuid.uuid4().hex[:8]}"
                os.rename(tmp, kept)
                raise ConfigError(
                    f"--out {out}: {problem} (it changed during training), so it was not replaced; the "
                    f"new bundle is in {kept}"
                )
            old = out.parent / f".{out.name}.{uuid.uuid4().hex[:8]}.old"
            os.rename(out, old)
            os.rename(tmp, out)
            shutil.rmtree(old)
        else:
            if out.exists():
                out.rmdir()  # empty: nothing of anyone's is lost
            os.rename(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return manifest


class Bundle:
    """A fitted method loaded from a bundle folder (see :func:`load_model`).

    Attributes
    ----------
    model : estimator
        The fitted method, as its builder makes it.
    manifest : dict
        The bundle's ``manifest.json``.
    path : Path
    classes_ : ndarray of str
        Class names, in the column order of :meth:`predict_proba`.
    ood : OODDetector or None
        The out-of-distribution detector calibrated on the training data
        (None for a bundle written before it existed).
    timing_s : dict or None
        Seconds per stage of the training that has just written the bundle
        (:func:`~brainmri.runs.train.train_bundle`); None when loaded.
    """

    def __init__(self, model, manifest: dict, path: Path, ood=None):
        self.model = model
        self.manifest = manifest
        self.path = path
        self.classes_ = np.asarray(manifest["classes"])
        self.ood = ood
        self.timing_s: dict | None = None

    @classmethod
    def of(cls, model, *, name: str, preprocess: Preprocess) -> Bundle:
        """A fitted method that is not saved, as a bundle of what it learned (no files, no OOD detector).

        The manifest holds what predictions and explanations read: the
        classes, the method's ``name``, the preprocessing it learned with
        (``preprocess`` plus, for instance, the Nyúl landmarks of its first
        step) and the input size it sees. The benchmark explains the
        methods of its units this way.
        """
        manifest = {
            "classes": [str(c) for c in model.classes_],
            "method": {"name": name},
            "preprocess": fitted_preprocess(model, preprocess).to_dict(),
            "input_size": input_size(model, preprocess),
        }
        return cls(model, manifest, Path(name))

    @property
    def preprocess(self) -> Preprocess:
        """The preprocessing of the model's training images, as the manifest records it."""
        return Preprocess.from_dict(self.manifest["preprocess"])

    def __repr__(self) -> str:
        return f"Bundle({str(self.path)!r}, method={self.manifest['method']['name']!r}, classes={list(self.classes_)})"

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities of images.

        Parameters
        ----------
        X : sequence of path or 2D ndarray, or ndarray of shape (n, H, W)
            Image files, or grayscale images already read (any size: the
            bundle's preprocessing resizes them); for a volume model
            (``cnn3d``), NIfTI files or 3D arrays.

        Returns
        -------
        ndarray of float, shape (n, n_classes)
            Columns in :attr:`classes_` order.
        """
        return self.model.predict_proba(self._items(X))

    @staticmethod
    def _items(X) -> np.ndarray:
        items = np.empty(len(X), dtype=object)
        for k, x in enumerate(X):
            items[k] = x if isinstance(x, np.ndarray) else str(x)
        if not len(items):
            raise ConfigError("predict_proba needs at least one image, got none")
        return items

    def predict(self, X) -> np.ndarray:
        """The most probable class of every image (see :meth:`predict_proba`)."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    def predict_with_ood(self, X, *, watch=None) -> tuple[np.ndarray, np.ndarray | None]:
        """Class probabilities (as :meth:`predict_proba`) and the 0-1 out-of-distribution score of every image.

        The score (:meth:`~brainmri.robust.ood.OODDetector.score`) is None
        for a bundle without a detector. ``watch`` (a
        :class:`~brainmri.timing.Stopwatch`) adds the seconds of each stage.
        """
        items = self._items(X)
        proba, distance = predict_with_ood(self.model, self.ood, items, watch)
        return proba, (None if distance is None else self.ood.score_distance(distance))

    def adapted(self, method: str, *, seed: int = 0) -> Bundle:
        """This bundle with test-time adaptation ``method`` (:func:`~brainmri.robust.adapt.adapt_model`);
        the files on disk are not touched."""
        model = adapt_model(self.model, method, name=self.manifest["method"]["name"], seed=seed)
        return Bundle(model, self.manifest, self.path, self.ood)


def load_model(path: str | Path, *, n_jobs: int = 1, device: str = "auto") -> Bundle:
    """Load a bundle written by ``brainmri train``.

    Parameters
    ----------
    path : path
        The bundle folder.
    n_jobs : int
        Worker processes of the feature step, when the method has one, and
        of the OOD detector's acquisition descriptors.
    device : str
        Where a deep method runs (``auto``, ``cpu``, ``cuda``, ``mps``).

    Returns
    -------
    Bundle

    Raises
    ------
    DataError
        Not a bundle; a missing, changed or unreadable file; an incompatible
        version (the message names the file).
    ConfigError
        The bundle's method is not registered here, or needs torch
        (``pip install brainmri[deep]``).

    Examples
    --------
    >>> model = load_model("model/")                              # doctest: +SKIP
    >>> model.predict_proba(["scan1.png", "scan2.png"]).shape     # doctest: +SKIP
    (2, 4)
    """
    folder = Path(path)
    manifest = read_manifest(folder)
    verify_files(folder, manifest)
    method = manifest["method"]
    try:
        spec = get_method(method["name"])  # a named configuration (method@label) too
    except ConfigError:
        raise ConfigError(
            f"{folder / MANIFEST}: method {method['name']!r} is not registered in this brainmri "
            f"{__version__}; valid methods: {', '.join(available_methods())}"
        ) from None
    model = spec.build(
        seed=manifest["config"]["seed"],
        n_jobs=n_jobs,
        preprocess=Preprocess.from_dict(manifest["preprocess"]),
        device=device,
        params=method["params"],
    )
    [(_, model)] = load_steps([("model", model)], folder, "")
    if [str(c) for c in model.classes_] != manifest["classes"]:
        raise DataError(
            f"{folder / MANIFEST}: classes {manifest['classes']} differ from the saved model's "
            f"{[str(c) for c in model.classes_]}; train the bundle again"
        )
    check_fitted(model, manifest, folder)
    ood = load_ood(folder, manifest, n_jobs)
    trained_with = manifest.get("libraries", {}).get("scikit-learn")
    if trained_with and trained_with != metadata.version("scikit-learn"):
        logger.warning(
            "%s was trained with scikit-learn %s, this is %s: predictions may differ slightly",
            folder,
            trained_with,
            metadata.version("scikit-learn"),
        )
    return Bundle(model, manifest, folder, ood)


def load_ood(folder: Path, manifest: dict, n_jobs: int = 1) -> OODDetector | None:
    """The bundle's out-of-distribution detector (``ood.npz``), or None when it has none.

    Raises
    ------
    DataError
        The file is not a detector.
    """
    if OOD_FILE not in manifest["files"]:
        return None
    try:
        with np.load(folder / OOD_FILE, allow_pickle=False) as arrays:
            ood = OODDetector.from_arrays(arrays)
    except (OSError, ValueError, KeyError) as exc:
        raise DataError(
            f"{folder / OOD_FILE}: not an out-of-distribution detector ({exc}); train the bundle again"
        ) from None
    ood.n_jobs = n_jobs  # its acquisition descriptors are a feature step too
    return ood


def check_fitted(model, manifest: dict, folder: Path) -> None:
    """Check that the steps loaded from a bundle work together as the method its manifest names.

    The manifest is not covered by a hash (it holds the hashes), so a
    manifest edited to name another method, or copied beside another
    bundle's files, can rebuild a method whose steps do not fit the saved
    ones (a feature step of 295 features before a classifier fitted on 204).
    One prediction of a seeded noise image of the bundle's input size shows
    it before any user image is read: it must run and give finite
    probabilities that sum to 1.

    Raises
    ------
    DataError
        The saved steps do not fit the method, or give no probabilities.
    """
    size = manifest.get("input_size") or [64, 64]
    shape = tuple(max(int(side), 16) for side in size)
    probe = np.random.default_rng(0).uniform(0.0, 255.0, size=shape).astype(np.float32)
    items = np.empty(1, dtype=object)
    items[0] = probe
    try:
        proba = np.asarray(model.predict_proba(items), dtype=np.float64)
    except (ValueError, RuntimeError, TypeError, IndexError, KeyError, AttributeError) as exc:
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise DataError(
            f"{folder / MANIFEST}: the saved model does not work as method "
            f"{manifest['method']['name']!r} ({reason}); the manifest was changed or belongs to another "
            "bundle, train the bundle again"
        ) from None
    if proba.shape != (1, len(manifest["classes"])) or not np.isfinite(proba).all() or abs(proba.sum() - 1) > 1e-3:
        raise DataError(
            f"{folder / MANIFEST}: the saved model gives no valid probabilities (got "
            f"{np.round(proba, 4).tolist()}); its files were changed after training, train the bundle again"
        )
