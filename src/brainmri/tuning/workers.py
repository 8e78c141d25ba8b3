"""What the workers of one Optuna study do about each other's trials: recover the trials a killed run left running,
refuse a second worker on a file storage, and wait for the trials other workers still run."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

from brainmri.errors import ConfigError


def recover_interrupted(study, where: str, say: Callable[[str], None], storage: str | None = None) -> None:
    """Fail the trials a killed run left running, and queue every failed trial's configuration again.

    Only for storages that one process uses at a time (a journal or SQLite
    file): there a trial still running when the command starts was
    abandoned. A server storage finds its abandoned trials by heartbeat.
    A SQLite file has heartbeats too: a trial whose heartbeat is recent is
    another worker's, running now, and this one is refused rather than
    failing that worker's trial under it (which stopped it with Optuna's
    "Cannot tell a FAIL trial").

    Raises
    ------
    ConfigError
        Another worker is running a trial of the study in the same SQLite file.
    """
    import optuna
    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState

    if storage is not None and storage.startswith("sqlite"):
        with warnings.catch_warnings():  # Optuna calls the function experimental, no news for brainmri's user
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            fail_stale_trials(study)  # heartbeat older than the grace period: abandoned
        live = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if live:
            raise ConfigError(
                f"--storage {storage}: trial {live[0].number} of study {study.study_name} is running in another "
                "worker now (or in a run killed less than 3 minutes ago); a SQLite file serves one worker at a "
                "time: run this one when it is done, or share the study through a database server "
                "(--storage postgresql://USER@HOST/DB)"
            )
    else:  # a journal file has no heartbeat: a trial running when the command starts was abandoned
        for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
    # (SQLite: failing the running trials here too would race a worker that starts one between the check above and
    # this line; its abandoned ones were failed by their stale heartbeat.)
    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs.get("retry_of") for t in trials}
    for trial in trials:
        if trial.state == TrialState.FAIL and trial.number not in retried and trial.params:
            study.enqueue_trial(trial.params, user_attrs={"retry_of": trial.number})
            say(f"{where}: trial {trial.number} was interrupted; its configuration is queued to run again")


def wait_for_others(study, where: str, say: Callable[[str], None], poll_s: float = 2.0) -> None:
    """Wait until no other worker's trial of ``study`` is still running (failed by heartbeat if it died)."""
    from optuna.storages import fail_stale_trials
    from optuna.trial import TrialState

    said = False
    while study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if not said:
            say(f"{where}: waiting for the trials other workers are running")
            said = True
        fail_stale_trials(study)
        time.sleep(poll_s)
