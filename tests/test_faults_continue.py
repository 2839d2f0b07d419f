"""Sweeps survive faults (issue 18): failures handled by their cause, killed trials continue.

Real `python train.py -m hydra/sweeper=optuna` processes on real SQLite stores. The kill -9 checks
(a joblib worker mid-sweep, the whole sweep) live in test_faults.py with the other kills.
"""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState

from tests.hardening_kit import ROOT, cli_env, run_cli

pytestmark = pytest.mark.slow  # every test here runs train.py -m in a subprocess

TINY = ["~search", "data.n_series=40", "data.shortest=10", "data.longest=20", "data.batch_size=16",
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

