"""Sweeps survive faults (issue 18): failures handled by their cause, killed trials continue.

Real `python train.py -m hydra/sweeper=optuna` processes on real SQLite stores. The kill -9 checks
(a joblib worker mid-sweep, the whole sweep) live in test_faults.py with the other kills.
"""

from __future__ import annotations

import re
import sys

import optuna
import pytest
from optuna.trial import TrialState

from tests.hardening_kit import ROOT, cli_env, run_cli

pytestmark = pytest.mark.slow  # every test here runs train.py -m in a subprocess

TINY = ["~search", "model=rnn_ae", "data.n_series=40", "data.shortest=10", "data.longest=20", "data.batch_size=16",
        "trainer.progress=false", "trainer.num_threads=1", "tracking.enabled=false"]

# Stands for a bug every trial hits: the training step raises, in every process that trains.
BUG = '''
import latentsweep.training.loop as loop

def _run_epoch(*args, **kwargs):
    raise RuntimeError("injected bug: tensor shapes do not match")

loop._run_epoch = _run_epoch
'''


def _study(cwd, name="rnn_ae-synthetic") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd / 'sweeps' / 'optuna.db'}")


def _sweep(cwd, *args, env=None):
    return run_cli(cwd, "-m", "hydra/sweeper=optuna", *TINY, *args, env=env, timeout=240)


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


def test_a_bug_in_every_trial_stops_a_20_trial_sweep_after_the_first_few_with_one_line(tmp_path):
    (tmp_path / "inject").mkdir()
    (tmp_path / "inject" / "sitecustomize.py").write_text(BUG)
    env = cli_env(PYTHONPATH=f"{tmp_path / 'inject'}:{ROOT / 'src'}")
    proc = _sweep(tmp_path, "model.hidden_size=16", "model.latent_dim=4", "model.cell=choice(gru,lstm)",
                  "'optimizer.lr=tag(log, interval(1e-3, 3e-2))'".strip("'"), "trainer.max_epochs=2",
                  "hydra.sweeper.n_trials=20", env=env)
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    (line,) = _errors(proc.stderr)
    assert "RuntimeError: injected bug: tensor shapes do not match" in line and "every trial would hit it" in line
    trials = _study(tmp_path).trials
    assert len(trials) == 3, [(t.number, t.state.name) for t in trials]  # not 20, not max_failure_rate's 4+
    assert all(t.state == TrialState.FAIL and t.user_attrs["fail_cause"] == "error" for t in trials)


def test_a_config_error_stops_the_sweep_at_its_first_trial(tmp_path):
    # a value that composes but that the schema's check refuses: a ConfigError in the first trial
    proc = _sweep(tmp_path, "model.hidden_size=16", "model.latent_dim=4", "model.cell=choice(gru,lstm)",
                  "model.dropout=choice(1.5,2.5)", "hydra.sweeper.n_trials=20")
    assert proc.returncode == 1, proc.stderr[-3000:]
    (line,) = _errors(proc.stderr)
    assert "ConfigError" in line and "model.dropout" in line
    trials = _study(tmp_path).trials
    assert len(trials) == 1 and trials[0].user_attrs["fail_cause"] == "fatal"


def test_a_space_where_every_sample_is_infeasible_stops_naming_the_constraint(tmp_path):
    proc = _sweep(tmp_path, "model.hidden_size=8", "model.latent_dim=choice(16,32)",
                  "hydra.sweeper.custom_search_space=latentsweep.sweeps.spaces.latent_within_hidden",
                  "hydra.sweeper.n_trials=20")
    assert proc.returncode == 1, proc.stderr[-3000:]
    (line,) = _errors(proc.stderr)
    assert "exceeds model.hidden_size=8" in line and "constraint" in line
    trials = _study(tmp_path).trials
    assert len(trials) == 10 and all(t.user_attrs["fail_cause"] == "infeasible" for t in trials)



def _killed_study(cwd, n: int, grace: int):
    """A study whose sweeper was killed with `n` trials RUNNING (launched, checkpoint folder recorded,
    no checkpoint yet), their heartbeats now older than the grace period."""
    import time
    import warnings

    from latentsweep.sweeps import continuation
    from latentsweep.sweeps.storage import make_storage

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        storage = make_storage(f"sqlite:///{cwd / 'sweeps' / 'optuna.db'}", heartbeat_interval=1, grace_period=grace)
        study = optuna.create_study(study_name="rnn_ae-synthetic", storage=storage)
        for i in range(n):
            trial = study.ask()
            trial.suggest_categorical("model.cell", ["gru", "lstm"])
            continuation.record_launch(trial, cwd / "killed" / f"trial-{i}")
            storage.record_heartbeat(trial._trial_id)
    time.sleep(grace + 2.2)  # SQLite keeps heartbeats to the second
    return [t.number for t in study.trials]


@pytest.mark.slow
def test_two_sweepers_taking_over_one_killed_study_never_run_a_trial_twice(tmp_path):
    """Each claimed trial is beaten from the moment it is claimed: while sweeper A still runs the
    first of the killed sweep's trials it claimed, sweeper B (asking its own trials meanwhile) must
    not find A's waiting ones stale and claim them again. Trials last longer than the grace period."""
    import subprocess

    grace = 2
    stale = _killed_study(tmp_path, 3, grace)
    tiny = [a for a in TINY if not a.startswith(("data.n_series", "data.longest"))]
    args = [*tiny, "data.n_series=200", "data.longest=60", "trainer.max_epochs=12", "trainer.patience=null",
            "model.hidden_size=16", "model.latent_dim=4", "model.cell=choice(gru,lstm)",
            "hydra.sweeper.n_trials=6", "hydra.sweeper.heartbeat_interval=1", f"hydra.sweeper.grace_period={grace}",
            "hydra.sweeper.pruner.name=none"]
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "hydra/sweeper=optuna", *args]
    procs = [subprocess.Popen(cmd, cwd=tmp_path, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-3000:] for o in outputs)
    text = "\n".join(outputs)
    continued = [int(n) for n in re.findall(r"continuing trial (\d+) \(attempt", text)]
    launched = [int(n) for n in re.findall(r"launching trial (\d+):", text)]
    assert sorted(continued) == stale, text[-4000:]  # each killed trial continued once, by one sweeper
    assert sorted(continued + launched) == list(range(6))  # and no trial ran twice
    trials = _study(tmp_path).trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    assert [t.user_attrs.get("continued") for t in trials[:3]] == [1, 1, 1]
