"""Benchmark configuration and the label mapping shared by train and test data."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from brainmri.data.bids import BidsQuery
from brainmri.data.duplicates import DuplicateParams
from brainmri.data.io import MAX_PIXELS, check_max_pixels
from brainmri.data.labels import unique_keys
from brainmri.data.preprocess import Preprocess
from brainmri.data.shifts import SEVERITIES, check_severities, check_shifts
from brainmri.errors import ConfigError
from brainmri.models.versions import code_versions, flat_versions
from brainmri.robust.adapt import adapt_modes

SPLITS = ("cv", "official")


def default_cache_dir() -> Path:
    """``$BRAINMRI_CACHE``, else ``$XDG_CACHE_HOME/brainmri``, else ``~/.cache/brainmri``."""
    if os.environ.get("BRAINMRI_CACHE"):
        return Path(os.environ["BRAINMRI_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "brainmri"


@dataclass(frozen=True, kw_only=True)
class DataSettings:
    """How DATA is read and prepared: what ``benchmark``, ``train`` and ``tune`` share.

    Parameters
    ----------
    data : str
        Dataset folder or CSV manifest.
    seed : int
    preprocess : Preprocess
    duplicates : DuplicateParams
        Near-duplicate detection, which groups copies (folds, inner validation).
    max_pixels : int
        Images with more pixels are skipped as unreadable (``--max-pixels``).
    allow_outside_paths : bool
        Accept CSV paths leading out of the CSV's folder (``--allow-outside-paths``).
    bids_label : str or None
        For a BIDS dataset: the ``participants.tsv`` column holding the class (``--bids-label``).
    bids_suffix : str
        For a BIDS dataset: the suffix of the images to take (``--bids-suffix``, default ``T1w``).
    """

    data: str
    seed: int = 0
    preprocess: Preprocess = field(default_factory=Preprocess)
    duplicates: DuplicateParams = field(default_factory=DuplicateParams)
    max_pixels: int = MAX_PIXELS
    allow_outside_paths: bool = False
    bids_label: str | None = None
    bids_suffix: str = "T1w"

    def __post_init__(self):
        check_max_pixels(self.max_pixels)
        self.listing()  # checks the BIDS suffix

    def listing(self) -> dict:
        """How DATA and the other collections are listed: the keyword arguments of
        :func:`~brainmri.data.dataset.load_dataset`."""
        return {"allow_outside": self.allow_outside_paths, "bids": BidsQuery(self.bids_label, self.bids_suffix)}

    def data_settings(self) -> dict:
        """The settings of :class:`DataSettings` as keyword arguments (to make another configuration of the same data)."""
        return {f.name: getattr(self, f.name) for f in fields(DataSettings)}


#: From this many readable training images on, ``--shortcuts auto`` runs the shortcut audit (below it, its
#: intervals are wide and its minute of work is not worth a small run).
SHORTCUTS_MIN_ITEMS = 500


@dataclass(frozen=True, kw_only=True)
class BenchmarkConfig(DataSettings):
    """Everything that determines a benchmark's numbers (written to ``results.json``).

    Parameters
    ----------
    data, seed, preprocess, duplicates, max_pixels, allow_outside_paths, bids_label, bids_suffix
        As :class:`DataSettings`.
    methods : tuple of str
        Registered method names, or named configurations of them
        (``method@label``, :func:`brainmri.models.registry.get_method`).
    split : {"cv", "official"}
        Grouped stratified k-fold, or the dataset's own train/test folders.
    cv : int
        Folds for ``split="cv"``.
    grouping : str
        What must stay together across folds (see
        :func:`brainmri.data.splits.group_labels`); ``similar`` is
        ``--group-similar``.
    drop_test_duplicates : bool
        With ``split="official"`` or ``test_data``: remove test items that
        duplicate training items.
    test_data : str, tuple of str, or None
        External validation: train on all of ``data`` once, test on this
        dataset, or on each of several (stored as a str for one, a tuple for
        several; :attr:`test_sets` is always a tuple).
    label_map : dict or None
        Class renaming applied to both datasets.
    n_boot : int
        Bootstrap resamples of the confidence intervals.
    params : dict or None
        Settings of the methods (``--params``): method name -> {setting: value}.
    shift : tuple of str
        Shifts under which every fitted method is tested again (``--shift``;
        :mod:`brainmri.evaluation.shift`); empty for none.
    shift_severities : tuple of int
        Their severities (``--shift-severities``), from 1 to 5.
    shift_max_items : int or None
        Re-test a stratified sample of this many test items per split
        (``--shift-max-items``); None re-tests them all.
    adapt : str
        Test-time adaptation of the deep methods to each test set, clean and
        shifted (``--adapt``, :mod:`brainmri.robust.adapt`): ``none``,
        ``adabn`` or ``tent``, or several comma-separated (``none,adabn,tent``),
        each then reported as a method of its own, the same trained network
        adapted each way.
    extra_data : str or None
        A second labelled collection added to every training part, never
        tested on (``--extra-data``, :mod:`brainmri.data.extra`).
    extra_label_map : dict or None
        Class renaming of ``extra_data`` onto the training classes
        (``--extra-label-map``).
    shortcuts : {"auto", "on", "off"}
        The shortcut audit of the training data (``--shortcuts``,
        :mod:`brainmri.evaluation.shortcuts`): ``auto`` runs it from
        :data:`SHORTCUTS_MIN_ITEMS` readable images on.
    """

    methods: tuple[str, ...]
    split: str = "cv"
    cv: int = 5
    grouping: str = "auto"
    drop_test_duplicates: bool = False
    test_data: str | tuple[str, ...] | None = None
    label_map: dict | None = None
    n_boot: int = 1000
    params: dict | None = None
    shift: tuple[str, ...] = ()
    shift_severities: tuple[int, ...] = SEVERITIES
    shift_max_items: int | None = None
    adapt: str = "none"
    extra_data: str | None = None
    extra_label_map: dict | None = None
    shortcuts: str = "auto"

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.test_data, (list, tuple)):
            # One collection is stored as a str, as before several were possible, so earlier run folders resume.
            sets = tuple(str(t) for t in self.test_data)
            if len(set(sets)) < len(sets):
                raise ConfigError(f"--test-data names a collection twice ({', '.join(sets)}); name each once")
            object.__setattr__(self, "test_data", sets[0] if len(sets) == 1 else (sets or None))
        if self.shortcuts not in ("auto", "on", "off"):
            raise ConfigError(f"--shortcuts must be auto, on or off, got {self.shortcuts!r}")
        adapt_modes(self.adapt)
        if self.extra_label_map and not self.extra_data:
            raise ConfigError("--extra-label-map only applies with --extra-data; add --extra-data OTHER or remove it")
        check_shifts(self.shift)
        # Stored as tuples, severities sorted: lists, or severities in another order, make the same run.
        object.__setattr__(self, "shift", tuple(self.shift))
        object.__setattr__(self, "shift_severities", check_severities(self.shift_severities))
        if self.shift_max_items is not None and (
            isinstance(self.shift_max_items, bool)
            or not isinstance(self.shift_max_items, int)
            or self.shift_max_items < 1
        ):
            raise ConfigError(
                f"--shift-max-items must be a positive integer (test items per split), got {self.shift_max_items!r}"
            )
        if self.shift_max_items is not None and not self.shift:
            raise ConfigError("--shift-max-items only applies with --shift; add --shift (all shifts) or remove it")
        if self.split not in SPLITS:
            raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, got {self.split!r}")
        if self.drop_test_duplicates and self.split != "official" and not self.test_data:
            raise ConfigError(
                "--drop-test-duplicates only applies to --split official or --test-data; "
                "k-fold already keeps duplicates on one side"
            )
        if self.test_data and self.split != "cv":
            raise ConfigError("--test-data trains on all of DATA; do not combine it with --split official")
        if not isinstance(self.n_boot, int) or self.n_boot < 0:
            raise ConfigError(f"--n-boot must be a non-negative integer, got {self.n_boot!r}")
        stray = sorted(set(self.params or {}) - set(self.methods))
        if stray:
            raise ConfigError(
                f"--params names method {stray[0]!r}, which is not among --methods "
                f"({', '.join(self.methods)}); add it to --methods or remove its settings"
            )

    @property
    def adapt_modes(self) -> tuple[str, ...]:
        """``adapt`` as a tuple of adaptations, the first one tested as the method itself."""
        return adapt_modes(self.adapt)

    def method_params(self, method: str) -> dict:
        """The ``--params`` settings of ``method`` (empty when none)."""
        return dict((self.params or {}).get(method, {}))

    @property
    def kind(self) -> str:
        return "external" if self.test_data else self.split

    @property
    def test_sets(self) -> tuple[str, ...]:
        """The ``--test-data`` collections, as a tuple (empty without any)."""
        if not self.test_data:
            return ()
        return (self.test_data,) if isinstance(self.test_data, str) else tuple(self.test_data)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["methods"] = list(self.methods)
        d["preprocess"] = self.preprocess.to_dict()  # without the later settings at their defaults, as before them
        if not self.shift:
            # A run without shifts records what it recorded before they existed, so its folder still resumes.
            for key in ("shift", "shift_severities", "shift_max_items"):
                del d[key]
        if self.adapt == "none":
            del d["adapt"]  # likewise for a run without test-time adaptation
        if not self.extra_data:
            del d["extra_data"], d["extra_label_map"]  # and without extra training data
        if self.shortcuts == "auto":
            del d["shortcuts"]
        return d

    def wants_shortcuts(self, n_items: int) -> bool:
        """Whether the shortcut audit runs on training data of ``n_items`` readable images."""
        return self.shortcuts == "on" or (self.shortcuts == "auto" and n_items >= SHORTCUTS_MIN_ITEMS)

    def fingerprint(self) -> str:
        """Hash of the settings and code versions that change results, to recognise a resumable run."""
        text = json.dumps({"config": self.to_dict(), "versions": code_versions()}, sort_keys=True, default=str)
        return hashlib.blake2b(text.encode(), digest_size=10).hexdigest()

    def run_record(self) -> dict:
        """What a run folder's ``run.json`` holds: fingerprint, settings and code versions."""
        return {"fingerprint": self.fingerprint(), "config": self.to_dict(), "versions": code_versions()}

    def changes_since(self, record: dict) -> str:
        """What differs from an earlier :meth:`run_record`, in words.

        ``"other arguments"``, ``"other code versions (GLCMFeatures 1 -> 2)"``
        or both, joined by ``and``.
        """
        changes = []
        if record.get("config") != json.loads(json.dumps(self.to_dict(), default=str)):
            changes.append("other arguments")
        old, new = flat_versions(record.get("versions") or {}), flat_versions(code_versions())
        moved = [
            f"{name} {old.get(name, 'none')} -> {new.get(name, 'none')}"
            for name in sorted(old.keys() | new.keys())
            if old.get(name) != new.get(name)
        ]
        if moved:
            changes.append(f"other code versions ({', '.join(moved)})")
        return " and ".join(changes) or "other arguments"


