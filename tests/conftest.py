"""Shared fixtures: real Hydra composition, a tmp MLflow store, tiny data."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from latentsweep.config import register_configs

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = str(ROOT / "conf")

# Small enough for 2 CPU cores: a few seconds per run.
TINY = [
    "model=rnn_ae",  # the sizes below are rnn_ae's (conv_ae is the default model)
    "data.n_series=160",
    "data.shortest=12",
    "data.longest=60",
    "data.batch_size=16",
    "model.hidden_size=32",
    "model.latent_dim=4",
    "trainer.max_epochs=3",
    "trainer.progress=false",
    "optimizer.lr=0.01",
]

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


def pytest_configure(config):
    """Under pytest-xdist (`make test` runs 2 workers), each worker is a run sharing the machine.

    Why: the test suite keeps the thread rule like any run (latentsweep/threads.py). Each worker
    holds a lease for its whole life, so every training it starts, in-process or in a subprocess,
    counts the other worker and takes its share of the cores; BLAS and torch outside training take
    the same share. Without this, two workers of 2 threads each on 2 cores made single tests up to
    15x slower (test_smoke: 34 s instead of 2 s)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not os.environ.get("PYTEST_XDIST_WORKER") or workers < 2:
        return
    import torch
    from threadpoolctl import threadpool_limits

    from latentsweep.parallel import available_cores
    from latentsweep.threads import RunLease

    share = max(1, available_cores() // workers)
    for name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[name] = str(share)  # subprocesses the tests start
    torch.set_num_threads(share)
    threadpool_limits(share)
    lease = RunLease().__enter__()
    config.add_cleanup(lease.__exit__)


def compose_config(overrides=(), config_name: str = "train", return_hydra_config: bool = False):
    """The config `train.py` (or `analyze.py`) would get for `overrides`, via Hydra's compose API."""
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=CONF_DIR):
            return compose(config_name=config_name, overrides=list(overrides),
                           return_hydra_config=return_hydra_config)
    finally:
        GlobalHydra.instance().clear()


@pytest.fixture(autouse=True)
def _isolated_cwd(tmp_path, monkeypatch):
    """Every test runs in its own folder: outputs/, mlruns/ and sweeps/ never touch the repo."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    yield


@pytest.fixture
def mlflow_uri(tmp_path) -> str:
    """A new, empty MLflow store: a copy of one migrated once per session (migrating a new SQLite
    store takes ~1.6 s in-process, and most tests track). A store made from nothing is still
    tested where that is the point (the CLI tests without tracking.uri)."""
    from tests.hardening_kit import empty_store

    return empty_store(tmp_path / "mlruns")


@pytest.fixture
def make_cfg(tmp_path, mlflow_uri):
    """compose(overrides) -> the config `train.py` would get, with tmp checkpoint and store."""

    def _make(overrides: list[str] | tuple[str, ...] = (), tiny: bool = True, config_name: str = "train"):
        base = [f"tracking.uri={mlflow_uri}", f"trainer.checkpoint_dir={tmp_path / 'run' / 'checkpoint'}"]
        if config_name != "train":
            base = []
        return compose_config(base + (TINY if tiny else []) + list(overrides), config_name)

    return _make
