"""The thread rule (issue 21): runs sharing a machine never take more torch threads than cores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from latentsweep.parallel import available_cores
from latentsweep.pipeline import train
from latentsweep.threads import RunLease, ThreadPolicy, live_runs, threads_for_run

ROOT = Path(__file__).resolve().parents[1]


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


MODEL_CLASSES = ("RNNAutoencoder", "VRAE", "ConvAutoencoder", "MLPAutoencoder", "HighwayAutoencoder",
                 "TransformerAutoencoder", "SomeFutureAutoencoder")


def test_runs_sharing_a_machine_never_hold_more_threads_than_it_has_cores():
    for model in MODEL_CLASSES:
        for cores in (1, 2, 3, 8, 64):
            for runs in range(1, 10):
                threads = threads_for_run(model, "cpu", cores=cores, runs_on_machine=runs)
                assert threads >= 1, (model, cores, runs)
                assert threads * runs <= max(cores, runs), (model, cores, runs, threads)


def test_a_run_alone_takes_every_core_unless_its_family_was_measured_not_to_split():
    """The committed threads benchmarks (bench-quick*/sharing.json) time each family with one thread
    and with two: a family no run found >= 5% faster with the second thread must not get it; one
    that some run found faster must, and a family never measured takes the whole machine."""
    gains: dict[str, list[float]] = {}
    for path in sorted((ROOT / "benchmarks" / "results").glob("bench-quick*/sharing.json")):
        for family in json.loads(path.read_text())["threads"]["families"].values():
            gains.setdefault(family["class"], []).append(family["gain"])
    assert gains, "no committed threads benchmark"
    for model, measured in gains.items():
        expected = 2 if max(measured) >= 1.05 else 1
        assert threads_for_run(model, "cpu", cores=2, runs_on_machine=1) == expected, (model, measured)
    assert threads_for_run("SomeFutureAutoencoder", "cpu", cores=64, runs_on_machine=1) == 64


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


def test_train_takes_one_thread_on_a_machine_full_of_runs_and_releases_its_lease(make_cfg, lease_dir):
    """One other live run per remaining core: whatever the machine, this run's share is one thread."""
    seen = []
    cfg = make_cfg(["model=conv_ae", "data.n_series=120", "data.fixed_length=16", "model.n_blocks=2",
                    "model.base_channels=4", "trainer.max_epochs=2", "trainer.progress=false",
                    "tracking.enabled=false"], tiny=False)
    assert cfg.trainer.num_threads is None
    lease_dir.mkdir()
    others = max(1, available_cores() - 1)
    for k in range(others):
        (lease_dir / f"{os.getpid()}-other{k}.run").write_text("a run alive in this process")
    train(cfg, callbacks=[lambda epoch, metrics: seen.append((live_runs(lease_dir), torch.get_num_threads()))])
    assert seen == [(others + 1, 1)] * 2
    assert live_runs(lease_dir) == others  # its own lease is gone, the other runs' stay
