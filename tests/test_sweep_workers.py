"""Several sweepers on one study: heartbeats, and who ends the shared MLflow parent run.

In process and deterministic: the concurrency is set up as study states (a sibling's trial
RUNNING), not as a timing race between processes (test_sweeps.py runs two real workers).
"""

from __future__ import annotations

import time

import optuna
import pytest
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.trial import TrialState

from latentsweep import tracking
from latentsweep.sweeps.heartbeat import Heartbeat
from latentsweep.sweeps.impl import LatentSweepImpl
from latentsweep.sweeps.summary import best_value_line, parent_run_status, tied_with_best


class FakeStorage:
    def __init__(self, states: dict[int, TrialState]):
        self.states = states
        self.beats: dict[int, int] = dict.fromkeys(states, 0)

    def get_trial(self, trial_id: int):
        return type("T", (), {"state": self.states[trial_id]})()

    def record_heartbeat(self, trial_id: int) -> None:
        self.beats[trial_id] += 1


def _until(predicate, timeout: float = 10.0) -> None:
    deadline = time.time() + timeout
    while not predicate():
        assert time.time() < deadline, "timed out"
        time.sleep(0.01)


def test_heartbeat_beats_every_trial_until_stopped():
    storage = FakeStorage({1: TrialState.COMPLETE, 2: TrialState.RUNNING})
    with Heartbeat(storage, [1, 2], 0.01) as beat:  # the sweeper's: no state check
        _until(lambda: min(storage.beats.values()) >= 3)
    assert not beat._thread.is_alive()
    counts = dict(storage.beats)
    time.sleep(0.05)
    assert storage.beats == counts


def test_trial_heartbeat_ends_by_itself_once_its_trials_leave_running():
    storage = FakeStorage({1: TrialState.RUNNING, 2: TrialState.RUNNING})
    beat = Heartbeat(storage, [1, 2], 0.01, only_running=True).start()
    _until(lambda: storage.beats[1] >= 2)
    storage.states[1] = TrialState.COMPLETE
    _until(lambda: beat.trial_ids == [2])
    storage.states[2] = TrialState.PRUNED
    _until(lambda: not beat._thread.is_alive())


def test_heartbeats_off_start_no_thread():
    storage = FakeStorage({1: TrialState.RUNNING})
    with Heartbeat(storage, [1], None) as beat:
        assert not beat._thread.is_alive()
    assert storage.beats[1] == 0


def test_parent_run_is_ended_only_when_no_trial_of_the_study_runs():
    study = optuna.create_study()
    mine, sibling = study.ask(), study.ask()
    study.tell(mine, 1.0)
    for status in ("FINISHED", "FAILED", "KILLED"):  # a sibling still at work: nobody ends it
        assert parent_run_status(study.trials, status) is None
    study.tell(sibling, state=TrialState.FAIL)
    assert parent_run_status(study.trials, "KILLED") == "KILLED"  # the last one decides


@pytest.fixture
def two_sweepers_one_study(tmp_path):
    """A study with a parent run, trial 0 told by sweeper A and trial 1 still RUNNING in sweeper B."""
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = optuna.create_study(study_name="shared", storage=url)
    parent = tracking.sweep_parent_run(uri, "latentsweep", "shared", url)
    a, b = study.ask(), study.ask()
    study.tell(a, 0.5)
    impl = object.__new__(LatentSweepImpl)  # only what _finish reads
    impl.register_best = False
    impl.config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}, "objective": "val_loss"})
    return impl, study, b, url, uri, parent, MlflowClient(uri)


def test_first_finisher_leaves_the_shared_parent_run_running(two_sweepers_one_study):
    impl, study, b, url, uri, parent, client = two_sweepers_one_study
    impl._finish(study, url, uri, parent, [TrialState.COMPLETE], "FINISHED")  # A is done, B is not
    run = client.get_run(parent)
    assert run.info.status == "RUNNING"
    # nothing written: a summary of that moment could land after the last finisher's and overwrite it
    assert "n_running" not in run.data.metrics and "best_value" not in run.data.metrics

    study.tell(b, 0.25)  # B, the last one, finishes: it ends the run with the final summary
    impl._finish(study, url, uri, parent, [TrialState.COMPLETE], "FINISHED")
    run = client.get_run(parent)
    assert run.info.status == "FINISHED"
    assert run.data.metrics["n_running"] == 0 and run.data.metrics["n_complete"] == 2
    assert run.data.metrics["best_value"] == 0.25


def test_a_crashing_sweeper_does_not_end_a_working_siblings_parent_run(two_sweepers_one_study):
    impl, study, b, url, uri, parent, client = two_sweepers_one_study
    impl._finish(study, url, uri, parent, [TrialState.FAIL], "KILLED")  # A interrupted, B works on
    assert client.get_run(parent).info.status == "RUNNING"
    study.tell(b, 0.25)
    impl._finish(study, url, uri, parent, [TrialState.COMPLETE], "FINISHED")
    assert client.get_run(parent).info.status == "FINISHED"


def test_a_tie_for_the_best_value_is_named_on_the_terminal_and_in_the_results(two_sweepers_one_study, capsys):
    """A discrete score ties often on small data; the study then picks one of the tied trials by its
    storage's order, so the summary names the others."""
    impl, study, b, url, uri, parent, client = two_sweepers_one_study
    study.tell(b, 0.5)  # trial 1 ties trial 0
    study.tell(study.ask(), 0.75)  # trial 2 does not
    impl._finish(study, url, uri, parent, [TrialState.COMPLETE], "FINISHED")
    best = study.best_trial.number
    other = 1 - best
    assert f"best value: 0.5 (trial {best}; tied with trial {other})" in capsys.readouterr().out
    saved = OmegaConf.load(f"{impl.config.hydra.sweep.dir}/optimization_results.yaml")
    assert saved.best_trial == best and list(saved.best_tied_with) == [other]


def test_the_best_value_line_lists_at_most_ten_tied_trials():
    study = optuna.create_study()
    for _ in range(13):
        study.tell(study.ask(), 1.0)
    best = study.best_trial
    line = best_value_line(best, tied_with_best(study.trials, best))
    assert line.startswith(f"best value: 1 (trial {best.number}; tied with trials ") and line.endswith(" and 2 more)")
    assert best_value_line(best, []) == f"best value: 1 (trial {best.number})"
