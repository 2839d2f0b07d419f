"""Family sweeps: `model=choice(rnn_ae,conv_ae,transformer_ae)` in one study, real runs in tmp folders.

One module fixture runs a tiny three-family sweep (SQLite study, tmp MLflow store, 1 epoch), then
the same command with a raised n_trials under `hydra/launcher=trials` (resume, parallel trials).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from latentsweep.analysis.latents import encode_series, native_reconstruction_mse
from latentsweep.analysis.run import analyze
from latentsweep.build import build_model
from latentsweep.data.prepare import prepare
from latentsweep.data.synthetic import make_synthetic
from latentsweep.errors import ConfigError
from latentsweep.sweeps import families, leaderboard
from latentsweep.sweeps.pruners import make_pruner
from tests.hardening_kit import empty_store

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ["rnn_ae", "conv_ae", "transformer_ae"]
STUDY = "families-synthetic"
TINY = ["data.n_series=40", "data.shortest=10", "data.longest=20", "trainer.max_epochs=1",
        "trainer.progress=false", "trainer.num_threads=1", "tracking.n_reconstructions=0"]


def run_sweep(cwd: Path, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(MPLBACKEND="Agg", GIT_PYTHON_REFRESH="quiet", PYTHONWARNINGS="ignore")
    if not (cwd / "mlruns" / "mlflow.db").exists():
        empty_store(cwd / "mlruns")  # migrated once per session, not once per sweep
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "hydra/sweeper=optuna",
           f"model=choice({','.join(FAMILIES)})", *TINY, f"tracking.uri=sqlite:///{cwd / 'mlruns' / 'mlflow.db'}",
           *args]
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"sweep failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def family_study(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("families")
    out = run_sweep(cwd, "hydra.sweeper.n_trials=3")
    first = [(t.number, dict(t.params), t.value) for t in _load(cwd).trials]
    again = run_sweep(cwd, "hydra.sweeper.n_trials=5", "hydra/launcher=trials", "hydra.launcher.n_jobs=2")
    return {"cwd": cwd, "out": out, "again": again, "first": first, "study": _load(cwd),
            "uri": f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}"}


def _load(cwd: Path) -> optuna.Study:
    return optuna.load_study(study_name=STUDY, storage=f"sqlite:///{cwd / 'sweeps' / 'optuna.db'}")


def _best_per_family(study: optuna.Study) -> dict[str, optuna.trial.FrozenTrial]:
    best = {}
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        family = t.params["model"]
        if family not in best or t.value < best[family].value:
            best[family] = t
    return best


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_each_trial_samples_one_family_and_only_its_own_space(family_study):
    trials = family_study["study"].trials
    assert len(trials) == 5
    assert all(t.state == TrialState.COMPLETE for t in trials), [(t.number, t.state, t.user_attrs) for t in trials]
    assert [t.params["model"] for t in trials[:3]] == FAMILIES  # every family tried first, in order
    for t in trials:
        family = t.params["model"]
        own = [k for k in t.params if k != "model"]
        assert own and all(k.startswith(f"{family}/") for k in own), t.params  # family-qualified names
        names = {k.split("/", 1)[1] for k in own}
        assert ("model.cell" in names) == (family == "rnn_ae")  # a conv trial never gets model.cell
        assert ("model.base_channels" in names) == (family == "conv_ae")
        assert ("data.fixed_length_if_variable" in names) == (family == "conv_ae")  # declared in its search file
    # outputs under the study's own folder, not under the primary config's model (rnn_ae-synthetic)
    sweeps = family_study["cwd"] / "sweeps"
    assert (sweeps / STUDY).is_dir() and not (sweeps / "rnn_ae-synthetic").exists()
    assert list((sweeps / STUDY).glob("runs/*/*/.hydra/config.yaml"))  # the trials' own folders too
    # the study is resumable: the second command kept the first three trials and added two
    assert [(t.number, dict(t.params), t.value) for t in trials[:3]] == family_study["first"]


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_conv_trials_ran_on_resampled_series_and_their_config_says_so(family_study):
    client = MlflowClient(family_study["uri"])
    conv = next(t for t in family_study["study"].trials if t.params["model"] == "conv_ae")
    run = client.get_run(conv.user_attrs["mlflow_run_id"])
    assert run.data.params["data.fixed_length_if_variable"] == str(conv.params["conv_ae/data.fixed_length_if_variable"])
    assert run.data.params["objective"] == "recon_mse"  # the comparable objective, in every trial


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_leaderboard_winner_and_registry(family_study):
    study, uri = family_study["study"], family_study["uri"]
    client = MlflowClient(uri)
    best = _best_per_family(study)
    parent = client.get_run(study.user_attrs["mlflow_parent_run_id"])
    winner = min(best.values(), key=lambda t: t.value)
    assert parent.data.tags["winning_family"] == winner.params["model"]
    assert f"winning family: {winner.params['model']}" in family_study["again"]

    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"leaderboard.csv", "leaderboard.md"} <= artifacts
    figures = {a.path: a.file_size for a in client.list_artifacts(parent.info.run_id, "figures")}
    assert figures.get("figures/family_best_so_far.png", 0) > 1000
    path = mlflow.artifacts.download_artifacts(run_id=parent.info.run_id, artifact_path="leaderboard.csv",
                                               tracking_uri=uri)
    board = pd.read_csv(path)
    assert list(board["family"]) == sorted(best, key=lambda f: best[f].value)  # best first
    for _, row in board.iterrows():
        trial = best[row["family"]]
        assert row["trial"] == trial.number and row["objective"] == pytest.approx(trial.value)
        assert row["mlflow_run"] == f"runs:/{trial.user_attrs['mlflow_run_id']}"
        assert row["epochs"] == 1 and row["wall_s"] > 0
        assert json.loads(row["params"]) == {k.split("/", 1)[1]: v for k, v in trial.params.items() if k != "model"}

    for family, trial in best.items():  # each family's best as today, and the overall winner
        version = client.get_model_version_by_alias(f"latentsweep-{family}", "best")
        assert version.run_id == trial.user_attrs["mlflow_run_id"]
    overall = client.get_model_version_by_alias("latentsweep-families", "best")
    assert overall.run_id == winner.user_attrs["mlflow_run_id"]


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_analyze_takes_the_family_winner_by_default(family_study, make_cfg, monkeypatch):
    monkeypatch.chdir(family_study["cwd"])
    result = analyze(make_cfg([f"tracking.uri={family_study['uri']}", "max_points=200"], tiny=False,
                              config_name="analyze"))
    winner = min(_best_per_family(family_study["study"]).values(), key=lambda t: t.value)
    assert result["analyzed_run_id"] == winner.user_attrs["mlflow_run_id"]
    assert "latentsweep-families@best" in result["source"]


# --- the parts, without training -------------------------------------------------------------
def test_family_choices_and_study_name():
    assert families.family_choices(["model=choice(rnn_ae,conv_ae)", "data=digits"]) == ["rnn_ae", "conv_ae"]
    assert families.family_choices(["model=rnn_ae,vrae"]) == ["rnn_ae", "vrae"]
    assert families.family_choices(["model=rnn_ae", "model.latent_dim=choice(4,8)"]) is None
    with pytest.raises(ConfigError, match="takes a list"):
        families.family_choices(["model=glob(*)"])
    choices = {"model": "rnn_ae", "data": "ucr", "task": "reconstruct"}
    assert families.family_study_name("rnn_ae-ucr", choices) == "families-ucr"
    assert families.family_study_name("rnn_ae-ucr-classify", choices) == "families-ucr-classify"
    assert families.family_study_name("my-study", choices) == "my-study"


def _finished(number: int, family: str, curve: list[float], value: float | None = None, state=TrialState.COMPLETE):
    start = datetime(2026, 1, 1) + timedelta(minutes=number)
    trial = create_trial(state=state, value=value if state == TrialState.COMPLETE else None,
                         params={"model": family, f"{family}/optimizer.lr": 0.01},
                         distributions={"model": optuna.distributions.CategoricalDistribution(FAMILIES),
                                        f"{family}/optimizer.lr": FloatDistribution(1e-4, 1.0)},
                         intermediate_values=dict(enumerate(curve)), user_attrs={"mlflow_run_id": f"run{number}"})
    trial.number = number
    trial.datetime_start, trial.datetime_complete = start, start + timedelta(seconds=30)
    return trial


def test_pruning_compares_a_trial_only_with_its_own_family():
    study = optuna.create_study()
    # rnn_ae's finished trials have small losses, vrae's (an ELBO) large ones
    for i in range(3):
        study.add_trial(_finished(i, "rnn_ae", [0.2, 0.1], 0.1))
        study.add_trial(_finished(3 + i, "conv_ae", [5.0, 4.0], 4.0))
    frozen = _finished(9, "conv_ae", [4.5, 3.0], state=TrialState.RUNNING)  # better than conv_ae's median,
    # far worse than rnn_ae's
    settings = {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0}
    assert make_pruner(settings).prune(study, frozen)  # against every trial: pruned
    assert not make_pruner({**settings, "per_family": True}).prune(study, frozen)  # within conv_ae: kept


def test_leaderboard_table_and_figure():
    trials = [_finished(0, "rnn_ae", [0.5], 0.5), _finished(1, "conv_ae", [0.4, 0.3], 0.3),
              _finished(2, "rnn_ae", [0.2], 0.2), _finished(3, "conv_ae", [0.9], state=TrialState.PRUNED),
              _finished(4, "transformer_ae", [], state=TrialState.FAIL)]
    board = leaderboard.leaderboard(trials, FAMILIES, "minimize")
    assert list(board["family"]) == ["rnn_ae", "conv_ae", "transformer_ae"]
    assert list(board["objective"][:2]) == [0.2, 0.3] and pd.isna(board["objective"][2])
    assert list(board["trial"][:2]) == [2, 1] and list(board["epochs"][:2]) == [1, 2]
    assert board.loc[1, ["complete", "pruned", "failed"]].tolist() == [1, 1, 0]
    assert board.loc[2, ["complete", "failed"]].tolist() == [0, 1]
    assert leaderboard.winner(board) == "rnn_ae"
    assert leaderboard.winner(leaderboard.leaderboard(trials, FAMILIES, "maximize")) == "rnn_ae"  # 0.5 > 0.3
    text = leaderboard.markdown(board, "recon_mse", "5 trials")
    rows = [[cell.strip() for cell in line.split("|")[1:-1]] for line in text.splitlines() if line.startswith("| ")]
    assert len(rows) == 4 and rows[1][:4] == ["1", "rnn_ae", "0.2", "2"] and rows[3][2] == "-"
    fig = leaderboard.best_so_far_figure(trials, FAMILIES, "minimize", "recon_mse")
    lines = {line.get_label(): list(line.get_ydata()) for line in fig.axes[0].get_lines()}
    assert lines == {"rnn_ae (2)": [0.5, 0.2], "conv_ae (1)": [0.3]}


def test_recon_mse_scores_every_series_at_its_own_length(make_cfg):
    raw = make_synthetic(n_series=24, shortest=10, longest=30, n_channels=2, seed=0)
    native = prepare(raw, seed=0)
    resampled = prepare(raw, seed=0, fixed_length_if_variable=16)
    assert native.val_native is None and set(resampled.val.lengths.tolist()) == {16}
    assert resampled.val_native.ids == native.val.ids
    assert np.array_equal(resampled.val_native.lengths, native.val.lengths)
    assert resampled.report["normalize_stats"] == native.report["normalize_stats"]  # same normalised space
    assert resampled.val_native.values.allclose(native.val.values)

    model = build_model(make_cfg(["model=rnn_ae", "model.hidden_size=8", "model.latent_dim=2"], tiny=False).model, native.spec).eval()
    expected = encode_series(model, native.val).errors.mean()  # per-series MSE, no resampling
    assert native_reconstruction_mse(model, native.val, native.val_reference) == pytest.approx(expected, rel=1e-5)
    conv = build_model(make_cfg(["model=conv_ae", "model.latent_dim=2"], tiny=False).model, resampled.spec).eval()
    assert np.isfinite(native_reconstruction_mse(conv, resampled.val, resampled.val_reference))


def test_family_pruning_keeps_low_val_loss_when_the_study_maximises():
    """A family sweep selecting on a maximised objective (svm_cv_accuracy) still reports val_loss
    each epoch: the pruner must keep the trial with the lower loss, not the higher one."""
    study = optuna.create_study(direction="maximize")
    for i in range(3):
        study.add_trial(_finished(i, "conv_ae", [1.0, 0.8], 0.9))
    settings = {"name": "median", "n_startup_trials": 2, "n_warmup_steps": 0, "per_family": True}
    better = _finished(5, "conv_ae", [0.5, 0.3], state=TrialState.RUNNING)
    worse = _finished(6, "conv_ae", [2.0, 1.9], state=TrialState.RUNNING)
    assert not make_pruner(settings).prune(study, better)
    assert make_pruner(settings).prune(study, worse)
