"""``brainmri explain`` and ``brainmri predict --explain``: maps, overlays and their checks for a model bundle.

A bundle is explained in the space its classifier sees: each image is
preprocessed as the bundle preprocesses it (cropped to the head, resized to
the model's input size, intensities scaled to [0, 1]); the maps (``.npy``,
float32 ``(H, W)``, or ``(D, H, W)`` for a volume model such as ``cnn3d``:
the same attribution code runs in 3D), the overlays (for volumes: the
three planes through the map's maximum) and the lesion masks of ``--masks`` are
all in that space (a mask is cropped with its image's head box, then
resized), so a map and its mask line up pixel for pixel.

Which attribution methods apply depends on the model, not on its name
(:meth:`ModelView.methods`): the gradient methods need a torch network that
takes the images themselves (``ayadi-cnn``); ``occlusion`` needs only class
probabilities, so it explains every bundle, the classical ones through
``predict_proba`` on occluded images.

Images are read and predicted by :func:`~brainmri.models.predict.predict_images`
(unreadable files are reported and skipped, as in ``brainmri predict``); each
batch is explained as soon as it is predicted. The checks
(:mod:`brainmri.explain.checks`) run at the end, on a seeded sample of at
most ``check_items`` images (all images for the known-answer check, which
costs nothing).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from brainmri.data.io import MAX_PIXELS, image_format, read_image
from brainmri.data.volumes import VolumePreprocess
from brainmri.errors import ConfigError, DataError
from brainmri.explain.attribution import METHODS, predicted_score
from brainmri.explain.checks import (
    lesion_share,
    perturbation_curves,
    pointing_game,
    random_map_baseline,
    randomized_copy,
    rank_correlations,
)
from brainmri.explain.overlay import Overlay
from brainmri.explain.view import ModelView
from brainmri.files import atomic_path, write_json
from brainmri.models.predict import predict_images
from brainmri.outputs import OutputFolder

logger = logging.getLogger(__name__)

#: The file every explanation folder holds; a folder with other files and without it is never written into.
RESULTS = "explain.json"


@dataclass(frozen=True)
class ExplainConfig:
    """Settings of one explanation run (written to ``explain.json`` as ``config``).

    Parameters
    ----------
    method : str
        A name of :data:`~brainmri.explain.attribution.METHODS`.
    masks : str or None
        Folder of lesion masks (``brainmri explain --masks``), or None.
    checks : bool
        Run the deletion/insertion and randomisation checks.
    check_items : int
        At most this many images (a seeded sample) enter those two checks.
    tolerance : float or None
        Pointing-game tolerance in pixels of the model's input; None: Zhang
        et al.'s 15 pixels of 224, scaled to the input size.
    steps : int
        Steps of the deletion and insertion curves.
    seed : int
    """

    method: str
    masks: str | None = None
    checks: bool = True
    check_items: int = 64
    tolerance: float | None = None
    steps: int = 10
    seed: int = 0

    def __post_init__(self):
        if self.method not in METHODS:
            raise ConfigError(
                f"--method {self.method!r} is not an attribution method; valid methods: {', '.join(METHODS)}"
            )
        for name, low in (("check_items", 1), ("steps", 2)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ConfigError(f"--{name.replace('_', '-')} must be an integer >= {low}, got {value!r}")
        if self.tolerance is not None and not self.tolerance >= 0:
            raise ConfigError(f"--tolerance must be a number of pixels >= 0, got {self.tolerance!r}")


class MaskFolder:
    """Lesion masks found by image file name: ``DIR/<class>/<name>`` or ``DIR/<name>`` (``brainmri demo-data`` writes the first).

    Parameters
    ----------
    folder : path
    """

    def __init__(self, folder: str | Path):
        folder = Path(folder)
        if not folder.is_dir():
            raise DataError(
                f"--masks {folder}: no such folder; give the folder of lesion masks "
                "(brainmri demo-data writes them to DATA/.masks)"
            )
        self.folder = folder
        self.files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file() and image_format(p)}
        if not self.files:
            raise DataError(
                f"--masks {folder}: no mask images in this folder or below; give the folder of lesion masks"
            )

    def find(self, image: str | Path, label: str | None) -> Path | None:
        """The mask file of ``image``, or None (an image without a lesion)."""
        image = Path(image)
        for key in (f"{label or image.parent.name}/{image.name}", image.name):
            if key in self.files:
                return self.files[key]
        return None

    def read(self, path: Path, shape: tuple[int, ...]) -> np.ndarray:
        """The mask at ``path`` as bool, checked to be of the image's ``shape``."""
        mask, _ = read_image(path)
        if mask.shape != tuple(shape):
            raise DataError(
                f"--masks: {path} is {'x'.join(map(str, mask.shape))}, its image "
                f"{'x'.join(map(str, shape))}; a mask must have its image's size"
            )
        return mask > 0


