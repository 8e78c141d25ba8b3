"""Predictions and heatmaps of uploaded images, computed in a bounded pool of worker threads.

The model is loaded once and shared by the workers. PyTorch releases the
GIL while it computes, so a worker thread leaves the server free to answer
other requests (``/health``, ``/model``, a full queue's 503) meanwhile.
Predictions of several workers may run at once; heatmaps take turns
(:attr:`Inference.explain_lock`), because an attribution hooks into the
shared network and switches its gradients on and off
(:meth:`~brainmri.explain.explainer.ModelView.running`).

The pool takes at most ``workers + queue_size`` requests; one more is
refused at once with 503 and a ``Retry-After`` estimated from the recent
time per request, rather than left waiting without bound.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import logging
import math
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from brainmri.errors import BrainMRIError, ConfigError
from brainmri.explain.overlay import Overlay
from brainmri.explain.view import ModelView
from brainmri.files import atomic_path, write_json
from brainmri.serve.uploads import SUFFIXES, RequestError, Upload, read_upload

logger = logging.getLogger(__name__)


def model_version(manifest: dict) -> str:
    """A short digest of the model's files (their sha256 in the manifest): equal versions, equal weights.

    >>> model_version({"files": {"model.classifier.skops": "ab"}})
    '152a0f9efd11'
    """
    listing = json.dumps(manifest.get("files", {}), sort_keys=True).encode()
    return hashlib.sha256(listing).hexdigest()[:12]


def png_base64(array: np.ndarray) -> str:
    """A uint8 image ``(H, W)`` or ``(H, W, 3)`` as base64 PNG text."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


