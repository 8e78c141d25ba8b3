"""Optuna pieces of ``brainmri tune``: samplers, pruners, storages and studies, by name.

Storages. Without ``--storage`` a study lives in a journal file in the
output folder (Optuna's ``JournalStorage`` with a ``JournalFileBackend``):
every finished trial is appended as it ends, so a tune that was stopped
(Ctrl-C, SIGTERM, a crash) continues from its finished trials when the same
command runs again. ``--storage`` takes a journal file path, a SQLite URL
(``sqlite:///tune.db``) or a database server URL (``postgresql://user@host/db``)
that several ``brainmri tune`` processes, on one machine or many, share: each
asks the study for the next configuration, and the samplers see every
worker's trials. A ``postgresql://`` URL is opened with psycopg (version 3)
through SQLAlchemy when psycopg2 is absent.

A study remembers what it tunes (method, data, split, search space and
objective, in its user attributes); opening it for anything else is refused,
so trials of two different questions never mix.

References
----------
T. Akiba, S. Sano, T. Yanase, T. Ohta and M. Koyama, "Optuna: a
next-generation hyperparameter optimization framework", Proc. 25th ACM
SIGKDD International Conference on Knowledge Discovery and Data Mining,
2623-2631, 2019. DOI: 10.1145/3292500.3330701
"""

from __future__ import annotations

import importlib.util
import json
import logging
import re
import time
import warnings
from collections.abc import Callable
from pathlib import Path

from brainmri.errors import ConfigError

logger = logging.getLogger(__name__)

#: Seconds a database server may take to accept a connection before ``--storage`` is reported unreachable.
CONNECT_TIMEOUT_S = 5


def _aco(seed):
    from brainmri.tuning.aco import ACOSampler

    return ACOSampler(seed=seed)


def _optuna_sampler(name: str, **kwargs) -> Callable:
    def make(seed):
        import optuna

        return getattr(optuna.samplers, name)(seed=seed, **kwargs)

    return make


#: ``--sampler`` names -> builders ``make(seed)``. CMA-ES and QMC draw categorical parameters with their
#: independent (random) sampler, as Optuna documents; the warning saying so at every trial is switched off.
SAMPLERS: dict[str, Callable] = {
    "aco": _aco,
    "tpe": _optuna_sampler("TPESampler"),
    "cmaes": _optuna_sampler("CmaEsSampler", warn_independent_sampling=False),
    "gp": _optuna_sampler("GPSampler"),
    "random": _optuna_sampler("RandomSampler"),
    "qmc": _optuna_sampler("QMCSampler", warn_independent_sampling=False),
    "nsga2": _optuna_sampler("NSGAIISampler"),
}

#: ``--pruner`` names -> Optuna pruner classes (``none``: every trial runs to the end).
PRUNERS = {"none": "NopPruner", "median": "MedianPruner", "halving": "SuccessiveHalvingPruner"}


def check_sampler(name: str) -> str:
    """``name`` if it is a ``--sampler``, else a :class:`ConfigError` listing them."""
    if name not in SAMPLERS:
        raise ConfigError(f"--sampler {name!r} is not a sampler; choose one of {', '.join(SAMPLERS)}")
    return name


def parse_samplers(text: str) -> tuple[str, ...]:
    """The samplers of ``--compare`` (comma-separated, each checked, at least two, no repeats)."""
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        check_sampler(name)
    if len(names) < 2 or len(set(names)) != len(names):
        raise ConfigError(
            f"--compare needs at least two different samplers, got {text!r}; e.g. --compare tpe,random,aco"
        )
    return names