def check_explain_folder(out: str | Path, *, inputs: Sequence[str | Path] = (), option: str = "--out") -> Path:
    """Refuse an output folder that is inside an input, holds one, or is not new, empty or an earlier explain's
    (:class:`~brainmri.outputs.OutputFolder`)."""
    OutputFolder(out, "explain", option=option).check(inputs=inputs)
    return Path(out)


def _output_names(rows: list[dict], taken: set[str]) -> list[str]:
    """``<label>/<stem>`` (or ``<stem>``) per row, with ``-2``, ``-3``... where two images share one."""
    names = []
    for row in rows:
        name = Path(row["path"]).name
        base = (f"{row['label']}/" if row["label"] else "") + (
            name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else Path(name).stem
        )
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}-{k}"
        taken.add(name)
        names.append(name)
    return names


class Explainer:
    """Explain the images of each predicted batch: write maps and overlays, keep what the checks need.

    Use it as the ``on_batch`` callback of
    :func:`~brainmri.models.predict.predict_images`.

    Parameters
    ----------
    view : ModelView
    method : str
    out : Path
        Output folder (checked by :func:`check_explain_folder`).
    masks : MaskFolder or None
    """

    def __init__(self, view: ModelView, method: str, out: Path, *, masks: MaskFolder | None = None):
        self.view = view
        self.method = method
        self.attribute = view.attribution(method)
        self.out = Path(out)
        self.masks = masks
        self.single_pass = METHODS[method].single_pass and view.module is not None
        if self.single_pass:
            self._scored = predicted_score(view.module)
            self._predicted = METHODS[method](self._scored)
        self._pending = None
        self.overlay = Overlay()
        self.classes = [str(c) for c in view.bundle.classes_]
        self.images: list[np.ndarray] = []
        self.maps: list[np.ndarray] = []
        self.targets: list[int] = []
        self.lesions: dict[int, np.ndarray] = {}
        self.entries: list[dict] = []
        self._taken: set[str] = set()

    def predict_proba(self, images: list[np.ndarray]) -> np.ndarray:
        """Probabilities of ``images`` from the pass that also computes their maps (``single_pass`` methods).

        The maps wait for the ``__call__`` of the same batch. The network's
        temperature-scaled softmax, as its ``predict_proba``, but without
        folding batch norm: equal up to bf16 rounding.
        """
        from scipy.special import softmax

        x = np.stack([self.view.preprocess(image) for image in images])
        with self.view.running():
            maps = self._predicted(self.view.tensor(x), None)
        self._pending = (x, maps)
        logits = self._scored.logits.float().cpu().numpy().astype(np.float64)
        return softmax(logits / self.view.classifier.temperature_, axis=1)

    def __call__(self, rows: list[dict], images: list[np.ndarray]) -> None:
        import torch

        targets = [self.classes.index(row["predicted"]) for row in rows]
        if self._pending is not None:
            (x, maps), self._pending = self._pending, None
        else:
            x = np.stack([self.view.preprocess(image) for image in images])
            with self.view.running():
                maps = self.attribute(self.view.tensor(x), torch.as_tensor(targets))
        for row, image, name, seen, attribution, target in zip(
            rows, images, _output_names(rows, self._taken), x, maps, targets, strict=True
        ):
            index = len(self.entries)
            entry = {
                "path": row["path"],
                "label": row["label"],
                "predicted": row["predicted"],
                "probability": round(row["proba"][target], 6),
                "map": f"maps/{name}.npy",
                "overlay": f"overlays/{name}.png",
            }
            if self.masks is not None:
                mask_path = self.masks.find(row["path"], row["label"])
                entry["mask"] = str(mask_path) if mask_path else None
                if mask_path:
                    self.lesions[index] = self.view.align(self.masks.read(mask_path, image.shape), image)
            _save_npy(self.out / entry["map"], attribution)
            title = f"{row['predicted']} p={row['proba'][target]:.2f}" + (
                f" (label {row['label']})" if row["label"] else ""
            )
            self.overlay(self.out / entry["overlay"], seen, attribution, f"{self.method}: {title}")
            self.entries.append(entry)
            self.images.append(seen)
            self.maps.append(attribution)
            self.targets.append(target)

    def known_answer(self, tolerance: float | None = None) -> dict:
        """Pointing game (within ``tolerance`` pixels, and strict) and lesion share, beside a random map's.

        Over the images with a mask; None takes 15 pixels of 224 at the input size.
        """
        if self.masks is None:
            return {"skipped": "no --masks given"}
        if not self.lesions:
            return {"skipped": f"none of the {len(self.entries)} images has a mask in {self.masks.folder}"}
        if tolerance is None:
            tolerance = round(15 * self.view.preprocess.size / 224) if self.view.preprocess.size else 15
        keys = sorted(self.lesions)
        maps, masks = np.stack([self.maps[k] for k in keys]), np.stack([self.lesions[k] for k in keys])
        hits, strict = pointing_game(maps, masks, tolerance=tolerance), pointing_game(maps, masks)
        share = lesion_share(maps, masks)
        for k, hit, exact, part in zip(keys, hits, strict, share, strict=True):
            self.entries[k].update(
                pointing_hit=bool(hit), pointing_hit_strict=bool(exact), lesion_share=round(float(part), 6)
            )
        return {
            "n_images": len(keys),
            "n_without_mask": len(self.entries) - len(keys),
            "tolerance_px": tolerance,
            "pointing_game": float(hits.mean()),
            "random_map_pointing_game": float(random_map_baseline(masks, tolerance=tolerance).mean()),
            "pointing_game_strict": float(strict.mean()),
            "random_map_pointing_game_strict": float(random_map_baseline(masks).mean()),
            "lesion_share": float(share.mean()),
            "random_map_lesion_share": float(random_map_baseline(masks).mean()),
            "how": "hit: the map's maximum lies within tolerance_px pixels of the lesion mask (strict: inside "
            "it; Zhang et al. 2018 use 15 px of 224); share: positive attribution inside the mask / all "
            "positive attribution; random map: the share of the image that counts as a hit (exact "
            "expectation for a map of random values)",
        }

    def sample(self, n: int, seed: int) -> np.ndarray:
        """Indices of at most ``n`` explained images, a seeded random sample in input order."""
        picked = np.random.default_rng(seed).permutation(len(self.entries))[:n]
        return np.sort(picked)

    def faithfulness(self, picked: np.ndarray, *, steps: int, seed: int) -> dict:
        """Deletion and insertion curves of the maps of ``picked``, beside a random ranking of the pixels."""

        def score(k, perturbed):
            with self.view.running():
                return self.view.proba(self.view.tensor(perturbed))[:, self.targets[picked[k]]].cpu().numpy()

        images, maps = np.stack([self.images[k] for k in picked]), np.stack([self.maps[k] for k in picked])
        return {"n_images": len(picked), **perturbation_curves(score, images, maps, steps=steps, seed=seed)}

    def randomisation(self, picked: np.ndarray, *, seed: int) -> dict:
        """Rank correlation of the maps of ``picked`` with those of the network with random weights."""
        import torch

        if self.view.module is None:
            return {"skipped": "the model has no network weights to randomise (a classical method)"}
        randomized = ModelView(self.view.bundle)
        randomized.module = randomized_copy(self.view.module, seed=seed)
        attribute = randomized.attribution(self.method)
        x = self.view.tensor(np.stack([self.images[k] for k in picked]))
        with self.view.running():
            other = attribute(x, torch.as_tensor([self.targets[k] for k in picked]))
        rho = rank_correlations(np.stack([self.maps[k] for k in picked]), other)
        defined = rho[~np.isnan(rho)]
        return {
            "n_images": len(picked),
            "n_undefined": int(np.isnan(rho).sum()),
            "spearman_mean": float(defined.mean()) if len(defined) else None,
            "spearman_median": float(np.median(defined)) if len(defined) else None,
            "how": "every layer re-initialised (Adebayo et al. 2018, full randomisation); Spearman correlation "
            "of the absolute maps; low means the maps depend on what the network learnt",
        }


