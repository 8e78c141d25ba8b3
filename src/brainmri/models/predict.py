"""``brainmri predict``: class probabilities of new images from a model bundle.

Images are read here, batch by batch, so that an unreadable file is
reported and skipped instead of stopping the run, and so that an image
unlike the training images (another size, another number of channels) can
be flagged: the bundle's preprocessing converts it to grayscale and resizes
it like every other image, and the prediction's ``note`` says so. The
arrays read are handed to the bundle (:meth:`~brainmri.models.bundle.Bundle.predict_proba`
takes 2D arrays as well as paths), so no image is decoded twice.

Every prediction of a bundle that has an out-of-distribution detector
(:mod:`brainmri.robust.ood`) carries its ``ood_score``: 0 for an image like
the training images, 1 for one farther from them than every training image;
above the 95th training percentile (:data:`~brainmri.robust.ood.FLAG_QUANTILE`),
``unlike_training`` is true.

A folder of class sub-folders also yields metrics
(:func:`~brainmri.evaluation.metrics.classification_metrics`) when its
classes are among the bundle's.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from brainmri.data.dataset import load_dataset
from brainmri.data.dicom import series_items
from brainmri.data.io import (
    MAX_PIXELS,
    check_max_pixels,
    degenerate_reason,
    image_format,
    read_image,
    size_and_channels,
)
from brainmri.errors import DataError
from brainmri.evaluation.metrics import classification_metrics
from brainmri.robust.ood import FLAG_QUANTILE
from brainmri.timing import Stopwatch

logger = logging.getLogger(__name__)

#: Images read and predicted at a time.
BATCH_SIZE = 64


@dataclass(frozen=True)
class ImageItem:
    """One image to predict.

    Attributes
    ----------
    path : Path
    label : str or None
        Its class, when it lies in a class sub-folder.
    source : str
        The command-line argument it came from.
    """

    path: Path
    label: str | None
    source: str


def list_images(sources: Sequence[str | Path]) -> list[ImageItem]:
    """The images named by ``brainmri predict`` arguments.

    An image file stands for itself. A folder holding image files lists
    them (unlabelled; the slices of a DICOM series are one item, the
    series); a folder without any lists its class sub-folders
    (optionally under split folders) as a dataset does
    (:func:`~brainmri.data.dataset.load_dataset`), with labels.

    Raises
    ------
    DataError
        An argument that does not exist, or a folder without image files.
    """
    items: list[ImageItem] = []
    for source in sources:
        source = Path(source)
        if source.is_dir():
            flat = sorted(p for p in source.iterdir() if not p.name.startswith(".") and p.is_file() and image_format(p))
            if flat:
                items += [ImageItem(p, None, str(source)) for p in series_items(source, flat)]
            elif not any(image_format(p) for p in source.rglob("*") if not p.name.startswith(".")):
                raise DataError(
                    f"{source}: no image files in this folder or below; give image files, a folder of "
                    "images or a folder of class sub-folders"
                )
            else:
                items += [ImageItem(it.path, it.label, str(source)) for it in load_dataset(source).items]
        elif source.exists() or source.is_symlink():
            items.append(ImageItem(source, None, str(source)))
        else:
            raise DataError(f"{source}: no such file or folder; give image files or folders of images")
    return items


def _read(path: Path, ndim: int = 2, max_pixels: int = MAX_PIXELS) -> tuple[np.ndarray, object] | str:
    """The image (``ndim`` 2) or volume (``ndim`` 3) and its metadata, or why it cannot be used."""
    try:
        image, meta = read_image(path, max_pixels=max_pixels)
    except DataError as exc:
        return str(exc)
    if image.ndim != ndim:
        if ndim == 3:
            return f"{path}: a 2D image of shape {image.shape}; this model takes 3D volumes (NIfTI)"
        return f"{path}: a volume or multi-frame image of shape {image.shape}; this model takes 2D slices"
    problem = degenerate_reason(image)
    if problem:
        return f"{path}: {problem}"
    return image, meta


def model_ndim(bundle) -> int:
    """3 for a bundle whose model takes volumes (its ``input_size`` has three sides), else 2."""
    size = bundle.manifest.get("input_size")
    return 3 if size and len(size) == 3 else 2


def _note(meta, training: dict, input_size) -> str:
    """What differs from the training images (size, channels), and what the preprocessing did about it."""
    notes = []
    shape = tuple(meta.original_shape)
    size, channels = size_and_channels(shape, meta.mode)
    sizes = training.get("image_sizes") or {}
    if sizes and size not in sizes:
        seen = ", ".join(list(sizes)[:3]) + (", ..." if len(sizes) > 3 else "")
        target = "x".join(map(str, input_size)) if input_size else "the training size"
        notes.append(f"size {size} not seen in training ({seen}): resized to {target}")
    seen_channels = training.get("channels") or {}
    if seen_channels and channels not in seen_channels:
        notes.append(
            f"{channels} channel(s) ({meta.mode}) where training images had {'/'.join(seen_channels)}: "
            "converted to grayscale"
        )
    return "; ".join(notes)


def predict_images(
    bundle,
    items: Sequence[ImageItem],
    *,
    batch_size: int = BATCH_SIZE,
    n_jobs: int = 1,
    progress: Callable[[int], None] | None = None,
    on_batch: Callable[[list[dict], list[np.ndarray]], None] | None = None,
    predict: Callable[[list[np.ndarray]], np.ndarray] | None = None,
    max_pixels: int = MAX_PIXELS,
    as_trained=None,
    watch=None,
) -> dict:
    """Predict every readable image of ``items`` with ``bundle``, batch by batch.

    Images that cannot be scans (:func:`~brainmri.data.io.degenerate_reason`:
    blank, or a side below 16 px) are skipped with their reason, as the
    audit skips them, never given a class.

    Parameters
    ----------
    bundle : Bundle
    items : sequence of ImageItem
    batch_size : int
        Images read and predicted at a time.
    n_jobs : int
        Threads reading images; they read the next batch while the model
        predicts the current one.
    progress : callable, optional
        Called with the number of images of each finished batch.
    on_batch : callable, optional
        Called with the rows of each batch and the images they were
        predicted from (2D arrays as read), before ``progress``: explanations
        (:mod:`brainmri.explain`) use the images read here instead of reading
        them again.
    predict : callable, optional
        Class probabilities ``(n, n_classes)`` of a list of images, in place
        of ``bundle.predict_proba`` (an explanation that predicts in the
        pass it explains).
    max_pixels : int
        Images with more pixels are skipped unread (``--max-pixels``).
    as_trained : Bundle, optional
        With an adapted ``bundle`` (``--adapt``): the bundle as trained, which
        also predicts every batch, so that both calls are reported.
    watch : Stopwatch, optional
        Adds the seconds spent waiting for images to be read, preprocessing,
        in the network and on the OOD score (:mod:`brainmri.timing`).

    Returns
    -------
    dict
        ``rows``: ``{path, label, source, proba (n_classes floats), predicted,
        note, ood_score, unlike_training, predicted_as_trained}`` per usable image, in input order
        (the OOD pair None without a detector, or with ``predict``; the last None without ``as_trained``);
        ``skipped``: ``{path,
        reason}`` per unusable one (also logged as warnings).
    """
    training = bundle.manifest.get("training_data", {})
    input_size = bundle.manifest.get("input_size")
    rows, skipped = [], []
    batches = [items[s : s + batch_size] for s in range(0, len(items), batch_size)]
    read_one = partial(_read, ndim=model_ndim(bundle), max_pixels=check_max_pixels(max_pixels))
    watch = watch or Stopwatch()
    with ThreadPoolExecutor(max(1, n_jobs)) as pool:
        for batch, read in _read_ahead(pool, read_one, batches, watch):
            images, kept = _usable(batch, read, training, input_size, skipped)
            if images:
                proba, ood = (predict(images), None) if predict else bundle.predict_with_ood(images, watch=watch)
                new = _prediction_rows(bundle, kept, proba, ood)
                if as_trained is not None:
                    for row, p in zip(new, as_trained.predict_proba(images), strict=True):
                        row["predicted_as_trained"] = str(as_trained.classes_[int(np.argmax(p))])
                rows += new
                if on_batch:
                    on_batch(new, images)
            if progress:
                progress(len(batch))
    return {"rows": rows, "skipped": skipped}


def _read_ahead(pool: ThreadPoolExecutor, read_one: Callable, batches: list, watch) -> Iterator[tuple[list, list]]:
    """Every batch with what ``read_one`` gave for each of its images, read by ``pool``.

    The next batch is read while the caller predicts the one yielded; the
    time spent waiting for a batch goes to ``watch``'s ``reading``.
    """
    reading = pool.map(read_one, [it.path for it in batches[0]]) if batches else iter(())
    for k, batch in enumerate(batches):
        with watch("reading"):
            read = list(reading)
        if k + 1 < len(batches):  # Executor.map submits at once: the next batch is read during this one's predict
            reading = pool.map(read_one, [it.path for it in batches[k + 1]])
        yield batch, read


def _usable(batch, read, training: dict, input_size, skipped: list[dict]) -> tuple[list[np.ndarray], list]:
    """The images read of a batch and their ``(item, note)``; each unusable one is logged and added to ``skipped``."""
    images, kept = [], []
    for item, got in zip(batch, read, strict=True):
        if isinstance(got, str):
            logger.warning("skipped %s", got)
            skipped.append({"path": str(item.path), "reason": got})
        else:
            images.append(got[0])
            kept.append((item, _note(got[1], training, input_size)))
    return images, kept


def _prediction_rows(bundle, kept: list, proba, ood) -> list[dict]:
    """One row of :func:`predict_images`'s result per ``(item, note)`` of ``kept``, from its probabilities and OOD score."""
    ood = [None] * len(kept) if ood is None else [float(v) for v in ood]
    return [
        {
            "path": str(item.path),
            "label": item.label,
            "source": item.source,
            "proba": [float(v) for v in p],
            "predicted": str(bundle.classes_[int(np.argmax(p))]),
            "note": note,
            "ood_score": o,
            "unlike_training": None if o is None else o > FLAG_QUANTILE,
            "predicted_as_trained": None,
        }
        for (item, note), p, o in zip(kept, proba, ood, strict=True)
    ]


