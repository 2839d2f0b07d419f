"""The thread rule (issue 21): runs sharing a machine never take more torch threads than cores."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from latentsweep.parallel import available_cores
from latentsweep.pipeline import train
from latentsweep.threads import RunLease, ThreadPolicy, live_runs, threads_for_run


@pytest.fixture(autouse=True)
def _restore_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.fixture
def lease_dir(tmp_path, monkeypatch):
    folder = tmp_path / "leases"
    monkeypatch.setenv("LATENTSWEEP_LEASE_DIR", str(folder))
    return folder


def test_small_models_are_capped_where_more_threads_buy_nothing():
    assert threads_for_run("HighwayAutoencoder", "cpu", cores=2, runs_on_machine=1) == 1  # slower with 2
    assert threads_for_run("HighwayAutoencoder", "cpu", cores=64, runs_on_machine=1) == 1
    for model in ("RNNAutoencoder", "VRAE"):  # a second thread: 1.00-1.15x; never more than 2
        assert threads_for_run(model, "cpu", cores=2, runs_on_machine=1) == 2
        assert threads_for_run(model, "cpu", cores=2, runs_on_machine=2) == 1  # sharing: their share
        assert threads_for_run(model, "cpu", cores=64, runs_on_machine=1) == 2


def test_models_that_split_get_their_share_of_the_cores():
    for model in ("TransformerAutoencoder", "MLPAutoencoder"):
        assert threads_for_run(model, "cpu", cores=2, runs_on_machine=1) == 2
        assert threads_for_run(model, "cpu", cores=2, runs_on_machine=2) == 1
    assert threads_for_run("ConvAutoencoder", "cpu", cores=2, runs_on_machine=1) == 2
    assert threads_for_run("ConvAutoencoder", "cpu", cores=2, runs_on_machine=2) == 1
    assert threads_for_run("ConvAutoencoder", "cpu", cores=16, runs_on_machine=4) == 4
    assert threads_for_run("ConvAutoencoder", "cpu", cores=2, runs_on_machine=5) == 1  # never 0


def test_a_gpu_run_takes_one_cpu_thread():
    assert threads_for_run("ConvAutoencoder", "cuda", cores=32, runs_on_machine=1) == 1


def test_live_runs_are_counted_and_a_dead_runs_file_is_ignored_and_removed(tmp_path):
    folder = tmp_path / "leases"
    assert live_runs(folder) == 0  # no folder yet
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    folder.mkdir()
    stale = folder / f"{int(dead.stdout)}-deadbeef.run"
    stale.write_text(dead.stdout)
    with RunLease(folder) as first:
        assert first.runs_on_machine() == 1
        assert not stale.exists()
        with RunLease(folder) as second:
            assert live_runs(folder) == 2 and second.runs_on_machine() == 2
        assert first.runs_on_machine() == 1
    assert live_runs(folder) == 0 and list(folder.iterdir()) == []


def test_a_run_gives_its_second_thread_back_when_another_run_starts(tmp_path):
    folder = tmp_path / "leases"
    with RunLease(folder) as lease:
        policy = ThreadPolicy("ConvAutoencoder", "cpu", lease=lease, cores=2)
        assert policy.apply() == 2 and torch.get_num_threads() == 2
        with RunLease(folder):
            policy(0, {})  # after an epoch
            assert policy.threads == 1 and torch.get_num_threads() == 1
        policy(1, {})
        assert torch.get_num_threads() == 2


def test_the_launchers_count_and_trainer_num_threads_win(tmp_path):
    with RunLease(tmp_path) as lease:
        assert ThreadPolicy("ConvAutoencoder", "cpu", launcher_runs=2, lease=lease, cores=2).wanted() == 1
        policy = ThreadPolicy("RNNAutoencoder", "cpu", override=3, lease=lease, cores=2)
        assert policy.apply() == 3 and torch.get_num_threads() == 3


def test_train_applies_the_rule_and_releases_its_lease(make_cfg, lease_dir):
    seen = []
    cfg = make_cfg(["model=conv_ae", "data.n_series=120", "data.fixed_length=16", "model.n_blocks=2",
                    "model.base_channels=4", "trainer.max_epochs=2", "trainer.progress=false",
                    "tracking.enabled=false"], tiny=False)
    assert cfg.trainer.num_threads is None
    lease_dir.mkdir()
    (lease_dir / f"{os.getpid()}-other.run").write_text("a run alive in this process")
    train(cfg, callbacks=[lambda epoch, metrics: seen.append((live_runs(lease_dir), torch.get_num_threads()))])
    assert seen == [(2, max(1, available_cores() // 2))] * 2
    assert live_runs(lease_dir) == 1  # its own lease is gone, the other run's stays
