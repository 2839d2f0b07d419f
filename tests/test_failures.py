"""Failures by cause (issue 18): how a failed trial's exception is classified, and the rules that
stop a sweep at once (the sweep-level checks run real sweeps, in test_faults_continue.py)."""

from __future__ import annotations

import json
import pickle

import pytest

from latentsweep.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    DivergedError,
    ResourceError,
    mark_origin,
)
from latentsweep.sweeps import failures
from latentsweep.sweeps.failures import (
    DIVERGED,
    ERROR,
    FATAL,
    KILLED,
    OOM,
    InfeasibleStreak,
    WorkerDied,
    cause_of,
    same_failure_everywhere,
    signature,
)


def _raised(call) -> BaseException:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the exception is what the test looks at
        mark_origin(exc)
        return pickle.loads(pickle.dumps(exc))  # what a worker process sends back to the sweeper
    raise AssertionError("did not raise")


@pytest.mark.parametrize(("error", "cause"), [
    (WorkerDied("its worker process died: TerminatedWorkerError: ..."), KILLED),
    (ResourceError("out of GPU memory on cuda:0 with data.batch_size=64"), OOM),
    (MemoryError(), OOM),
    (DivergedError("training loss became nan at epoch 3"), DIVERGED),
    (ConfigError("model.hidden_size must be positive"), FATAL),
    (ModuleNotFoundError("No module named 'nope'"), FATAL),
    (DataError("no finite validation loss"), ERROR),
    (CheckpointError("checkpoint is corrupt"), ERROR),
    (RuntimeError("something odd"), ERROR),
    (None, ERROR),
])
def test_each_exception_has_its_cause(error, cause):
    assert cause_of(error) == cause


def test_a_type_error_is_fatal_when_our_code_raised_it_and_the_mark_survives_the_trip_home():
    ours = _raised(lambda: same_failure_everywhere(None))  # a bug inside latentsweep
    library = _raised(lambda: json.loads(3))  # a library refusing one trial's odd value
    assert isinstance(ours, TypeError) and isinstance(library, TypeError)
    assert cause_of(ours) == FATAL
    assert cause_of(library) == ERROR


def test_the_same_failure_in_the_first_trials_is_one_every_trial_will_hit():
    bug = signature(RuntimeError("injected bug\nsecond line"))
    assert bug == "RuntimeError: injected bug"
    assert same_failure_everywhere([bug] * failures.SAME_FAILURE_TRIALS)
    assert same_failure_everywhere([bug] * failures.SAME_FAILURE_TRIALS + [None])
    assert not same_failure_everywhere([bug] * (failures.SAME_FAILURE_TRIALS - 1))  # too early to tell
    assert not same_failure_everywhere([bug, None, bug])  # a trial completed: not every trial fails
    assert not same_failure_everywhere([bug, signature(RuntimeError("another")), bug])
    assert not same_failure_everywhere([None] * failures.SAME_FAILURE_TRIALS)


def test_a_space_where_every_sample_is_infeasible_is_hopeless():
    streak = InfeasibleStreak(limit=10)
    for _ in range(9):
        streak.infeasible("model.latent_dim=64 exceeds model.hidden_size=16")
    assert not streak.hopeless(n_trials=20)
    streak.infeasible("model.latent_dim=64 exceeds model.hidden_size=16")
    assert streak.hopeless(n_trials=20) and "exceeds model.hidden_size" in streak.last
    assert InfeasibleStreak().hopeless(n_trials=0) is False
    few = InfeasibleStreak(limit=10)
    few.infeasible("x")
    few.infeasible("x")
    assert few.hopeless(n_trials=2)  # a 2-trial study whose two samples were infeasible
    mixed = InfeasibleStreak(limit=2)
    mixed.feasible()
    mixed.infeasible("x")
    mixed.infeasible("x")
    assert not mixed.hopeless(n_trials=20)  # the space has feasible points: constraints just prune it


def test_stale_trials_continue_up_to_max_retries_then_fail(tmp_path):
    """What a rerun does with the trials of a killed sweep (real SQLite study, real heartbeats)."""
    import time
    import warnings

    import optuna
    from optuna.trial import TrialState

    from latentsweep.sweeps import continuation
    from latentsweep.sweeps.storage import make_storage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = make_storage(f"sqlite:///{tmp_path / 'optuna.db'}", heartbeat_interval=1, grace_period=3)
        study = optuna.create_study(study_name="s", storage=storage)
        fresh, spent, unknown = study.ask(), study.ask(), study.ask()
        continuation.record_launch(fresh, tmp_path / "ckpt-0")
        continuation.record_launch(spent, tmp_path / "ckpt-1")
        spent.set_user_attr(continuation.CONTINUED, 2)  # continued twice already
        for trial in (fresh, spent, unknown):  # `unknown`: launched by a sweeper without continuation
            storage.record_heartbeat(trial._trial_id)
        time.sleep(4.2)  # SQLite keeps heartbeats to the second: past the 3 s grace period

        claimed = continuation.take_over_stale(study, max_retries=2)
    assert [t.number for t in claimed] == [fresh.number]
    assert claimed[0].user_attrs[continuation.CONTINUED] == 1 and claimed[0].state == TrialState.RUNNING
    assert continuation.resume_overrides(claimed[0]) == [f"++trainer.checkpoint_dir='{tmp_path / 'ckpt-0'}'"]
    trials = {t.number: t for t in study.trials}
    assert trials[spent.number].state == TrialState.FAIL and "continued 2 times" in trials[spent.number].user_attrs[
        "fail_reason"]
    assert trials[unknown.number].state == TrialState.FAIL
    # claimed with a fresh heartbeat: another sweeper starting now (within the grace period) leaves it
    assert continuation.take_over_stale(study, max_retries=2) == []


def test_a_failing_write_never_leaves_the_trial_running(tmp_path):
    """`outcomes.tell` tries each write on its own: a reason the store refuses (not JSON) is logged,
    and the trial still leaves RUNNING (the old `_fail` skipped the tell when the first write failed)."""
    import optuna
    from optuna.trial import TrialState

    from latentsweep.sweeps import outcomes

    study = optuna.create_study(study_name="s", storage=f"sqlite:///{tmp_path / 'optuna.db'}")
    trial = study.ask()
    outcomes.tell(study, trial, outcomes.Outcome(TrialState.FAIL, reason="sweep interrupted", cause=object()))
    (stored,) = study.trials
    assert stored.state == TrialState.FAIL and stored.user_attrs["fail_reason"] == "sweep interrupted"
    assert "fail_cause" not in stored.user_attrs  # the refused write, logged