def make_sampler(name: str, *, seed: int | None):
    """A new sampler ``name`` (:data:`SAMPLERS`) seeded with ``seed``.

    Optuna marks some samplers (QMC, GP) experimental; that warning is about
    their API, not about the user's run, so it is not shown.
    """
    import optuna

    check_sampler(name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return SAMPLERS[name](seed)
    except ImportError as exc:  # the gp sampler runs on PyTorch
        raise ConfigError(
            f"--sampler {name} needs {exc.name}, which is not installed; install it with: pip install 'brainmri[deep]'"
        ) from None


def make_pruner(name: str):
    """A new pruner ``name`` (:data:`PRUNERS`)."""
    import optuna

    if name not in PRUNERS:
        raise ConfigError(f"--pruner {name!r} is not a pruner; choose one of {', '.join(PRUNERS)}")
    return getattr(optuna.pruners, PRUNERS[name])()


def redact(url: str) -> str:
    """``url`` without its password (``postgresql://user:***@host/db``), for messages and results."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


def is_server(url: str | None) -> bool:
    """Whether ``--storage`` names a database server (shared by processes on several machines)."""
    return bool(url) and "://" in url and not url.startswith("sqlite")


def open_storage(url: str | None, default: Path):
    """The Optuna storage of ``--storage``: a journal file, a SQLite file or a database server.

    Parameters
    ----------
    url : str or None
        None: the journal file ``default``. A value with ``://`` is a
        SQLAlchemy URL (``sqlite:///x.db``, ``postgresql://user:pw@host:5432/db``);
        anything else is the path of a journal file.
    default : Path
        The journal file used when ``url`` is None (in the output folder).

    Raises
    ------
    ConfigError
        The server cannot be reached within :data:`CONNECT_TIMEOUT_S`
        seconds, refuses the login, or its driver is not installed; the
        message names the URL without its password.
    """
    import optuna

    if not url or "://" not in url:
        from optuna.storages.journal import JournalFileBackend

        path = Path(url) if url else default
        check_journal(path, url or str(default))
        path.parent.mkdir(parents=True, exist_ok=True)
        return optuna.storages.JournalStorage(JournalFileBackend(str(path)))
    if url.startswith("sqlite:///"):
        check_sqlite(Path(url.removeprefix("sqlite:///")), url)
    import sqlalchemy.exc

    engine, given = {}, url
    if url.startswith("postgresql://"):
        if importlib.util.find_spec("psycopg2") is None:
            url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
        engine = {"connect_args": {"connect_timeout": CONNECT_TIMEOUT_S}}
    try:
        return _rdb_storage(url, engine)
    except (sqlalchemy.exc.SQLAlchemyError, ImportError, ValueError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise ConfigError(
            f"--storage {redact(given)}: cannot open the study storage ({reason}); check the URL, that "
            "the server runs and accepts this user, and that its driver is installed (pip install "
            "'brainmri[tune]')"
        ) from None


def storage_file(url: str | None, default: Path) -> Path | None:
    """The file that the ``--storage`` value ``url`` keeps the study in (a journal or SQLite file), or None for a server.

    >>> storage_file("sqlite:///runs/tune.db", Path("out/study.journal")).as_posix()
    'runs/tune.db'
    >>> storage_file(None, Path("out/study.journal")).as_posix(), storage_file("postgresql://u@h/db", Path("x"))
    ('out/study.journal', None)
    """
    if not url:
        return default
    if url.startswith("sqlite:///"):
        return Path(url.removeprefix("sqlite:///"))
    return None if "://" in url else Path(url)


#: The first bytes of every SQLite database file.
SQLITE_HEADER = b"SQLite format 3\x00"


def check_journal(path: Path, given: str) -> None:
    """Refuse a journal file that Optuna would damage by appending to it: a folder, another kind of file, a cut record.

    Optuna's journal is one JSON object per line, each with an ``op_code``;
    it skips a last line without its newline and appends after it, which
    turns a file cut short into one that no longer loads. The file is only
    read here, never changed.

    Raises
    ------
    ConfigError
        The message names the file and what to do.
    """
    if path.is_dir():
        raise ConfigError(f"--storage {given}: is a folder; name a journal file (e.g. study.journal) or a URL")
    if not path.exists() or path.stat().st_size == 0:
        return
    if not path.is_file():
        raise ConfigError(f"--storage {given}: is not a regular file; name a journal file (e.g. study.journal)")
    not_journal = (
        f"--storage {given}: is not an Optuna journal of brainmri tune ({{}}), so it is left as it is; "
        "name a new journal file, or the journal of an earlier tune"
    )
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"--storage {given}: cannot be read ({exc.strerror})") from None
    lines = data.split(b"\n")
    for number, line in enumerate(lines[:-1], start=1):
        try:
            record = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ConfigError(not_journal.format(f"line {number} is not a JSON record")) from None
        if not isinstance(record, dict) or "op_code" not in record:
            raise ConfigError(not_journal.format(f"line {number} is not an Optuna journal record"))
    if lines[-1]:
        raise ConfigError(
            f"--storage {given}: its last record (line {len(lines)}) is cut short, as when a disk fills "
            "or a copy is interrupted; restore the journal from a copy, or delete that line to continue "
            "from the trials before it"
        )


def check_sqlite(path: Path, given: str) -> None:
    """Refuse a ``sqlite:///`` file that exists and is not a SQLite database (it is left unchanged)."""
    if path.is_dir():
        raise ConfigError(f"--storage {given}: is a folder; name a database file (sqlite:///tune.db)")
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        with open(path, "rb") as fh:
            header = fh.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise ConfigError(f"--storage {given}: cannot be read ({exc.strerror})") from None
    if header != SQLITE_HEADER:
        raise ConfigError(
            f"--storage {given}: {path} is not a SQLite database, so it is left as it is; name a new "
            "database file, or the database of an earlier tune"
        )


def _rdb_storage(url: str, engine: dict, attempts: int = 3):
    """``RDBStorage(url)``, tried again when another worker was creating the same tables at that moment."""
    import optuna
    import sqlalchemy.exc

    for attempt in range(attempts):
        try:
            # The heartbeat lets a worker that outlives a killed one see its unfinished trial as failed. Optuna
            # calls the argument experimental (its interface may change), which is no news for brainmri's user.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return optuna.storages.RDBStorage(url, engine_kwargs=engine, heartbeat_interval=60, grace_period=180)
        except (sqlalchemy.exc.IntegrityError, sqlalchemy.exc.ProgrammingError):
            # Two workers starting on an empty database both create Optuna's tables; one loses the race.
            if attempt == attempts - 1:
                raise
            time.sleep(1.0 + attempt)


def open_study(storage, name: str, attrs: dict, *, sampler, pruner):
    """Load study ``name`` from ``storage``, or create it, and check that it tunes what ``attrs`` describe.

    Parameters
    ----------
    storage
        From :func:`open_storage`.
    name : str
        The study name (``--study``).
    attrs : dict
        What the study is for (method, data, split, fold, search space,
        objective); stored as user attributes of a new study, compared with
        those of an existing one.
    sampler, pruner
        From :func:`make_sampler` and :func:`make_pruner`.

    Raises
    ------
    ConfigError
        The study exists and was created for something else.
    """
    import optuna

    attrs = json.loads(json.dumps(attrs))  # as the storage gives them back (tuples become lists)
    study = optuna.create_study(
        storage=storage, study_name=name, direction="maximize", sampler=sampler, pruner=pruner, load_if_exists=True
    )
    if not study.user_attrs:
        # Two workers may create the study at once; each writes the same attributes.
        for key, value in attrs.items():
            study.set_user_attr(key, value)
        return study
    _check_attrs(name, settled_attrs(study, attrs), attrs)
    return study


def settled_attrs(study, attrs: dict, wait_s: float = 30.0) -> dict:
    """The study's user attributes once another worker has finished writing them (each is its own write).

    A study that still lacks some of ``attrs`` after ``wait_s`` seconds is
    returned as it is (one made by an older brainmri, say), and is refused.
    """
    deadline = time.monotonic() + wait_s
    stored = study.user_attrs  # read again from the storage at each access
    while not attrs.keys() <= stored.keys() and time.monotonic() < deadline:
        time.sleep(0.5)
        stored = study.user_attrs
    return stored


def check_studies(storage, base: str, attrs: dict) -> None:
    """Refuse at once, before any image is read, a study ``base`` or ``base/...`` created for something else.

    ``attrs`` holds what is known before reading the data (method, data,
    search space...); :func:`open_study` checks the rest.
    """
    attrs = json.loads(json.dumps(attrs))
    for study in storage.get_all_studies():
        if study.study_name == base or study.study_name.startswith(base + "/"):
            # A key not there yet may be being written by another worker: open_study checks it when it is.
            known = {key: value for key, value in attrs.items() if key in study.user_attrs}
            _check_attrs(study.study_name, study.user_attrs, known)


def _check_attrs(name: str, stored: dict, attrs: dict) -> None:
    """Raise when a study's stored attributes (if any) differ from ``attrs``."""
    for key, value in attrs.items():
        if stored and stored.get(key) != value:
            raise ConfigError(
                f"--study {name}: this study was created for {key} {shown_params(stored.get(key))}, not "
                f"{shown_params(value)}; give another --study name (or another --storage) for a new search"
            )


def shown_params(value) -> str:
    text = repr(value)
    return text if len(text) <= 120 else text[:117] + "..."
