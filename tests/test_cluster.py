"""Beyond one machine (issue 28): submitit jobs, a journal-file study, Optuna's gRPC proxy.

Real parts only: `python train.py -m` under `hydra/launcher=submitit_local` (the SLURM launcher's
code with local processes), a real journal file, a real gRPC proxy (`sweeps.grpc_proxy`) in front
of the throwaway PostgreSQL of tests/pg.py, and three sweep commands as separate processes.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from optuna.trial import TrialState

from latentsweep.errors import ConfigError
from latentsweep.sweeps import token_lock
from latentsweep.sweeps.remote_storage import open_remote
from latentsweep.sweeps.storage import ask_lock, make_storage, normalize_url
from tests.hardening_kit import cli_env, empty_store, running_trials, train_cmd, wait_for
from tests.pg import free_port, pg_available, postgres_server

SPACE = ["model.cell=choice(gru,lstm)", "optimizer.lr=tag(log, interval(1e-3, 3e-2))"]


def _popen(cwd: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(train_cmd(*args, sweep=True), cwd=cwd, env=cli_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):  # submitit's job processes too
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, out, err


# --- URLs, heartbeats and the token lock, in process -------------------------------------------------

def test_remote_urls_are_checked_at_start_up_with_one_line_naming_the_fix(tmp_path):
    with pytest.raises(ConfigError, match="absolute path .* journal:///shared"):
        normalize_url("journal://sweeps/study.log")
    with pytest.raises(ConfigError, match="grpc://<proxy host>:<port>"):
        normalize_url("grpc://db-host")
    path = tmp_path / "new" / "study.log"
    assert normalize_url(f"journal://{path}") == f"journal://{path}" and path.parent.is_dir()
    with pytest.raises(ConfigError, match=f"no Optuna gRPC proxy answers at 127.0.0.1:{(port := free_port())}"):
        import latentsweep.sweeps.remote_storage as remote

        remote.GRPC_CONNECT_TIMEOUT_S, old = 0.5, remote.GRPC_CONNECT_TIMEOUT_S
        try:
            open_remote(f"grpc://127.0.0.1:{port}")
        finally:
            remote.GRPC_CONNECT_TIMEOUT_S = old


def test_journal_heartbeats_mark_a_silent_running_trial_stale(tmp_path):
    storage = make_storage(f"journal://{tmp_path / 'study.log'}", heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(storage=storage)
    beating, silent = study.ask(), study.ask()
    time.sleep(1.2)
    storage.record_heartbeat(beating._trial_id)
    assert storage._get_stale_trial_ids(study._study_id) == [silent._trial_id]
    study.tell(silent, state=TrialState.FAIL)
    assert storage._get_stale_trial_ids(study._study_id) == []


def test_the_token_lock_lets_one_sweeper_in_at_a_time_and_outlives_a_dead_holder(tmp_path, monkeypatch):
    url = f"journal://{tmp_path / 'study.log'}"
    inside, most, entries = [0], [0], []

    def worker() -> None:
        storage = open_remote(url)  # its own journal client, as another process has
        for _ in range(5):
            with token_lock.token_lock(storage):
                inside[0] += 1
                most[0] = max(most[0], inside[0])
                time.sleep(0.002)
                entries.append(1)
                inside[0] -= 1

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(entries) == 20 and most[0] == 1
    # a sweeper killed while holding the lock: its token is broken once the lease is over
    storage = open_remote(url)
    study_id = token_lock._lock_study(storage)
    assert token_lock._try_take(storage, study_id) is not None  # taken, never released
    monkeypatch.setattr(token_lock, "LEASE_S", 0.2)
    started = time.monotonic()
    with ask_lock(url):
        assert time.monotonic() - started >= 0.2


# --- three sweep commands on one study -----------------------------------------------------------------

def _three_workers(cwd: Path, storage: str, n_trials: int = 6) -> None:
    args = [*SPACE, "trainer.max_epochs=1", "tracking.enabled=false", f"hydra.sweeper.storage={storage}",
            f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.study_name=workers"]
    procs = [_popen(cwd, *args, f"hydra.sweep.dir={cwd / f'w{i}'}") for i in range(3)]
    for rc, _, err in [_finish(p) for p in procs]:
        assert rc == 0, err[-3000:]
    study = optuna.load_study(study_name="workers", storage=make_storage(storage))
    trials = study.trials
    assert sorted(t.number for t in trials) == list(range(n_trials)), "exactly n_trials"
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials), "none left RUNNING"
    assert len({tuple(sorted(t.params.items())) for t in trials}) == n_trials, "each parameter set once"


@pytest.mark.slow
def test_three_sweep_commands_share_one_journal_file_study(tmp_path):
    _three_workers(tmp_path, f"journal://{tmp_path / 'shared' / 'study.log'}")


@contextlib.contextmanager
def grpc_proxy(storage_url: str):
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "latentsweep.sweeps.grpc_proxy", "--storage", storage_url,
                             "--host", "127.0.0.1", "--port", str(port)], env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        yield f"grpc://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.communicate()


@pytest.mark.slow
def test_three_sweep_commands_share_one_study_through_the_grpc_proxy(tmp_path):
    reason = pg_available()
    if reason:
        pytest.skip(reason)
    with postgres_server() as url, grpc_proxy(url) as proxy:
        _three_workers(tmp_path, proxy)


# --- submitit ----------------------------------------------------------------------------------------

SUBMITIT = ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=10", "hydra.sweeper.pruner.name=none"]


@pytest.mark.slow
def test_a_submitit_sweep_runs_every_trial_as_a_nested_run_and_registers_the_best(tmp_path):
    uri = empty_store(tmp_path / "mlruns")
    rc, out, err = _finish(_popen(tmp_path, *SUBMITIT, *SPACE, "trainer.max_epochs=1", "hydra.sweeper.n_jobs=4",
                                  "hydra.sweeper.n_trials=4", "hydra.sweeper.register_best=true",
                                  f"tracking.uri={uri}"))
    assert rc == 0, err[-3000:]
    study = optuna.load_study(study_name="rnn_ae-synthetic", storage=f"sqlite:///{tmp_path / 'sweeps' / 'optuna.db'}")
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 4
    assert len(list((tmp_path / "sweeps").rglob(".submitit"))) == 1  # they ran as submitit jobs
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("latentsweep")
    (parent,) = client.search_runs([exp.experiment_id], "tags.sweep_parent = 'true'")
    assert parent.info.status == "FINISHED"
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(int(r.data.tags["optuna_trial"]) for r in children) == [0, 1, 2, 3]
    best = client.get_model_version_by_alias("latentsweep-rnn_ae", "best")
    best_child = next(r for r in children if r.info.run_id == best.run_id)
    assert int(best_child.data.tags["optuna_trial"]) == study.best_trial.number


def _job_processes(folder: Path) -> list[int]:
    """PIDs of the submitit job processes whose job folder is under `folder`."""
    found = subprocess.run(["pgrep", "-f", f"submitit.core._submit .*{folder}"], capture_output=True, text=True)
    return [int(pid) for pid in found.stdout.split()]


@pytest.mark.slow
def test_a_killed_submitit_job_continues_its_trial_from_its_checkpoint(tmp_path):
    epochs = 40
    db = tmp_path / "sweeps" / "optuna.db"
    proc = _popen(tmp_path, *SUBMITIT, "model.cell=choice(gru,lstm)", f"trainer.max_epochs={epochs}",
                  "trainer.patience=null", "hydra.sweeper.n_trials=1", "tracking.enabled=false",
                  "trainer.checkpoint_every_s=0")  # every epoch checkpointed: the kill lands after the first

    def first_epoch_reported() -> bool:
        return any(t.intermediate_values for t in running_trials(db) or [])

    try:
        wait_for(lambda: proc.poll() is not None or first_epoch_reported(), 150, "trial 0's first epoch",
                 interval=0.2)
        victims = _job_processes(tmp_path)
        assert victims, "no submitit job process found"
        for pid in victims:
            os.kill(pid, signal.SIGKILL)
    finally:
        rc, out, err = _finish(proc)
    assert rc == 0, err[-3000:]
    (trial,) = optuna.load_study(study_name="rnn_ae-synthetic", storage=f"sqlite:///{db}").trials
    assert trial.state == TrialState.COMPLETE and trial.user_attrs["continued"] == 1
    assert sorted(trial.intermediate_values) == list(range(epochs))
    assert "continuing trial 0 (attempt 2) from epoch" in out + err


def test_the_docs_latency_table_is_the_committed_benchmarks():
    import json

    from benchmarks.bench_storage import docs_table

    root = Path(__file__).resolve().parents[1]
    results = json.loads((root / "benchmarks" / "results" / "cluster" / "storage.json").read_text())
    assert docs_table(results) in (root / "docs" / "cluster.md").read_text(), \
        "docs/cluster.md's table differs from benchmarks/results/cluster/storage.json: paste docs_table's"