def _save_npy(path: Path, array: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.asarray(array, dtype=np.float32), allow_pickle=False)


def explain_images(
    bundle,
    items,
    config: ExplainConfig,
    out: str | Path,
    *,
    batch_size: int = 64,
    n_jobs: int = 1,
    max_pixels: int = MAX_PIXELS,
    progress: Callable[[int], None] | None = None,
    on_event: Callable[[str], None] | None = None,
) -> tuple[dict, dict]:
    """Explain ``items`` with ``bundle``: maps, overlays, checks and ``out/explain.json``.

    Parameters
    ----------
    bundle : Bundle
    items : sequence of ImageItem
        From :func:`~brainmri.models.predict.list_images`.
    config : ExplainConfig
    out : path
        Output folder, checked with :func:`check_explain_folder` by the caller.
    batch_size, n_jobs, progress, max_pixels
        As :func:`~brainmri.models.predict.predict_images`.
    on_event : callable, optional
        One-line messages (the checks being run).

    Returns
    -------
    document : dict
        What ``explain.json`` holds: ``config``, ``method``, ``model``,
        ``timing`` (images/s of reading, predicting, maps and overlays),
        ``checks`` (``known_answer``, ``deletion_insertion``,
        ``randomisation``), ``images`` (one entry per image) and ``skipped``.
    predictions : dict
        What :func:`~brainmri.models.predict.predict_images` returned.

    Raises
    ------
    ConfigError
        ``config.method`` does not apply to the bundle's model (before any
        image is read).
    """
    out = Path(out)
    view = ModelView(bundle)
    masks = MaskFolder(config.masks) if config.masks else None
    explainer = Explainer(view, config.method, out, masks=masks)  # refuses a method that does not apply
    folder = OutputFolder(out, "explain")
    with folder.recording():
        folder.start({"config": asdict(config), "model": str(bundle.path)})
        return _explain_images(
            bundle,
            items,
            config,
            out,
            explainer,
            batch_size=batch_size,
            n_jobs=n_jobs,
            progress=progress,
            on_event=on_event,
            max_pixels=max_pixels,
        )


