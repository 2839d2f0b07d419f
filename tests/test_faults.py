"""Faults (issue 7): kill -9 mid-run and mid-sweep, parallel workers on one study, the MLflow server dying.

Real processes only: `python train.py` (and `-m hydra/sweeper=optuna`) in subprocesses, SIGKILL,
a real `mlflow server`, and a throwaway PostgreSQL server (tests/pg.py).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import optuna
import pytest
import torch
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState
from safetensors.torch import load_file

from latentsweep.training.checkpoint import (
    CHECKPOINT_FILES,
    SLOT_FILES,
    latest_epoch,
    model_weights,
)
from tests.hardening_kit import (
    cli_env,
    empty_store,
    mlflow_servers,
    running_trials,
    stop_group,
    train_cmd,
    wait_for,
)
from tests.pg import pg_available, postgres_server

pytestmark = pytest.mark.slow  # every test here runs train.py or a sweep in a subprocess

# ~0.1 s per epoch on one thread: long enough to kill mid-run, short enough for CI. Every epoch is
# checkpointed (by default one is written at most every 10 s, and the last): the kills land mid-run.
EVERY_EPOCH = "trainer.checkpoint_every_s=0"
RUN = ["model=rnn_ae", "data.n_series=60", "data.shortest=20", "data.longest=60", "data.batch_size=16", "model.hidden_size=16",
       "model.latent_dim=4", "model.num_layers=2", "model.dropout=0.2", "trainer.patience=null",
       "trainer.num_threads=1", "trainer.progress=false", "tracking.n_reconstructions=0", "seed=3", EVERY_EPOCH]
SPACE = ["model.cell=choice(gru,lstm)", "optimizer.lr=tag(log, interval(1e-3, 3e-2))", EVERY_EPOCH]


def _popen(cwd: Path, *args: str, sweep: bool = False, env=None) -> subprocess.Popen:
    return subprocess.Popen(train_cmd(*args, sweep=sweep), cwd=cwd, env=env or cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _finish(proc: subprocess.Popen, timeout: float = 240) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=timeout)
    return proc.returncode, out, err


def _latest(checkpoint: Path) -> int | None:
    """The newest checkpointed epoch, or None before the first checkpoint."""
    return latest_epoch(checkpoint)


def _final_weights(checkpoint: Path) -> dict[str, torch.Tensor]:
    return model_weights(checkpoint)


# --- (a) kill -9 a single run mid-epoch, resume ------------------------------------------------------

def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_weights(tmp_path):
    epochs = 30
    uri = empty_store(tmp_path / "mlruns")
    common = [*RUN, f"trainer.max_epochs={epochs}"]
    # the reference runs alongside (no tracking: only its weights matter)
    full = _popen(tmp_path, *common, "tracking.enabled=false", f"hydra.run.dir={tmp_path / 'full'}")
    victim = _popen(tmp_path, *common, f"tracking.uri={uri}", f"hydra.run.dir={tmp_path / 'runA'}")
    ckpt = tmp_path / "runA" / "checkpoint"
    try:
        wait_for(lambda: _latest(ckpt) is not None or victim.poll() is not None, 120, "the first checkpoint")
        time.sleep(0.05)  # into the next epoch
        victim.send_signal(signal.SIGKILL)
    finally:
        victim.kill()
        victim.communicate()
    killed_at = _latest(ckpt)
    assert victim.returncode == -signal.SIGKILL
    assert killed_at is not None and killed_at < epochs - 1, "the run finished before it was killed"

    rc, out, err = _finish(_popen(tmp_path, *common, f"tracking.uri={uri}", f"hydra.run.dir={tmp_path / 'runB'}",
                                  "trainer.resume=true", f"trainer.resume_from={tmp_path / 'runA'}"))
    assert rc == 0, err[-3000:]
    assert f"resumed from epoch {killed_at}" in out + err
    rc, _, err = _finish(full)
    assert rc == 0, err[-3000:]
    assert _latest(ckpt) == _latest(tmp_path / "full" / "checkpoint") == epochs - 1
    # no torn or temporary file left: the newest checkpoint, maybe its synced copy, and the end mark
    assert {p.name for p in ckpt.iterdir()} <= {*CHECKPOINT_FILES, "FINISHED"}
    resumed, reference = _final_weights(ckpt), _final_weights(tmp_path / "full" / "checkpoint")
    assert resumed.keys() == reference.keys()
    for key in reference:
        torch.testing.assert_close(resumed[key], reference[key], atol=0, rtol=0)
    # the resumed process continued the killed run's MLflow run (no second run), now FINISHED
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("latentsweep").experiment_id])
    assert run.info.status == "FINISHED"
    assert epochs - 1 in {m.step for m in client.get_metric_history(run.info.run_id, "val_loss")}


# --- (b) kill -9 a sweep mid-trial, the same command finishes the study ------------------------------

def _epochs_trained(cwd: Path) -> int:
    """Epochs trained by every job of every sweep run under `cwd` (one log line per epoch)."""
    return sum(len(re.findall(r"\] - epoch \d+/\d+ train_loss", log.read_text()))
               for log in cwd.glob("sweeps/**/train.log"))


def _trial_run(uri: str, number: int):
    """The one MLflow child run of Optuna trial `number`."""
    client = MlflowClient(uri)
    (run,) = client.search_runs([client.get_experiment_by_name("latentsweep").experiment_id],
                                f"tags.optuna_trial = '{number}'")
    return run, sorted(m.step for m in client.get_metric_history(run.info.run_id, "val_loss"))


def _second_trial_mid_run(db) -> bool:
    """Trial 0 ended and trial 1 is RUNNING with at least 3 epochs reported."""
    trials = running_trials(db) or []
    return (len(trials) == 2 and trials[0].state in (TrialState.COMPLETE, TrialState.PRUNED)
            and trials[1].state == TrialState.RUNNING and len(trials[1].intermediate_values) >= 3)


def test_kill_9_sweep_mid_trial_and_the_same_command_continues_the_trial_from_its_checkpoint(tmp_path):
    db = tmp_path / "sweeps" / "optuna.db"
    interval = 1  # heartbeat every second; grace period 2 x interval
    uri = empty_store(tmp_path / "mlruns")
    # no early stopping and enough epochs (~25 ms each here) that trial 1 runs for seconds: with
    # patience 5 and 30 epochs it sometimes ended in under a second, between two polls, and the
    # sweep finished before it could be killed
    epochs = 60  # the rerun trains the killed trial's remaining epochs, and a third trial
    command = [*SPACE, f"trainer.max_epochs={epochs}", "trainer.patience=null", "hydra.sweeper.pruner.name=none",
               "hydra.sweeper.n_trials=3", f"hydra.sweeper.heartbeat_interval={interval}", f"tracking.uri={uri}"]

    def study():
        return optuna.load_study(study_name="rnn_ae-synthetic", storage=f"sqlite:///{db}")

    proc = _popen(tmp_path, *command, sweep=True)
    try:
        wait_for(lambda: proc.poll() is not None or _second_trial_mid_run(db), 150, "trial 1 to be mid-run",
                 interval=0.2)
    finally:
        proc.kill()
        out, err = proc.communicate()
    killed = time.time()
    assert proc.returncode == -signal.SIGKILL, (
        [(t.number, t.state.name, len(t.intermediate_values), t.user_attrs.get("fail_reason")) for t in study().trials],
        out[-3000:], err[-2000:])
    before = study().trials
    assert [t.state for t in before][1] == TrialState.RUNNING
    first = before[0]

    # The sweeper takes over stale trials when it starts: a trial is stale once its last heartbeat
    # is older than the grace period (2 x interval), and SQLite stores heartbeats to the second. A
    # rerun inside the grace period leaves the killed trial RUNNING, so wait it out.
    time.sleep(max(0.0, killed + 2 * interval + 1.5 - time.time()))
    rc, out, err = _finish(_popen(tmp_path, *command, sweep=True))  # the same command again
    assert rc == 0, err[-3000:]
    after = study().trials
    assert [t.number for t in after] == [0, 1, 2]  # total reaches n_trials, no more: counted once
    assert after[0].state == first.state and after[0].params == first.params and after[0].value == first.value
    # the killed trial continued from its checkpoint: same trial, same params, the first attempt's
    # intermediate values kept for the pruner, then every later epoch
    assert after[1].state == TrialState.COMPLETE and after[1].user_attrs["continued"] == 1
    assert after[1].params == before[1].params
    assert sorted(after[1].intermediate_values) == list(range(epochs))
    assert all(after[1].intermediate_values[e] == v for e, v in before[1].intermediate_values.items())
    assert after[2].state in (TrialState.COMPLETE, TrialState.PRUNED)
    assert not [t for t in after if t.state == TrialState.RUNNING]
    run, steps = _trial_run(uri, 1)  # one MLflow run, continued: each epoch once
    assert run.info.status == "FINISHED" and steps == list(range(epochs))
    resumed_from = int(run.data.tags["resumed_from_epoch"])
    assert resumed_from >= 1
    # a restart from scratch would train the killed attempt's epochs again; at most the epoch in
    # progress when it was killed (logged, not yet checkpointed) is trained twice here
    assert _epochs_trained(tmp_path) <= 3 * epochs + 1 < 3 * epochs + resumed_from + 1


def test_a_worker_process_that_dies_continues_its_trial_from_its_checkpoint(tmp_path):
    """kill -9 of a joblib worker (what the kernel does to a process out of memory)."""
    db = tmp_path / "sweeps" / "optuna.db"
    epochs = 25
    uri = empty_store(tmp_path / "mlruns")
    command = [*SPACE, f"trainer.max_epochs={epochs}", "trainer.patience=null", "hydra.sweeper.pruner.name=none",
               "hydra.sweeper.n_trials=3", "hydra/launcher=joblib", "hydra.launcher.n_jobs=1", f"tracking.uri={uri}"]

    def first_trial_running() -> bool:
        trials = running_trials(db)
        return bool(trials) and len(trials[0].intermediate_values) >= 3

    proc = _popen(tmp_path, *command, sweep=True)
    try:
        wait_for(lambda: proc.poll() is not None or first_trial_running(), 150,
                 "trial 0 to be mid-run", interval=0.2)
        workers = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "popen_loky"], capture_output=True,
                                 text=True).stdout.split()
        assert workers, "no loky worker found under the sweeper"
        for pid in workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        rc, out, err = _finish(proc)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert rc == 0, err[-3000:]
    trials = optuna.load_study(study_name="rnn_ae-synthetic", storage=f"sqlite:///{db}").trials
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3  # n_trials, the killed one counted once
    assert trials[0].user_attrs["continued"] == 1 and sorted(trials[0].intermediate_values) == list(range(epochs))
    run, steps = _trial_run(uri, 0)  # the killed trial's params finished in its continued MLflow run
    assert run.info.status == "FINISHED" and steps == list(range(epochs))
    resumed_from = int(run.data.tags["resumed_from_epoch"])
    assert resumed_from >= 1
    assert _epochs_trained(tmp_path) <= 3 * epochs + 1 < 3 * epochs + resumed_from + 1


# --- (c) three workers on one study ------------------------------------------------------------------

def _three_workers(cwd: Path, storage: str, n_trials: int = 6) -> optuna.Study:
    args = [*SPACE, "trainer.max_epochs=1", "tracking.enabled=false", f"hydra.sweeper.storage={storage}",
            f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.study_name=workers"]
    procs = [_popen(cwd, *args, f"hydra.sweep.dir={cwd / f'w{i}'}", sweep=True) for i in range(3)]
    outputs = [_finish(p) for p in procs]
    for rc, out, err in outputs:
        assert rc == 0, err[-3000:]
        assert "database is locked" not in out + err
    return optuna.load_study(study_name="workers", storage=storage)


def _assert_exact_unique(study: optuna.Study, n_trials: int = 6) -> None:
    trials = study.trials
    assert len({t.number for t in trials}) == len({t._trial_id for t in trials}) == len(trials), "numbers unique"
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), \
        [(t.number, t.state, t.user_attrs.get("fail_reason")) for t in trials]
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)  # no parameter set twice
    assert sorted(t.number for t in trials) == list(range(n_trials)), "the count is exact"


def test_three_workers_on_one_sqlite_study(tmp_path):
    _assert_exact_unique(_three_workers(tmp_path, f"sqlite:///{tmp_path / 'shared' / 'optuna.db'}"))


def test_three_workers_on_one_postgresql_study(tmp_path):
    reason = pg_available()
    if reason:
        pytest.skip(reason)
    with postgres_server() as url:
        # a fresh database: the three workers also race to create Optuna's tables, which the
        # sweeper serialises with a PostgreSQL advisory lock (sweeps/storage.py ask_lock)
        _assert_exact_unique(_three_workers(tmp_path, url))


# --- (d) the MLflow server dies mid-run ---------------------------------------------------------------


def test_mlflow_server_down_mid_run_keeps_the_checkpoint_and_resume_completes(tmp_path):
    """What happens: the next metric write fails after Tracker._retry's 5 tries; the run stops with
    exit 1 and ONE line (TrackingError: the checkpoint is intact; resume with trainer.resume=true);
    the checkpoint written before that epoch's metrics is complete; resuming against a server over
    the same store continues the same MLflow run to FINISHED."""
    epochs = 40
    store = tmp_path / "server"
    empty_store(store)  # migrated already: the server starts in seconds
    # the server the run starts with, and its replacement (same backend store, its own port)
    with mlflow_servers(store, 2) as [(url, server), (restarted, _)]:
        common = [*RUN, f"trainer.max_epochs={epochs}"]
        # one HTTP attempt per call, so the test waits ~3 s, not the ~20 s a user gets by default
        env = cli_env(MLFLOW_HTTP_REQUEST_MAX_RETRIES="0")
        proc = _popen(tmp_path, *common, f"tracking.uri={url}", f"hydra.run.dir={tmp_path / 'runA'}", env=env)
        ckpt = tmp_path / "runA" / "checkpoint"
        wait_for(lambda: _latest(ckpt) is not None or proc.poll() is not None, 120, "the first checkpoint")
        stop_group(server)  # the server dies (SIGKILL, workers included)
        rc, _, err = _finish(proc)
        errors = [line for line in err.splitlines() if line.startswith("error: ")]
        assert rc == 1 and "Traceback" not in err, err[-3000:]
        assert len(errors) == 1 and "the checkpoint is intact; resume with trainer.resume=true" in errors[0], errors
        stopped_at = _latest(ckpt)
        assert stopped_at is not None and stopped_at < epochs - 1
        assert set(load_file(str(ckpt / SLOT_FILES[stopped_at % 2]))) >= {"rng.torch"}  # complete, readable
        assert model_weights(ckpt)

        rc, out, err = _finish(_popen(tmp_path, *common, f"tracking.uri={restarted}",
                                      f"hydra.run.dir={tmp_path / 'runB'}", "trainer.resume=true",
                                      f"trainer.resume_from={tmp_path / 'runA'}"))
        assert rc == 0, err[-3000:]
        assert f"resumed from epoch {stopped_at}" in out + err
        client = MlflowClient(restarted)
        runs = client.search_runs([client.get_experiment_by_name("latentsweep").experiment_id])
        assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # the same run, continued
        assert {"model/weights.safetensors", "model/config.yaml"} <= {
            a.path for a in client.list_artifacts(runs[0].info.run_id, "model")}
        assert epochs - 1 in {m.step for m in client.get_metric_history(runs[0].info.run_id, "val_loss")}
    assert _latest(ckpt) == epochs - 1