class Inference:
    """A loaded model behind a bounded pool of worker threads.

    Parameters
    ----------
    model : object
        Has ``predict_proba`` (a list of 2D arrays -> ``(n, n_classes)``),
        ``classes_`` and ``manifest``, as
        :class:`~brainmri.models.bundle.Bundle` has.
    explain : Bundle or None
        The bundle heatmaps are computed with; None: ``model`` itself when
        it is a bundle (another predictor, such as an ONNX runtime session,
        passes the bundle it was exported from).
    workers : int
    queue_size : int
    max_pixels : int
        Pixel limit of one image (see :mod:`brainmri.serve.uploads`).
    keep_uploads : path or None
        Folder that keeps every predicted upload and its result.

    Attributes
    ----------
    explanation : str or None
        The attribution method of the heatmaps (the first that applies to
        the model: ``gradcam`` for a network on the images, ``occlusion``
        otherwise); None when there are no heatmaps, see
        ``explain_problem``.
    pending : int
        Requests being computed or waiting.
    """

    def __init__(
        self,
        model,
        *,
        explain=None,
        workers: int,
        queue_size: int,
        max_pixels: int,
        keep_uploads: str | Path | None = None,
    ):
        self.model = model
        self.classes = [str(c) for c in model.classes_]
        self.version = model_version(model.manifest)
        self.workers = workers
        self.capacity = workers + queue_size
        self.max_pixels = max_pixels
        self.keep_uploads = Path(keep_uploads) if keep_uploads else None
        self.pending = 0
        self.explain_lock = threading.Lock()
        self._count_lock = threading.Lock()
        self._seconds = 1.0
        self._executor: ThreadPoolExecutor | None = None
        self.explanation, self.explain_problem = None, None
        self._setup_explanation(model if explain is None else explain)

    def _setup_explanation(self, bundle) -> None:
        if not hasattr(bundle, "model"):
            self.explain_problem = "this model is not a brainmri bundle, so it has no heatmaps"
            return
        try:
            self._view = ModelView(bundle)
            method = self._view.methods()[0]
            self._attribute = self._view.attribution(method)
        except ConfigError as exc:
            self.explain_problem = str(exc)
            return
        self.explanation = method
        self._overlay = Overlay(alpha=1.0)  # the page sets the opacity

    def close(self) -> None:
        """Stop the workers (waiting requests are dropped); the next :meth:`run` starts new ones."""
        with self._count_lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)

    async def run(self, fn: Callable, *args):
        """``fn(*args)`` in a worker thread, or 503 at once when ``capacity`` requests are already there.

        Raises
        ------
        RequestError
            503, with ``Retry-After``.
        """
        with self._count_lock:
            if self.pending >= self.capacity:
                wait = max(1, math.ceil(self._seconds * self.pending / self.workers))
                raise RequestError(
                    503,
                    f"busy: {self.pending} requests are being computed or waiting, the most "
                    f"this server takes (--workers {self.workers}, --queue-size "
                    f"{self.capacity - self.workers}); retry in {wait} s",
                    headers={"Retry-After": str(wait)},
                )
            self.pending += 1
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix="brainmri-serve")
        start = time.perf_counter()

        def done(_):  # counted when the work ends (in the worker), not when a client gives up waiting for it
            with self._count_lock:
                self.pending -= 1
                self._seconds = 0.8 * self._seconds + 0.2 * (time.perf_counter() - start)

        future = self._executor.submit(fn, *args)
        future.add_done_callback(done)
        return await asyncio.wrap_future(future)

    def predict(self, uploads: list[Upload], heatmap: bool) -> list[dict]:
        """Probabilities, predicted class and optionally the heatmap of every upload (runs in a worker).

        Returns
        -------
        list of dict
            Per upload: ``filename``, ``predicted``, ``probabilities`` (class
            -> float) and ``heatmap`` (None, or ``method``, ``image_png``: the
            image as the model sees it, ``overlay_png``: the map in colour
            over it at full opacity, both base64 PNG of equal size).

        Raises
        ------
        RequestError
            422 for an upload that cannot be read as a 2D slice, or that
            the model refuses; 422 for ``heatmap`` when the model has none.
        """
        if heatmap and self.explanation is None:
            raise RequestError(422, f"heatmap=true: {self.explain_problem}; ask without heatmap")
        with tempfile.TemporaryDirectory(prefix="brainmri-serve-") as folder:
            images = [read_upload(u, Path(folder), k, max_pixels=self.max_pixels) for k, u in enumerate(uploads)]
        try:
            proba = np.asarray(self.model.predict_proba(images), dtype=np.float64)
        except BrainMRIError as exc:
            raise RequestError(422, f"the model cannot predict these images: {exc}") from None
        targets = proba.argmax(axis=1)
        heatmaps = self._heatmaps(images, targets) if heatmap else [None] * len(images)
        rows = [
            {
                "filename": u.filename,
                "predicted": self.classes[t],
                "probabilities": {c: float(v) for c, v in zip(self.classes, p, strict=True)},
                "heatmap": h,
            }
            for u, p, t, h in zip(uploads, proba, targets, heatmaps, strict=True)
        ]
        if self.keep_uploads is not None:
            self._keep(uploads, rows)
        return rows

    def _heatmaps(self, images: list[np.ndarray], targets: np.ndarray) -> list[dict]:
        import torch

        seen = np.stack([self._view.preprocess(image) for image in images])
        with self.explain_lock, self._view.running():
            maps = self._attribute(self._view.tensor(seen), torch.as_tensor(targets))
        return [
            {
                "method": self.explanation,
                "image_png": png_base64((np.clip(x, 0, 1) * 255).round().astype(np.uint8)),
                "overlay_png": png_base64(self._overlay.blend(x, m)),
            }
            for x, m in zip(seen, maps, strict=True)
        ]

    def _keep(self, uploads: list[Upload], rows: list[dict]) -> None:
        """Write the uploads and their predictions (without heatmaps) to a new folder of ``keep_uploads``."""
        folder = self.keep_uploads / f"{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        names = []
        for k, upload in enumerate(uploads):
            names.append(f"{k}{SUFFIXES[upload.kind]}")
            with atomic_path(folder / names[-1]) as tmp:
                tmp.write_bytes(upload.data)
        write_json(
            folder / "result.json",
            {
                "model": {"method": self.model.manifest["method"]["name"], "version": self.version},
                "predictions": [
                    {"file": name, **{k: v for k, v in row.items() if k != "heatmap"}}
                    for name, row in zip(names, rows, strict=True)
                ],
            },
        )
        logger.info("kept %d upload(s) in %s", len(uploads), folder)