def _explain_images(
    bundle,
    items,
    config: ExplainConfig,
    out: Path,
    explainer: Explainer,
    *,
    batch_size: int,
    n_jobs: int,
    progress,
    on_event,
    max_pixels: int,
) -> tuple[dict, dict]:
    say = on_event or (lambda message: None)
    view = explainer.view
    start = time.perf_counter()
    result = predict_images(
        bundle,
        items,
        batch_size=batch_size,
        n_jobs=n_jobs,
        progress=progress,
        on_batch=explainer,
        max_pixels=max_pixels,
        predict=explainer.predict_proba if explainer.single_pass else None,
    )
    seconds = time.perf_counter() - start
    n = len(explainer.entries)
    checks: dict = {}
    if n:
        checks["known_answer"] = explainer.known_answer(config.tolerance)
        if config.checks:
            picked = explainer.sample(config.check_items, config.seed)
            say(f"deletion/insertion curves of {len(picked)} maps")
            checks["deletion_insertion"] = explainer.faithfulness(picked, steps=config.steps, seed=config.seed)
            say(f"randomisation check on {len(picked)} maps")
            checks["randomisation"] = explainer.randomisation(picked, seed=config.seed)
    document = {
        "config": asdict(config),
        "model": str(bundle.path),
        "method": config.method,
        "model_method": bundle.manifest["method"]["name"],
        "valid_methods": view.methods(),
        "space": f"maps, overlays and masks are {_space(view.preprocess)} as the model sees them (cropped to "
        "the head, resized)"
        + (
            "; overlays show the three planes through the map's maximum"
            if isinstance(view.preprocess, VolumePreprocess)
            else ""
        ),
        "timing": {
            "n_images": n,
            "seconds": round(seconds, 3),
            "images_per_s": round(n / seconds, 2) if seconds > 0 else None,
        },
        "checks": checks,
        "images": explainer.entries,
        "skipped": result["skipped"],
    }
    write_json(out / RESULTS, document)
    return document, result


def _space(preprocess) -> str:
    """``32 x 32 images`` or ``32 x 32 x 32 volumes``."""
    if isinstance(preprocess, VolumePreprocess):
        return " x ".join([str(preprocess.size)] * 3) + " volumes"
    return f"{preprocess.size} x {preprocess.size} images"