def parse_params(text: str | None, option: str = "--params") -> dict[str, dict] | None:
    """Method settings from a JSON file or an inline ``method.key=value,...`` list.

    The JSON file holds ``{"method": {"key": value}}``. Inline values are
    read as JSON when they parse (numbers, ``true``, ``null``), else as text.

    >>> parse_params("ayadi-cnn.epochs=5, ayadi-cnn.precision=fp32")
    {'ayadi-cnn': {'epochs': 5, 'precision': 'fp32'}}
    """
    if not text:
        return None
    if text.endswith(".json") or Path(text).is_file():
        try:
            params = json.loads(Path(text).read_text(encoding="utf-8"), object_pairs_hook=unique_keys(option, text))
        except FileNotFoundError:
            raise ConfigError(f"{option} {text}: file not found") from None
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ConfigError(f"{option} {text}: not a JSON object of method -> settings ({exc})") from None
        if not isinstance(params, dict) or not all(isinstance(v, dict) for v in params.values()):
            raise ConfigError(f'{option} {text}: expected a JSON object such as {{"ayadi-cnn": {{"epochs": 5}}}}')
        return {str(m): dict(v) for m, v in params.items()}
    params: dict[str, dict] = {}
    for part in (p.strip() for p in text.split(",")):
        name, sep, value = part.partition("=")
        method, dot, key = name.strip().rpartition(".")
        if not sep or not dot or not method or not key.strip():
            raise ConfigError(f"{option}: '{part}' is not of the form method.setting=value (e.g. ayadi-cnn.epochs=5)")
        try:
            parsed = json.loads(value.strip())
        except json.JSONDecodeError:
            parsed = value.strip()
        settings = params.setdefault(method, {})
        if key.strip() in settings:
            raise ConfigError(f"{option}: {method}.{key.strip()} is given twice; give each setting once")
        settings[key.strip()] = parsed
    return params


