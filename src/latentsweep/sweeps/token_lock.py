"""A lock between sweepers that reach their study only through Optuna's API (journal file, gRPC
proxy), so that count-then-ask never overshoots `n_trials`.

SQLite gets a file lock and PostgreSQL an advisory lock (`sweeps.storage.ask_lock`); behind the
gRPC proxy there is no database connection to lock, and a journal on NFS has no reliable flock. The
one atomic step Optuna's storages all offer is moving a trial from WAITING to RUNNING (how
`enqueue_trial` hands a trial to one worker only). So the lock is a token: the one WAITING trial of
a side study, `latentsweep-ask-lock`. Acquiring moves it to RUNNING (one sweeper wins); releasing
completes it and creates the next WAITING token. A token RUNNING for longer than `LEASE_S` belongs
to a sweeper that died holding it: the first sweeper to fail it (also atomic) creates the next one.
One token trial per ask accumulates in the side study; it holds no parameters.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections.abc import Iterator

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from .remote_storage import last_beat

log = logging.getLogger("latentsweep.sweeps")

LOCK_STUDY = "latentsweep-ask-lock"
LEASE_S = 60.0  # the lock guards a few storage calls; held this long, its holder is dead
POLL_S = 0.02


def _lock_study(storage: BaseStorage) -> int:
    """The side study's id; the sweeper that creates it puts in the first token."""
    try:
        study_id = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], LOCK_STUDY)
    except optuna.exceptions.DuplicatedStudyError:
        return storage.get_study_id_from_name(LOCK_STUDY)
    _new_token(storage, study_id)
    return study_id


def _new_token(storage: BaseStorage, study_id: int) -> None:
    template = optuna.trial.create_trial(state=TrialState.WAITING)
    storage.create_new_trial(study_id, template_trial=template)


def _try_take(storage: BaseStorage, study_id: int) -> int | None:
    """Take a WAITING token (the id), or break a dead holder's token; None: wait and try again."""
    tokens = storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING, TrialState.RUNNING))
    for token in tokens:
        if token.state == TrialState.WAITING:
            with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
                if storage.set_trial_state_values(token._trial_id, TrialState.RUNNING):
                    return token._trial_id
    for token in tokens:
        if token.state == TrialState.RUNNING and time.time() - last_beat(token) > LEASE_S:
            try:
                storage.set_trial_state_values(token._trial_id, TrialState.FAIL)
            except optuna.exceptions.UpdateFinishedTrialError:
                continue  # another sweeper broke it first and made the next token
            log.warning("the ask lock of %s was held for over %.0f s: its holder died; lock released",
                        LOCK_STUDY, LEASE_S)
            _new_token(storage, study_id)
    return None


@contextlib.contextmanager
def token_lock(storage: BaseStorage) -> Iterator[None]:
    """Hold the ask lock of `storage` (see the module docstring)."""
    study_id = _lock_study(storage)
    since = time.monotonic()
    while (token := _try_take(storage, study_id)) is None:
        if time.monotonic() - since > LEASE_S and not storage.get_all_trials(study_id, deepcopy=False):
            _new_token(storage, study_id)  # the side study's creator died before its first token
            since = time.monotonic()
        time.sleep(POLL_S * (1 + random.random()))  # jitter: waiters do not poll in lockstep
    try:
        yield
    finally:
        try:
            storage.set_trial_state_values(token, TrialState.COMPLETE)
        except optuna.exceptions.UpdateFinishedTrialError:
            log.warning("the ask lock was broken while held (held over %.0f s)", LEASE_S)
        else:
            _new_token(storage, study_id)