def folder_metrics(rows: list[dict], classes: Sequence[str]) -> dict[str, dict]:
    """Metrics of every labelled folder whose classes are all among ``classes``.

    Returns
    -------
    dict
        Source folder -> ``{"n", "metrics", "per_class", "confusion"}``, or
        ``{"n", "skipped": reason}`` when the folder has classes the bundle
        does not know.
    """
    out = {}
    for source in dict.fromkeys(r["source"] for r in rows if r["label"] is not None):
        mine = [r for r in rows if r["source"] == source]
        unknown = sorted({r["label"] for r in mine} - set(classes))
        if unknown:
            out[source] = {
                "n": len(mine),
                "skipped": f"class(es) {', '.join(unknown)} are not among the bundle's "
                f"({', '.join(classes)}), so no metrics",
            }
            continue
        scores = classification_metrics([r["label"] for r in mine], [r["proba"] for r in mine], list(classes))
        out[source] = {"n": len(mine), **scores}
    return out


def predictions_csv(rows: list[dict], classes: Sequence[str]) -> str:
    """One line per image: path, label (empty when unknown), predicted class, probabilities, with ``--adapt`` the
    class predicted by the bundle as trained, note, and the out-of-distribution score and flag (empty without a
    detector)."""
    adapted = any(r.get("predicted_as_trained") is not None for r in rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    extra = ["predicted_as_trained"] if adapted else []
    writer.writerow(
        ["path", "label", "predicted", *[f"p_{c}" for c in classes], *extra, "note", "ood_score", "unlike_training"]
    )
    for r in rows:
        ood = ["", ""] if r["ood_score"] is None else [f"{r['ood_score']:.4f}", str(r["unlike_training"]).lower()]
        probabilities = [f"{v:.6f}" for v in r["proba"]]
        extra = [r["predicted_as_trained"]] if adapted else []
        writer.writerow([r["path"], r["label"] or "", r["predicted"], *probabilities, *extra, r["note"], *ood])
    return buffer.getvalue()


#: The first and last columns of :func:`predictions_csv` (the class columns lie between).
CSV_HEAD, CSV_TAIL = "path,label,predicted,", ",note,ood_score,unlike_training"


def is_prediction_file(path: str | Path) -> bool:
    """Whether ``path`` is a prediction file that ``brainmri predict`` wrote (CSV or JSON), judged by its layout.

    ``predict --out`` replaces such a file; any other existing file needs ``--force``.
    """
    path = Path(path)
    if not path.is_file() or path.stat().st_size > 1 << 30:
        return False
    if path.suffix.lower() == ".csv":
        with open(path, encoding="utf-8") as fh:
            first = fh.readline().rstrip("\r\n")
        return first.startswith(CSV_HEAD) and first.endswith(CSV_TAIL)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return False
    return isinstance(doc, dict) and {"bundle", "method", "classes", "predictions", "skipped"} <= set(doc)


def predictions_document(bundle, result: dict, metrics: dict, *, adapt: str = "none") -> dict:
    """The JSON output: the bundle, every prediction (probabilities by class, OOD score), skipped files, metrics,
    the out-of-distribution detector and the test-time adaptation used, with its check
    (:func:`~brainmri.robust.adapt.adaptation_check`, ``result["adaptation"]``) and each call as trained."""
    classes = [str(c) for c in bundle.classes_]
    predictions = [
        {
            "path": r["path"],
            "label": r["label"],
            "predicted": r["predicted"],
            "proba": dict(zip(classes, r["proba"], strict=True)),
            "note": r["note"],
            "ood_score": r["ood_score"],
            "unlike_training": r["unlike_training"],
            **({"predicted_as_trained": r["predicted_as_trained"]} if "adaptation" in result else {}),
        }
        for r in result["rows"]
    ]
    return {
        "bundle": str(bundle.path),
        "method": bundle.manifest["method"]["name"],
        "classes": classes,
        "predictions": predictions,
        "skipped": result["skipped"],
        "metrics": metrics,
        "ood": bundle.manifest.get("ood"),
        "adapt": adapt,
        **({"adaptation": result["adaptation"]} if "adaptation" in result else {}),
        **({"runtime": result["runtime"]} if "runtime" in result else {}),
        **({"timing_s": result["timing_s"]} if "timing_s" in result else {}),
    }