@dataclass(frozen=True, kw_only=True)
class TrainConfig(DataSettings):
    """Everything that determines a trained bundle (written to its manifest as ``config``).

    Parameters
    ----------
    data, seed, preprocess, duplicates, max_pixels, allow_outside_paths, bids_label, bids_suffix
        As :class:`DataSettings`; every readable item of DATA is used for
        training, grouped by ``duplicates`` for the inner validation.
    method : str
        Registered method name.
    params : dict
        Method-specific keyword arguments of the builder (``--params``).
    device : str
        ``auto``, ``cpu``, ``cuda`` or ``mps`` (deep methods; classical ones ignore it).
    validate : bool
        Measure the internal validation (:func:`~brainmri.runs.train.internal_validation`);
        False skips the inner refits of a method without its own validation part.
    extra_data : str or None
        A second labelled collection added to the training data
        (``--extra-data``, :mod:`brainmri.data.extra`); its copies of DATA
        images are dropped.
    extra_label_map : dict or None
        Class renaming of ``extra_data`` (``--extra-label-map``).
    processes : int
        Data-parallel training processes of a deep method (``--nproc``,
        :mod:`brainmri.training.distributed`).
    """

    method: str
    params: dict = field(default_factory=dict)
    device: str = "auto"
    processes: int = 1
    validate: bool = True
    extra_data: str | None = None
    extra_label_map: dict | None = None
    shortcuts: str = "auto"

    def __post_init__(self):
        super().__post_init__()
        if self.shortcuts not in ("auto", "on", "off"):
            raise ConfigError(f"--shortcuts must be auto, on or off, got {self.shortcuts!r}")
        if self.extra_label_map and not self.extra_data:
            raise ConfigError("--extra-label-map only applies with --extra-data; add --extra-data OTHER or remove it")
        if not isinstance(self.processes, int) or isinstance(self.processes, bool) or self.processes < 1:
            raise ConfigError(f"--nproc must be an integer >= 1, got {self.processes!r}")

    def to_dict(self) -> dict:
        return {**asdict(self), "preprocess": self.preprocess.to_dict()}
