"""A killed trial continues from its own last checkpoint, as the same Optuna trial.

When a trial's process dies (its joblib worker was killed, or the whole sweep was and the next run
finds the trial's heartbeat stale), nothing was wrong with the trial, and its epochs are
checkpointed (every `trainer.checkpoint_every_s`; one killed before its first checkpoint starts again). So the sweeper runs it again with the same command line plus
`trainer.resume_from=<its checkpoint>`:

- it stays the same Optuna trial (still RUNNING): the pruner sees the first attempt's intermediate
  values, and the trial counts once towards `n_trials`;
- the job resumes the checkpoint, whose loop state names the trial's MLflow child run: that run is
  continued, and the epochs it lacks are written, so its history has each epoch once
  (`pipeline._log_missing_epochs`); it is tagged `resumed_from_epoch`;
- `hydra.sweeper.max_retries` bounds how many times a trial is continued; after that it FAILs.

The sweeper records each trial's checkpoint folder (`checkpoint_dir`) when it first launches it,
so another sweeper process can continue it. A continuation's command line is the trial's own
parameters plus the current command's fixed values (the same command, run again).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

log = logging.getLogger("latentsweep.sweeps")

CHECKPOINT = "checkpoint_dir"  # user attr: the trial's checkpoint folder (absolute; "" without checkpoints)
CONTINUED = "continued"  # user attr: how many times the trial was continued


def checkpoint_dir(sweep_dir: str | Path, trial_number: int) -> Path:
    """The trial's own checkpoint folder: stable across attempts (a job's output folder is not)."""
    return Path(sweep_dir).resolve() / "checkpoints" / f"trial-{trial_number}"


def _quote(value: str) -> str:
    return "'" + str(value).replace("\\", "\\\\").replace("'", "\\'") + "'"


def record_launch(trial: optuna.Trial, checkpoint: Path | None) -> None:
    """What a continuation needs, stored on the trial when it is first launched."""
    trial.set_user_attr(CHECKPOINT, str(checkpoint) if checkpoint is not None else "")


def last_epoch(trial: FrozenTrial) -> int | None:
    """The last epoch the trial's checkpoint holds, or None when it has none yet."""
    # torch: imported when a killed trial is looked at, not by Hydra's plugin scan
    from ..training.checkpoint import latest_epoch

    folder = trial.user_attrs.get(CHECKPOINT)
    return latest_epoch(folder) if folder else None


def resume_overrides(trial: FrozenTrial) -> list[str]:
    """Resume the trial's checkpoint when one was written (a trial killed before its first epoch
    ended starts again from scratch, as the same trial)."""
    line = [f"++trainer.checkpoint_dir={_quote(trial.user_attrs[CHECKPOINT])}"] if trial.user_attrs.get(CHECKPOINT) \
        else []
    if last_epoch(trial) is not None:
        line += ["++trainer.resume=true", f"++trainer.resume_from={_quote(trial.user_attrs[CHECKPOINT])}"]
    return line


def may_continue(trial: FrozenTrial, max_retries: int) -> bool:
    return CHECKPOINT in trial.user_attrs and int(trial.user_attrs.get(CONTINUED, 0)) < max_retries


def count_continuation(study: optuna.Study, trial_id: int) -> FrozenTrial:
    """One more continuation of the trial; returns it as stored now."""
    storage = study._storage
    done = int(storage.get_trial(trial_id).user_attrs.get(CONTINUED, 0))
    storage.set_trial_user_attr(trial_id, CONTINUED, done + 1)
    return storage.get_trial(trial_id)


def take_over_stale(study: optuna.Study, max_retries: int) -> list[FrozenTrial]:
    """Stale RUNNING trials (their process died; no heartbeat for the grace period): those that
    may continue are claimed for this sweeper (a fresh heartbeat, so no other sweeper takes them
    too; call under the study's ask lock) and returned; the others are failed, as Optuna's
    `fail_stale_trials` would. Storages without heartbeats have no stale trials."""
    storage = study._storage
    if not getattr(storage, "get_heartbeat_interval", lambda: None)():
        return []
    claimed = []
    for trial_id in storage._get_stale_trial_ids(study._study_id):  # what fail_stale_trials uses
        trial = storage.get_trial(trial_id)
        if may_continue(trial, max_retries):
            storage.record_heartbeat(trial_id)
            claimed.append(count_continuation(study, trial_id))
            continue
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):  # failed by another sweeper
            reason = "killed: its process died (stale heartbeat)"
            if CHECKPOINT in trial.user_attrs:
                reason += f", continued {trial.user_attrs.get(CONTINUED, 0)} times (hydra.sweeper.max_retries)"
            storage.set_trial_user_attr(trial_id, "fail_reason", reason)
            storage.set_trial_user_attr(trial_id, "fail_cause", "killed")
            storage.set_trial_state_values(trial_id, state=TrialState.FAIL)
            log.warning("trial %d failed: %s", trial.number, reason)
    return claimed
