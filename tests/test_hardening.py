"""More bad input (issue 7), beyond tests/test_bad_input.py: storage, checkpoints and sweep settings.

Every case checks the exit code or exception, the one-line message (problem — fix), and that what
was already stored (an MLflow store with a finished run, that run's checkpoint, an Optuna study)
is byte-for-byte unchanged afterwards.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import optuna
import pytest

from latentsweep.errors import CheckpointError, TrackingError
from latentsweep.pipeline import train
from latentsweep.training.checkpoint import CHECKPOINT_FILES
from tests.hardening_kit import digest, empty_store, error_line, free_port, read_only, run_cli
from tests.pg import pg_available

# What the stored run was trained with; resume cases start from the same values.
STORED = ["model=rnn_ae", "data.n_series=40", "data.shortest=10", "data.longest=20", "model.hidden_size=8",
          "model.latent_dim=4", "trainer.max_epochs=2", "trainer.progress=false",
          "tracking.n_reconstructions=0"]
STUDY = "rnn_ae-synthetic"  # the default study name of `python train.py -m hydra/sweeper=optuna`


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A folder holding a finished MLflow run, its checkpoint, and an Optuna study with 2 trials."""
    from tests.conftest import compose_config

    folder = tmp_path_factory.mktemp("stored")
    uri = empty_store(folder / "mlruns")
    train(compose_config([f"tracking.uri={uri}", f"trainer.checkpoint_dir={folder / 'run' / 'checkpoint'}", *STORED]))
    (folder / "sweeps").mkdir()
    storage = f"sqlite:///{folder / 'sweeps' / 'optuna.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=STUDY, storage=storage, direction="minimize")
    study.optimize(lambda t: t.suggest_float("optimizer.lr", 1e-3, 1e-1, log=True), n_trials=2)
    return {"folder": folder, "uri": uri, "run": folder / "run", "storage": storage,
            "study_db": folder / "sweeps" / "optuna.db"}


def _check(stored, call, exc_type, pattern):
    """`call()` raises `exc_type` with one line matching `pattern`; the stored folder is unchanged."""
    before = digest(stored["folder"])
    with pytest.raises(exc_type, match=pattern) as err:
        call()
    message = str(err.value)
    assert "\n" not in message and " — " in message, message
    assert digest(stored["folder"]) == before
    return message


# --- storage: the MLflow store ---------------------------------------------------------------------

def test_unwritable_mlflow_store_folder(make_cfg, stored, tmp_path):
    folder = tmp_path / "elsewhere" / "mlruns"  # (tmp_path/mlruns holds make_cfg's own store)
    folder.mkdir(parents=True)
    with read_only(folder):
        cfg = make_cfg([*STORED, f"tracking.uri=sqlite:///{folder / 'mlflow.db'}"], tiny=False)
        _check(stored, lambda: train(cfg), TrackingError, "MLflow store folder .*mlruns is not writable")
    assert not (folder / "mlflow.db").exists()


def test_mlflow_store_folder_under_a_regular_file(make_cfg, stored, tmp_path):
    (tmp_path / "results").write_text("a file where the store's folder should be\n")
    cfg = make_cfg([*STORED, f"tracking.uri=sqlite:///{tmp_path / 'results' / 'mlruns' / 'mlflow.db'}"], tiny=False)
    _check(stored, lambda: train(cfg), TrackingError, "cannot create the MLflow store folder .*Not a directory")


def test_mlflow_store_that_is_not_a_database(make_cfg, stored, tmp_path):
    damaged = tmp_path / "elsewhere" / "mlruns" / "mlflow.db"  # (tmp_path/mlruns holds make_cfg's own store)
    damaged.parent.mkdir(parents=True)
    damaged.write_text("not a database\n" * 200)
    cfg = make_cfg([*STORED, f"tracking.uri=sqlite:///{damaged}"], tiny=False)
    _check(stored, lambda: train(cfg), TrackingError, "cannot open the MLflow store .*file is not a database")
    assert damaged.read_text().startswith("not a database")  # not "repaired" into an empty store


