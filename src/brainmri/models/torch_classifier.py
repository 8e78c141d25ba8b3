"""A scikit-learn classifier around a torch module: the last step of every deep method.

:class:`TorchClassifier` holds out a validation part of its training data,
grouped like the outer split (:func:`brainmri.models.validation.holdout_split`),
trains with :func:`brainmri.training.loop.train_module`
(epoch chosen on that part), then fits a temperature on it
(:func:`brainmri.training.calibration.fit_temperature`) so that its
probabilities are calibrated like those of the classical methods. Its
fitted state is saved and read as files by :mod:`brainmri.models.torch_state`.
"""

from __future__ import annotations

import inspect
import logging
from pathlib import Path

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from brainmri.errors import ConfigError, DataError
from brainmri.models.torch_state import checked_temperature, read_state, write_state
from brainmri.models.validation import holdout_split
from brainmri.robust.adapt import adapt_module
from brainmri.training.batches import last_linear, logits_of_views
from brainmri.training.calibration import fit_temperature
from brainmri.training.device import resolve_device, torch_threads, tune_malloc
from brainmri.training.distributed import check_processes, train_in_processes
from brainmri.training.loop import train_module
from brainmri.training.run import frozen_blocks, place
from brainmri.training.settings import TrainSettings

logger = logging.getLogger(__name__)

#: Test-time augmentation: the views of a batch of images (N, H, W) whose logits are averaged.
TTA_VIEWS = {"identity": lambda X: X, "horizontal flip": lambda X: np.ascontiguousarray(X[:, :, ::-1])}


