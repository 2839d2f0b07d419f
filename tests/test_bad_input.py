"""Bad input gives one line naming the problem and the fix, and damages nothing already stored."""

from __future__ import annotations

import hashlib
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from latentsweep.errors import LatentSweepError
from latentsweep.pipeline import train

ROOT = Path(__file__).resolve().parents[1]


def _long_frame(n_series=6, length=20, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for s in range(n_series):
        for t in range(length):
            rows.append({"series_id": f"s{s}", "timestamp": t, "x": rng.normal(), "y": rng.normal(),
                         "label": "a" if s % 2 else "b"})
    return pd.DataFrame(rows)


def _write(frame: pd.DataFrame, name="data.parquet") -> str:
    frame.to_parquet(name)
    return str(Path(name).resolve())


def _missing_file():
    return ["data.path=does/not/exist.parquet"]


def _zero_bytes():
    Path("empty.parquet").write_bytes(b"")
    return ["data.path=empty.parquet"]


def _empty_table():
    return [f"data.path={_write(_long_frame().iloc[0:0])}"]


def _truncated():
    path = _write(_long_frame())
    data = Path(path).read_bytes()
    Path(path).write_bytes(data[: len(data) // 2])
    return [f"data.path={path}"]


def _not_parquet():
    Path("notes.parquet").write_text("series_id,x\n1,2\n")
    return ["data.path=notes.parquet"]


def _missing_column():
    return [f"data.path={_write(_long_frame())}", "data.value_columns=[x,z]"]


def _non_numeric():
    frame = _long_frame()
    frame["x"] = frame["x"].astype(str)
    return [f"data.path={_write(frame)}", "data.value_columns=[x,y]"]


def _nan_values():
    frame = _long_frame()
    frame.loc[5, "x"] = np.nan
    frame.loc[47, "y"] = np.inf
    return [f"data.path={_write(frame)}", "data.value_columns=[x,y]"]


def _duplicate_timestamps():
    frame = _long_frame()
    frame = pd.concat([frame, frame.iloc[[3]]])
    return [f"data.path={_write(frame)}", "data.time_column=timestamp", "data.value_columns=[x,y]"]


def _all_too_short():
    return [f"data.path={_write(_long_frame(length=5))}", "data.min_length=10", "data.value_columns=[x,y]"]


def _single_series():
    return [f"data.path={_write(_long_frame(n_series=1))}", "data.value_columns=[x,y]"]


PARQUET = ["data=parquet", "model=rnn_ae", "data.batch_size=4", "model.hidden_size=8", "trainer.max_epochs=1",
           "trainer.progress=false"]

CASES = {
    "missing parquet file": (_missing_file, "not found.*data.path"),
    "zero-byte file": (_zero_bytes, "empty \\(0 bytes\\)"),
    "parquet without rows": (_empty_table, "no rows"),
    "truncated parquet": (_truncated, "cannot read parquet"),
    "not a parquet file": (_not_parquet, "cannot read parquet"),
    "missing configured column": (_missing_column, "column\\(s\\) \\['z'\\].*data.value_columns"),
    "non-numeric values": (_non_numeric, "not numeric"),
    "NaN and inf values": (_nan_values, "2 NaN/inf values in 2 series.*drop_nonfinite"),
    "duplicate timestamps": (_duplicate_timestamps, "duplicate \\(series_id, timestamp\\)"),
    "all series below min_length": (_all_too_short, "shorter than data.min_length=10"),
    "a single series": (_single_series, "at least 2"),
}

CONFIG_CASES = {
    "negative hidden size": (["model.hidden_size=-3"], "model.hidden_size must be positive"),
    "latent size zero": (["model.latent_dim=0"], "model.latent_dim must be positive"),
    "absurd hidden size": (["model.hidden_size=1000000000"], "absurdly large"),
    "unknown cell": (["model.cell=foo"], "unknown model.cell='foo'"),
    "unknown normalisation": (["data.normalize=robust"], "unknown data.normalize"),
    "validation fraction of 1": (["data.val_fraction=1.0"], "data.val_fraction must be in"),
    "zero learning rate": (["optimizer.lr=0"], "optimizer.lr must be positive"),
    "unknown objective": (["objective=accuracy"], "unknown objective"),
    "unknown figure policy": (["tracking.figures=best"], "unknown tracking.figures='best'"),
}


def _store_digest(folder: Path) -> str:
    h = hashlib.sha256()
    for f in sorted(folder.rglob("*")):
        if f.is_file():
            h.update(f.name.encode() + f.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def existing_store(tmp_path_factory):
    """An MLflow store that already holds a finished run; failed starts must leave it as it was."""
    import os

    from tests.conftest import compose_config

    folder = tmp_path_factory.mktemp("store")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        train(compose_config([f"tracking.uri={uri}", "trainer.checkpoint_dir=null", "data.n_series=40", "model=rnn_ae",
                              "trainer.max_epochs=1", "model.hidden_size=8", "trainer.progress=false"]))
    finally:
        os.chdir(cwd)
    return folder, uri


def _check_one_line_error(make_cfg, overrides, pattern, existing_store):
    folder, uri = existing_store
    before = _store_digest(folder)
    cfg = make_cfg([*overrides, f"tracking.uri={uri}"], tiny=False)
    with pytest.raises(LatentSweepError, match=pattern) as err:
        train(cfg)
    message = str(err.value)
    assert "\n" not in message and " — " in message, message  # one line: the problem — the fix
    assert _store_digest(folder) == before


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_data_gives_one_line(case, make_cfg, existing_store):
    setup, pattern = CASES[case]
    _check_one_line_error(make_cfg, [*PARQUET, *setup()], pattern, existing_store)


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_bad_config_gives_one_line(case, make_cfg, existing_store):
    overrides, pattern = CONFIG_CASES[case]
    folder, uri = existing_store
    before = _store_digest(folder)
    cfg = make_cfg([*overrides, f"tracking.uri={uri}"])
    with pytest.raises(LatentSweepError, match=pattern) as err:
        train(cfg)
    assert "\n" not in str(err.value)
    assert _store_digest(folder) == before


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason="a CUDA device is present: test_cuda_is_used_where_there_is_one checks the opposite")
def test_cuda_without_a_gpu_gives_one_line(make_cfg, existing_store):
    folder, uri = existing_store
    before = _store_digest(folder)
    with pytest.raises(LatentSweepError, match="no CUDA device") as err:
        train(make_cfg(["trainer.device=cuda", f"tracking.uri={uri}"]))
    assert "\n" not in str(err.value) and " — " in str(err.value)
    assert _store_digest(folder) == before


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (the row above runs without one)")
def test_cuda_is_used_where_there_is_one(make_cfg, mlflow_uri):
    """The same override on a GPU box is not an error: the run trains on CUDA."""
    from latentsweep.tracking import client_for

    value = train(make_cfg(["trainer.device=cuda", "trainer.max_epochs=1"]))
    client, _ = client_for(mlflow_uri)
    run = client.search_runs([client.get_experiment_by_name("latentsweep").experiment_id])[0]
    assert run.data.tags["device"].startswith("cuda") and math.isfinite(value)


def test_nonfinite_values_can_be_dropped(make_cfg):
    overrides = _nan_values()
    cfg = make_cfg([*PARQUET, *overrides, "data.drop_nonfinite=true", "data.min_length=4"], tiny=False)
    assert train(cfg) > 0


def _run_cli(*args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "train.py"), *args], cwd=cwd, capture_output=True,
                          text=True, timeout=120)


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_cli_prints_one_line_and_exits_nonzero(tmp_path):
    result = _run_cli("data=parquet", "data.path=missing.parquet", cwd=tmp_path)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "data.path" in errors[0]
    assert not (tmp_path / "mlruns" / "mlflow.db").exists()  # nothing was created for a failed start


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_cli_error_shows_once_on_the_terminal_and_lands_in_the_run_log(tmp_path):
    result = _run_cli("model=rnn_ae", "model.hidden_size=-3", "tracking.enabled=false", cwd=tmp_path)
    message = "model.hidden_size must be positive"
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert (result.stdout + result.stderr).count(message) == 1, result.stdout + result.stderr
    assert f"error: {message}" in result.stderr
    (log_file,) = (tmp_path / "outputs").rglob("train.log")  # Hydra's file handler keeps it too
    assert message in log_file.read_text()


@pytest.mark.parametrize("override, pattern", [
    ("model=foo", "Could not find 'model/foo'"),
    ("optimizer=adamax", "Could not find 'optimizer/adamax'"),
    ("model.hiden_size=3", "hiden_size"),
    ("model.hidden_size=abc", "hidden_size"),
])
@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_cli_rejects_unknown_groups_keys_and_types_at_start(tmp_path, override, pattern):
    result = _run_cli("model=rnn_ae", override, cwd=tmp_path)  # model=foo wins over it
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert pattern in result.stderr