def test_unreachable_tracking_server_fails_fast(make_cfg, stored, monkeypatch):
    for name in ("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)  # tracking.py's defaults apply (and are undone after)
    port = free_port()
    cfg = make_cfg([*STORED, f"tracking.uri=http://127.0.0.1:{port}"], tiny=False)
    start = time.perf_counter()
    _check(stored, lambda: train(cfg), TrackingError,
           f"cannot reach the MLflow tracking server http://127.0.0.1:{port} \\(connection refused\\)")
    assert time.perf_counter() - start < 20, "MLflow's default HTTP retries take minutes"


# --- storage: checkpoints on resume ----------------------------------------------------------------

def test_corrupt_checkpoint_on_resume(make_cfg, stored, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(stored["run"], copy)
    for name in CHECKPOINT_FILES:  # every copy: a disk that filled up mid-write
        weights = copy / "checkpoint" / name
        if weights.exists():
            weights.write_bytes(weights.read_bytes()[:100])
    before = digest(copy)
    cfg = make_cfg([*STORED, f"tracking.uri={stored['uri']}", "trainer.resume=true", f"trainer.resume_from={copy}"],
                   tiny=False)
    _check(stored, lambda: train(cfg), CheckpointError, r"is corrupt or incomplete \(checkpoint-[01].safetensors")
    assert digest(copy) == before  # the damaged checkpoint is left for inspection, not overwritten


def test_checkpoint_from_another_model_configuration(make_cfg, stored):
    cfg = make_cfg([*STORED, "model.hidden_size=16", f"tracking.uri={stored['uri']}", "trainer.resume=true",
                    f"trainer.resume_from={stored['run']}"], tiny=False)
    message = _check(stored, lambda: train(cfg), CheckpointError, "different configuration")
    assert "model.hidden_size: checkpoint 8 vs now 16" in message
    assert "model.latent_dim" not in message  # only the keys that differ


def test_resume_from_a_folder_without_checkpoint(make_cfg, stored, tmp_path):
    (tmp_path / "empty-run").mkdir()
    cfg = make_cfg([*STORED, f"tracking.uri={stored['uri']}", "trainer.resume=true",
                    f"trainer.resume_from={tmp_path / 'empty-run'}"], tiny=False)
    _check(stored, lambda: train(cfg), CheckpointError, "no checkpoint under .*empty-run")


# --- sweeps: sampler and study storage (real `python train.py -m` runs) ------------------------------

def _sweep_fails(stored, cwd, *args, pattern):
    """A sweep start that must fail: exit code 1, the one-line message, nothing stored changed."""
    before = digest(stored["folder"])
    result = run_cli(cwd, f"tracking.uri={stored['uri']}", "hydra.sweeper.n_trials=1", "trainer.max_epochs=1",
                     "model.cell=choice(gru,lstm)", *args, sweep=True, timeout=120)
    assert result.returncode == 1, result.stderr[-3000:]
    line = error_line(result.stderr)
    assert re.search(pattern, result.stderr), result.stderr[-3000:]
    assert digest(stored["folder"]) == before
    return result, line


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_unknown_sampler(stored, tmp_path):
    result, _ = _sweep_fails(stored, tmp_path, "hydra/sweeper/sampler=foo",
                             pattern="Could not find 'hydra/sweeper/sampler/foo'")
    assert "Traceback" not in result.stderr
    assert "\ttpe" in result.stderr  # Hydra lists the samplers there are


def _file_in_the_way(folder: Path) -> Path:
    (folder / "notes").write_text("a file where the study's folder should be\n")
    return folder / "notes"


SWEEP_STORAGE_CASES = {
    "unreachable PostgreSQL": (lambda s, tmp: [f"hydra.sweeper.storage=postgresql://127.0.0.1:{free_port()}/x"],
                               r"Optuna storage postgresql://127\.0\.0\.1:\d+/x"),
    "storage folder under a regular file": (
        lambda s, tmp: [f"hydra.sweeper.storage=sqlite:///{_file_in_the_way(tmp) / 'optuna.db'}"],
        r"cannot create .*notes for the Optuna storage"),
    "unknown pruner": (lambda s, tmp: [f"hydra.sweeper.storage={s['storage']}", "hydra.sweeper.pruner.name=foo"],
                       r"unknown hydra.sweeper.pruner.name='foo'"),
    "custom_search_space outside the execution whitelist": (
        lambda s, tmp: [f"hydra.sweeper.storage={s['storage']}", "hydra.sweeper.custom_search_space=builtins.print"],
        r"custom_search_space='builtins.print' is not in the execution whitelist"),
    "study created for the other direction": (
        lambda s, tmp: [f"hydra.sweeper.storage={s['storage']}", "objective=silhouette"],
        r"was created to \['minimize'\].*use another hydra.sweeper.study_name"),
}


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
@pytest.mark.parametrize("case", sorted(SWEEP_STORAGE_CASES))
def test_bad_sweep_storage_or_setting(case, stored, tmp_path):
    reason = pg_available()
    if case == "unreachable PostgreSQL" and reason and "psycopg" in reason:
        pytest.skip(reason)
    make_args, pattern = SWEEP_STORAGE_CASES[case]
    result, line = _sweep_fails(stored, tmp_path, *make_args(stored, tmp_path), pattern=pattern)
    assert re.search(pattern, line) and " — " in line, line
    assert "Traceback" not in result.stderr, result.stderr[-3000:]  # the sweeper prints `error: ...` too


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_read_only_study_storage(stored, tmp_path):
    with read_only(stored["study_db"]):
        result, line = _sweep_fails(stored, tmp_path, f"hydra.sweeper.storage={stored['storage']}",
                                    pattern=r"readonly database")
    assert len(optuna.load_study(study_name=STUDY, storage=stored["storage"]).trials) == 2
    assert "read-only" in line and " — " in line, line


@pytest.mark.parametrize("method", ["chmod", "chattr +i", "read-only bind mount"])
def test_each_way_of_making_a_path_read_only_holds_and_is_undone(tmp_path, method):
    """The read-only rows above rely on these; as root (CI) chmod alone cannot hold and skips."""
    from tests.hardening_kit import _writable

    folder, file = tmp_path / "folder", tmp_path / "store.db"
    folder.mkdir()
    file.write_bytes(b"x")
    for path in (folder, file):
        with read_only(path, (method,)) as how:
            assert how == method and not _writable(path)
        assert _writable(path)
    assert file.read_bytes() == b"x" and not (folder / ".probe").exists()