class TorchClassifier(ClassifierMixin, BaseEstimator):
    """Train a torch module on images (N, H, W), volumes (N, D, H, W) or vectors (N, F); predict calibrated probabilities.

    Parameters
    ----------
    module_builder : callable
        ``module_builder(*, num_classes, input_shape, **module_params)``
        returning an untrained ``torch.nn.Module`` (e.g.
        :func:`brainmri.nets.cnn.ayadi_cnn`). A builder with a
        ``pretrained`` keyword is called with ``pretrained=False`` by
        :meth:`load_state`: the saved state holds every weight, so no
        pretrained file or network is needed to load a model.
    module_params : dict or None
        Extra keyword arguments of ``module_builder``.
    epochs, lr, weight_decay, batch_size, label_smoothing : number
        AdamW with a one-cycle cosine schedule peaking at ``lr`` over
        ``epochs``; cross-entropy with label smoothing.
    class_weight : {"balanced", None}
        Weight the loss by inverse class frequency.
    augment : bool or str
        Augment training images: True (or ``"geometric"``) for flips, a small
        affine and brightness-contrast
        (:func:`brainmri.training.augment.augment_batch`), ``"appearance"``
        for those plus TorchIO's bias field, gamma, blur, noise, motion,
        ghosting and anisotropy, or a comma-separated list of these parts
        (:func:`brainmri.training.augment.parse_augment`); ignored for vectors
        and volumes.
    backbone_lr_factor : float
        For a module with a ``backbone`` attribute (e.g.
        :class:`~brainmri.nets.finetune.FineTuneNet`): the backbone's
        learning rate is ``lr * backbone_lr_factor``, the rest's ``lr``.
    unfreeze_after : int
        Epochs during which that backbone is frozen (only the rest learns);
        0: never frozen.
    frozen_stages : int
        That backbone's first stages stay frozen in every epoch (their
        backward pass is saved); 0: none.
    style : {None, "mixstyle", "dsu"}
        For a module with a backbone: perturb the statistics of its early
        feature maps in training steps (:mod:`brainmri.training.style`).
    sampling : {"shuffle", "class", "source"}
        How an epoch draws its items: each once (``shuffle``), or as many
        draws with each class, or each source and each class within it,
        equally likely (:mod:`brainmri.training.sampling`); ``source``
        needs the ``sources`` of :meth:`fit`.
    tta : bool
        Test-time augmentation of images: the logits are the mean over
        :data:`TTA_VIEWS` (the image and its left-right mirror), in
        prediction and for the temperature fitted on the validation part.
    ema_decay : float or None
        Validate and keep an exponential moving average of the weights.
    patience : int or None
        Stop after this many epochs without a better validation accuracy.
    precision : {"auto", "bf16", "fp32"}
        Autocast dtype; ``auto`` is bf16 on a CUDA GPU, float32 elsewhere.
    channels_last : bool
        Channels-last memory format for images (faster with bf16 on CPU).
    val_fraction : float
        Share of the training items held out for epoch choice and temperature.
    device : str
        ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
    threads : int or None
        CPU threads of torch during fit and predict (None: torch's default);
        with ``processes``, of each training process (None: the cores shared
        out).
    processes : int
        Training processes (``brainmri train --nproc``): data-parallel
        training, :mod:`brainmri.training.distributed`. The same seed gives
        the same weights for the same number of processes.
    adapt : {"none", "adabn", "tent"}
        Test-time adaptation: each call of :meth:`predict_logits` adapts a
        copy of the trained module to the items it is given, without labels
        (:func:`brainmri.robust.adapt.adapt_module`); ``module_`` stays as
        trained. Set on a fitted copy by
        :func:`brainmri.robust.adapt.adapt_model`.
    seed : int
    work_dir : path or None
        Folder for the checkpoint and CSV log; an interrupted fit resumes from it.

    Attributes
    ----------
    module_ : torch.nn.Module
        The trained module (best validation epoch), in eval mode.
    classes_ : ndarray
    temperature_ : float
    input_shape_ : tuple
    history_ : list of dict
        Per epoch: epoch, train_loss, val_loss, val_accuracy, lr, seconds, images_per_s.
    params_ : dict
        Best epoch, temperature, validation split and device used (and the
        TTA views, with ``tta``).
    n_parameters_ : dict
        Trainable and total weights of ``module_``.
    """

    def __init__(
        self,
        module_builder,
        *,
        module_params=None,
        epochs=10,
        lr=2e-3,
        weight_decay=0.05,
        batch_size=64,
        label_smoothing=0.05,
        class_weight="balanced",
        augment=False,
        backbone_lr_factor=1.0,
        unfreeze_after=0,
        frozen_stages=0,
        style=None,
        sampling="shuffle",
        tta=False,
        ema_decay=0.99,
        patience=None,
        precision="auto",
        channels_last=False,
        val_fraction=0.2,
        device="auto",
        threads=None,
        processes=1,
        adapt="none",
        seed=0,
        work_dir=None,
    ):
        self.module_builder = module_builder
        self.module_params = module_params
        self.epochs = epochs
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.label_smoothing = label_smoothing
        self.class_weight = class_weight
        self.augment = augment
        self.backbone_lr_factor = backbone_lr_factor
        self.unfreeze_after = unfreeze_after
        self.frozen_stages = frozen_stages
        self.style = style
        self.sampling = sampling
        self.tta = tta
        self.ema_decay = ema_decay
        self.patience = patience
        self.precision = precision
        self.channels_last = channels_last
        self.val_fraction = val_fraction
        self.device = device
        self.threads = threads
        self.processes = processes
        self.adapt = adapt
        self.seed = seed
        self.work_dir = work_dir

    def _settings(self):
        return TrainSettings(
            epochs=self.epochs,
            lr=self.lr,
            weight_decay=self.weight_decay,
            batch_size=self.batch_size,
            label_smoothing=self.label_smoothing,
            class_weight=self.class_weight,
            augment=self.augment,
            ema_decay=self.ema_decay,
            patience=self.patience,
            precision=self.precision,
            channels_last=self.channels_last,
            seed=self.seed,
            backbone_lr_factor=self.backbone_lr_factor,
            unfreeze_after=self.unfreeze_after,
            frozen_stages=self.frozen_stages,
            style=self.style,
            sampling=self.sampling,
        )

    def _build(self, n_classes: int, input_shape: tuple, *, restoring: bool = False):
        import torch

        params = dict(self.module_params or {})
        if restoring and "pretrained" in inspect.signature(self.module_builder).parameters:
            params["pretrained"] = False  # the saved state replaces every weight: read no pretrained ones
        torch.manual_seed(self.seed)
        return self.module_builder(num_classes=n_classes, input_shape=tuple(input_shape), **params)

    @staticmethod
    def _check_X(X) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim not in (2, 3, 4) or not np.issubdtype(X.dtype, np.floating):
            raise DataError(
                f"TorchClassifier takes a float array of images (N, H, W), volumes (N, D, H, W) or "
                f"vectors (N, F), got "
                f"{X.dtype} of shape {X.shape}"
            )
        return X

    def fit(self, X, y, groups=None, sources=None):
        """Hold out a grouped validation part, train, keep the best epoch, fit the temperature.

        Parameters
        ----------
        X : ndarray of shape (n, H, W), (n, D, H, W) or (n, F)
        y : array-like of shape (n,)
        groups : array-like of shape (n,) or None
            Group id of every item (the outer split's grouping); no group
            straddles the training and validation parts.
        sources : array-like of shape (n,) or None
            Source of every item, used by ``sampling="source"`` only.
        """
        settings = self._settings()
        if not (isinstance(self.val_fraction, float) and 0 < self.val_fraction <= 0.5):
            raise ConfigError(
                f"training parameter val_fraction must be a number in (0, 0.5], got {self.val_fraction!r}"
            )
        if not isinstance(self.tta, bool):
            raise ConfigError(f"training parameter tta must be true or false, got {self.tta!r}")
        X = self._check_X(X)
        if self.tta and X.ndim != 3:
            raise ConfigError("training parameter tta=true needs images (N, H, W), not vectors; set tta=false")
        y = np.asarray(y)
        if len(X) != len(y):
            raise DataError(f"X has {len(X)} items but y has {len(y)} labels")
        if sources is not None and len(sources) != len(y):
            raise DataError(f"sources has {len(sources)} items but y has {len(y)} labels")
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        train, val, how = holdout_split(y, groups, fraction=self.val_fraction, random_state=self.seed)
        device = resolve_device(self.device)
        check_processes(self.processes, device, settings.batch_size)
        tune_malloc()
        with torch_threads(self.threads):
            module = self._build(len(self.classes_), X.shape[1:])
            trainer = train_module if self.processes == 1 else self._train_in_processes
            result = trainer(
                module,
                X[train],
                y_idx[train],
                X[val],
                y_idx[val],
                settings=settings,
                device=device,
                work_dir=self.work_dir,
                sources=None if sources is None else np.asarray(sources)[train],
            )
        if self.processes > 1:  # trained in copies: this one is placed as one process would have placed it
            place(module, settings, X.ndim, device)
        module.load_state_dict(result.state)
        self.module_ = module.eval()
        self.__dict__.pop("_inference_module_", None)
        self.device_ = device
        self.input_shape_ = tuple(int(v) for v in X.shape[1:])
        # The temperature (and reported accuracy) of the logits that prediction gives: averaged over the views.
        val_logits = self.predict_logits(X[val]) if self.tta else result.val_logits
        self.temperature_ = fit_temperature(val_logits, y_idx[val])
        self.history_ = result.history
        val_acc = float((val_logits.argmax(1) == y_idx[val]).mean())
        self.params_ = {
            "epochs_run": len(result.history),
            "best_epoch": result.best_epoch,
            "val_accuracy": round(val_acc, 6),
            "n_val": int(len(val)),
            "temperature": round(self.temperature_, 4),
            "calibration": "temperature scaling on the validation part",
            "inner_cv": how,
            "device": str(device),
            "precision": self.precision,
        }
        if self.tta:
            self.params_["tta"] = "mean logits of " + " and ".join(TTA_VIEWS)
        if self.sampling == "source":  # the sources the draws were balanced over, with their training items
            names, counts = np.unique(np.asarray(sources).astype(str)[train], return_counts=True)
            self.params_["sampled_sources"] = {str(k): int(n) for k, n in zip(names, counts, strict=True)}
        if self.processes > 1:
            self.params_["processes"] = self.processes
        if result.resumed_from:
            self.params_["resumed_after_epoch"] = result.resumed_from
        return self

    def _train_in_processes(self, *args, **kwargs):
        return train_in_processes(*args, processes=self.processes, threads=self.threads, **kwargs)

    def predict_logits(self, X) -> np.ndarray:
        """Uncalibrated logits, float32 of shape (n, n_classes); with ``tta``, their mean over :data:`TTA_VIEWS`.

        With ``adapt``, the module is first adapted to ``X`` (the identity view).
        """
        return self._logits(X)[0]

    def predict_proba_with_embedding(self, X) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`predict_proba` and :meth:`embed` of ``X``, from one pass of the network where they can share it.

        Without adaptation the embedding is captured in the identity view's
        pass that the probabilities need anyway (the network with its batch
        norms folded: the same numbers up to float rounding), which saves a
        forward pass per image; an adapted network embeds in a pass of its own.
        """
        logits, Z = self._logits(X, capture=self.adapt == "none")
        return self._calibrated(logits), (self.embed(X) if Z is None else Z)

    def _logits(self, X, *, capture: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """The logits of :meth:`predict_logits` and, with ``capture``, the embedding of the identity view."""
        check_is_fitted(self, "module_")
        X = self._check_X(X)
        if tuple(X.shape[1:]) != self.input_shape_:
            raise DataError(f"items of shape {tuple(X.shape[1:])}, but the model was trained on {self.input_shape_}")
        tune_malloc()
        views = list(TTA_VIEWS.values()) if self.tta else [TTA_VIEWS["identity"]]
        with torch_threads(self.threads):
            module = self._inference_module() if self.adapt == "none" else self._adapted_module(X)
            return logits_of_views(module, X, views, embed=capture, **self._predicting())

    def _predicting(self) -> dict:
        """The settings of :func:`~brainmri.training.batches.predict_logits` for this classifier."""
        return {
            "device": self.device_,
            "batch_size": max(self.batch_size, 128),
            "precision": self.precision,
            "channels_last": self.channels_last,
            "what": f"the network built by {self._builder_name()}",
        }

    @property
    def embedding_width(self) -> int:
        """The columns of :meth:`embed` that are the last linear layer's input (the rest: the spread)."""
        return int(last_linear(self.module_).in_features)

    def embed(self, X) -> np.ndarray:
        """The embedding of the out-of-distribution score: the input of the module's last linear layer and, for a
        network with a global average pool, the standard deviation over positions of the map it reduces
        (:func:`~brainmri.training.batches.capture_embedding`), float32 (n, d), with the trained ``module_`` (never
        an adapted copy).
        """
        check_is_fitted(self, "module_")
        X = self._check_X(X)
        with torch_threads(self.threads):
            return logits_of_views(self.module_, X, [TTA_VIEWS["identity"]], embed=True, **self._predicting())[1]

    def _inference_module(self):
        """``module_`` with every batch norm folded into the convolution before it, built once."""
        module = self.__dict__.get("_inference_module_")
        if module is None:
            module = self.__dict__["_inference_module_"] = self._folded(self.module_)
        return module

    def _folded(self, module):
        """A copy of ``module`` with every batch norm folded into the convolution before it.

        Folding (torch.fx's ``optimization.fuse``) gives the same outputs up
        to float rounding and saves the normalisation pass: ayadi-cnn's
        forward on the CPU went from about 120 to 150 images/s. A module
        that torch.fx cannot trace is used as it is.
        """
        import torch
        from torch.fx.experimental.optimization import fuse

        try:
            folded = fuse(module)  # a folded copy; module stays as it is
        except (torch.fx.proxy.TraceError, TypeError, NotImplementedError) as exc:
            logger.debug("batch norm not folded (%s); predicting with the module as it is", exc)
            folded = module
        return folded.to(memory_format=torch.channels_last) if self.channels_last else folded

    def _adapted_module(self, X: np.ndarray):
        """``module_`` adapted to the items ``X`` (``adapt``), then folded: adaptation needs the batch norms."""
        adapted = adapt_module(
            self.module_,
            X,
            method=self.adapt,
            device=self.device_,
            seed=self.seed,
            batch_size=self.batch_size,
            channels_last=self.channels_last,
            what=f"the network built by {self._builder_name()}",
        )
        return self._folded(adapted)

    def predict_proba(self, X) -> np.ndarray:
        """Temperature-scaled softmax, float64 of shape (n, n_classes), columns in ``classes_`` order."""
        return self._calibrated(self.predict_logits(X))

    def _calibrated(self, logits: np.ndarray) -> np.ndarray:
        from scipy.special import softmax

        return softmax(logits.astype(np.float64) / self.temperature_, axis=1)

    def predict(self, X) -> np.ndarray:
        """The most probable class of every item."""
        return self.classes_[self.predict_proba(X).argmax(axis=1)]

    @property
    def n_parameters_(self) -> dict:
        """Weights of the trained network, ``{"trainable": n, "total": n}`` (the benchmark's cost table).

        Trainable are the weights that training changed: all of them, but a
        ``backbone`` frozen through every epoch run (``unfreeze_after`` at
        least the epochs run) is not, nor are its ``frozen_stages``.
        """
        check_is_fitted(self, "module_")
        total = sum(p.numel() for p in self.module_.parameters())
        trunk = getattr(self.module_, "backbone", None)
        epochs_run = len(self.history_) if hasattr(self, "history_") else self.epochs
        frozen = 0
        if trunk is not None:
            parts = [trunk] if self.unfreeze_after >= epochs_run else frozen_blocks(trunk, self.frozen_stages)
            frozen = sum(p.numel() for part in parts for p in part.parameters())
        return {"trainable": int(total - frozen), "total": int(total)}

    def _builder_name(self) -> str:
        return f"{self.module_builder.__module__}.{self.module_builder.__qualname__}"

    def save_state(self, folder: str | Path, prefix: str) -> list[str]:
        """Write the fitted state as ``{prefix}weights.safetensors`` and ``{prefix}state.json``, atomically.

        The JSON holds what the weights need besides themselves: classes,
        temperature, input shape, the module builder's name and the
        constructor parameters, the history and ``params_``.

        Returns
        -------
        list of str
            The file names written.
        """
        check_is_fitted(self, "module_")
        params = {
            k: v for k, v in self.get_params(deep=False).items() if k not in ("module_builder", "work_dir", "adapt")
        }
        record = {
            "module_builder": self._builder_name(),
            "params": params,
            "classes": self.classes_.tolist(),
            "temperature": self.temperature_,
            "input_shape": list(self.input_shape_),
            "history": self.history_,
            "params_": self.params_,
        }
        return write_state(folder, prefix, self.module_, record)

    def load_state(self, folder: str | Path, prefix: str) -> TorchClassifier:
        """Restore what :meth:`save_state` wrote into this unfitted classifier (built with the same parameters).

        Only data is read (JSON and safetensors); no code from the files runs.

        Raises
        ------
        DataError
            A missing, unreadable or mismatching file, named in the message.
        """
        meta, module = read_state(
            folder, prefix, self._builder_name(), lambda n_classes, shape: self._build(n_classes, shape, restoring=True)
        )
        self.device_ = resolve_device(self.device)
        self.module_ = module.to(self.device_).eval()
        self.__dict__.pop("_inference_module_", None)
        if self.channels_last and len(meta["input_shape"]) == 2:
            import torch

            self.module_.to(memory_format=torch.channels_last)
        temperature = checked_temperature(meta, folder, prefix)
        self.classes_ = np.asarray(meta["classes"])
        self.temperature_ = temperature
        self.input_shape_ = tuple(meta["input_shape"])
        self.history_ = meta["history"]
        self.params_ = meta["params_"]
        return self
