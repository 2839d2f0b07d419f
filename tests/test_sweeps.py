"""Optuna sweeps end to end: real `python train.py -m hydra/sweeper=optuna` runs in tmp folders.

SQLite Optuna storage (the default relative `sqlite:///sweeps/optuna.db`), a tmp MLflow store,
tiny data and 1–3 epochs. The main study is built once (module fixture) by three invocations:
3 trials, the same command again (nothing to do), then n_trials raised with a useless learning
rate so the new trials are pruned.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from hydra.core.utils import JobReturn, JobStatus
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from optuna.trial import TrialState

from latentsweep.data import collate, prepare_inputs
from latentsweep.errors import InfeasibleError
from latentsweep.pipeline import load_data, make_loaders
from latentsweep.sweeps.outcomes import classify
from latentsweep.sweeps.spaces import merge_overrides
from latentsweep.tracking import load_registered_model
from tests.hardening_kit import empty_store

ROOT = Path(__file__).resolve().parents[1]
STUDY = "rnn_ae-synthetic"
TINY = ["~search",  # the tests give their own (small) spaces on the command line
        "model=rnn_ae",        "data.n_series=40", "data.shortest=10", "data.longest=20", "data.batch_size=16",
        "model.hidden_size=16", "model.latent_dim=4", "trainer.progress=false", "trainer.num_threads=1",
        "tracking.n_reconstructions=0", "hydra.sweeper.pruner.name=median", "hydra.sweeper.pruner.n_startup_trials=1",
        "hydra.sweeper.pruner.n_warmup_steps=0"]


def run_sweep(cwd: Path, *args: str, check: bool = True, wait: bool = True):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(MPLBACKEND="Agg", GIT_PYTHON_REFRESH="quiet", PYTHONWARNINGS="ignore")
    if not (cwd / "mlruns" / "mlflow.db").exists():
        empty_store(cwd / "mlruns")  # migrated once per session, not once per sweep
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "hydra/sweeper=optuna", *TINY,
           f"tracking.uri=sqlite:///{cwd / 'mlruns' / 'mlflow.db'}", *args]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return proc
    out, err = proc.communicate(timeout=300)
    if check:
        assert proc.returncode == 0, f"sweep failed:\n{out[-2000:]}\n{err[-4000:]}"
    return proc.returncode, out, err


def load(cwd: Path, name: str = STUDY) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd / 'sweeps' / 'optuna.db'}")


@pytest.fixture(scope="module")
def main_study(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("sweep")
    space = ["'optimizer.lr=tag(log, interval(5e-3, 3e-2))'", "'model.cell=choice(gru,lstm)'",
             "trainer.max_epochs=3"]
    space = [s.strip("'") for s in space]
    first = run_sweep(cwd, *space, "hydra.sweeper.n_trials=3")
    after_first = [(t.number, t.state, dict(t.params)) for t in load(cwd).trials]
    again = run_sweep(cwd, *space, "hydra.sweeper.n_trials=3")
    after_again = len(load(cwd).trials)
    # Raise the target with an absurdly small learning rate: those trials stay at their initial
    # loss, worse than the median of the finished trials after one epoch -> pruned.
    run_sweep(cwd, *space, "hydra.sweeper.n_trials=5", "optimizer.lr=1e-7")
    return {"cwd": cwd, "first": first, "after_first": after_first, "again": again,
            "after_again": after_again, "study": load(cwd),
            "client": MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")}


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_sweep_runs_the_requested_trials_and_reports(main_study):
    first = main_study["after_first"]
    assert [n for n, _, _ in first] == [0, 1, 2]
    assert all(state in (TrialState.COMPLETE, TrialState.PRUNED) for _, state, _ in first)
    assert TrialState.COMPLETE in [state for _, state, _ in first]
    params = [tuple(sorted(p.items())) for _, _, p in first]
    assert len(set(params)) == 3, "every trial gets its own parameter set"
    assert {"optimizer.lr", "model.cell"} <= set(first[0][2])
    out = main_study["first"][1]
    assert "best value:" in out and "best params:" in out and "sweeps/optuna.db" in out
    assert "registered model: models:/latentsweep-rnn_ae@best" in out
    assert (Path(main_study["cwd"]) / "sweeps" / "optuna.db").exists()  # the relative default


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_same_command_again_adds_nothing_and_raising_n_trials_continues(main_study):
    assert main_study["after_again"] == 3
    trials = main_study["study"].trials
    assert [t.number for t in trials] == [0, 1, 2, 3, 4]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_hopeless_trials_are_pruned_early(main_study):
    new = main_study["study"].trials[3:]
    pruned = [t for t in new if t.state == TrialState.PRUNED]
    assert pruned, [(t.number, t.state, t.intermediate_values) for t in new]
    for t in pruned:
        assert len(t.intermediate_values) < 3  # stopped before max_epochs
        assert t.value is not None  # the last reported val_loss
        run = main_study["client"].get_run(t.user_attrs["mlflow_run_id"])
        assert run.data.tags.get("pruned") == "true" and run.info.status == "KILLED"


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_mlflow_parent_run_per_study_with_nested_trials(main_study):
    client, study = main_study["client"], main_study["study"]
    exp = client.get_experiment_by_name("latentsweep")
    parents = client.search_runs([exp.experiment_id], "tags.sweep_parent = 'true'")
    assert len(parents) == 1, "reruns reuse the study's parent run"
    parent = parents[0]
    assert parent.data.tags["optuna_study"] == STUDY and parent.info.status == "FINISHED"
    assert study.user_attrs["mlflow_parent_run_id"] == parent.info.run_id
    assert parent.data.metrics["best_value"] == pytest.approx(study.best_value)
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parent.info.run_id}'")
    assert sorted(int(r.data.tags["optuna_trial"]) for r in children) == [0, 1, 2, 3, 4]
    for t in study.trials:
        assert t.user_attrs["mlflow_run_id"] in {r.info.run_id for r in children}
    figures = {f.path for f in client.list_artifacts(parent.info.run_id, "figures")}
    assert {"figures/optimization_history.png", "figures/intermediate_values.png"} <= figures


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_only_trials_that_beat_the_finished_ones_draw_figures(tmp_path):
    """tracking.figures=improving (the default): a trial's loss curve is drawn when its value beats
    every trial that finished before it, so the best trial always has one and a worse one has none."""
    fixed = ["trainer.max_epochs=2", "hydra.sweeper.pruner.name=none", "model.dropout=choice(0.0)"]
    run_sweep(tmp_path, *fixed, "optimizer.lr=1e-2", "hydra.sweeper.n_trials=1")
    run_sweep(tmp_path, *fixed, "optimizer.lr=1e-7", "hydra.sweeper.n_trials=3")  # a useless rate: worse trials
    study = load(tmp_path)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    done = sorted((t for t in study.trials if t.state == TrialState.COMPLETE), key=lambda t: t.datetime_complete)
    drawn = {}
    for i, t in enumerate(done):
        paths = {f.path for f in client.list_artifacts(t.user_attrs["mlflow_run_id"], "figures")}
        drawn[t.number] = "figures/loss_curve.png" in paths
        assert drawn[t.number] == all(t.value < earlier.value for earlier in done[:i]), (t.number, drawn)
    assert drawn[study.best_trial.number] and not all(drawn.values()), drawn


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_registered_best_model_loads_and_reproduces_its_validation_loss(main_study, monkeypatch):
    client, study = main_study["client"], main_study["study"]
    uri = f"sqlite:///{main_study['cwd'] / 'mlruns' / 'mlflow.db'}"
    version = client.get_model_version_by_alias("latentsweep-rnn_ae", "best")
    assert version.run_id == study.best_trial.user_attrs["mlflow_run_id"]
    model, config = load_registered_model("latentsweep-rnn_ae", tracking_uri=uri)
    data_cfg = OmegaConf.create(config["data"])
    data = load_data(data_cfg, config["seed"])
    _, val_loader = make_loaders(data, data_cfg, config["seed"], torch.device("cpu"))
    total = weight = 0.0
    with torch.no_grad():
        for batch in val_loader:
            loss = model.loss(batch, model(batch))["loss"]
            total += float(loss) * float(batch.lengths.sum())
            weight += float(batch.lengths.sum())
    assert total / weight == pytest.approx(study.best_value, rel=1e-4)
    # the pyfunc flavour the sweep registered (models-from-code, no pickle) gives the latents the
    # torch model gives for the same input, prepared the same way (tests/test_preprocess.py checks
    # raw input against training); set_registry_uri is process-wide, so monkeypatch undoes it
    import mlflow
    from mlflow.tracking import _model_registry

    monkeypatch.setattr(_model_registry.utils, "_registry_uri", uri)
    pyfunc = mlflow.pyfunc.load_model("models:/latentsweep-rnn_ae@best")
    series = [data.val[0].numpy(), data.val[1].numpy()]
    latents = pyfunc.predict(series)
    with torch.no_grad():
        expected = model.get_latent(collate(prepare_inputs(config, series), [0, 1])).numpy()
    np.testing.assert_allclose(latents, expected, atol=1e-5)


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_diverging_trials_fail_and_the_sweep_goes_on_until_the_failure_rate(tmp_path):
    # normalize=none + huge noise: the squared error overflows float32 -> DivergedError in epoch 0
    bad = ["data.normalize=none", "data.noise=1e20", "model.cell=choice(gru,lstm)", "trainer.max_epochs=1",
           "tracking.enabled=false", "hydra.sweeper.study_name=nan"]
    run_sweep(tmp_path, *bad, "hydra.sweeper.n_trials=2")  # exits 0: too few trials to judge the rate
    trials = load(tmp_path, "nan").trials
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.FAIL]
    assert all("DivergedError" in t.user_attrs["fail_reason"] for t in trials)
    rc, out, err = run_sweep(tmp_path, *bad, "hydra.sweeper.n_trials=8",
                             "hydra.sweeper.min_trials_for_failure_rate=2", check=False)
    assert rc != 0 and "trials failed" in err + out
    assert len(load(tmp_path, "nan").trials) == 4  # stopped once the rate was judged, not at 8


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_two_workers_share_one_study(tmp_path):
    common = ["'optimizer.lr=tag(log, interval(1e-3, 3e-2))'".strip("'"), "model.cell=choice(gru,lstm)",
              "trainer.max_epochs=1", "hydra.sweeper.n_trials=4"]
    procs = [run_sweep(tmp_path, *common, "hydra/launcher=joblib", "hydra.sweeper.n_jobs=2",
                       "hydra.launcher.n_jobs=2", wait=False),
             run_sweep(tmp_path, *common, wait=False)]
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-3000:]
    trials = load(tmp_path).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]
    assert all(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in trials)
    assert len({tuple(sorted(t.params.items())) for t in trials}) == 4
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}")
    exp = client.get_experiment_by_name("latentsweep")
    parents = client.search_runs([exp.experiment_id], "tags.sweep_parent = 'true'")
    assert len(parents) == 1
    assert parents[0].info.status == "FINISHED"  # ended by the last worker to finish
    assert parents[0].data.metrics["n_running"] == 0
    children = client.search_runs([exp.experiment_id], f"tags.mlflow.parentRunId = '{parents[0].info.run_id}'")
    assert sorted(int(r.data.tags["optuna_trial"]) for r in children) == [0, 1, 2, 3]


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_a_killed_sweeps_trial_continues_when_stale_and_the_rerun_finishes_the_study(tmp_path):
    common = ["model.cell=choice(gru,lstm)", "tracking.enabled=false", "hydra.sweeper.heartbeat_interval=1",
              "trainer.checkpoint_every_s=0"]  # every epoch checkpointed: the kill lands after the first
    proc = run_sweep(tmp_path, *common, "hydra.sweeper.n_trials=2", "trainer.max_epochs=500", "trainer.patience=null",
                     wait=False)  # no early stopping: the trial must still be running when killed
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # wait until the trial has reported an epoch, then kill -9
            time.sleep(1)
            if proc.poll() is not None:
                pytest.fail(f"the sweep ended before it was killed:\n{proc.communicate()[1][-3000:]}")
            try:
                if any(t.intermediate_values for t in load(tmp_path).trials):
                    break
            except Exception:  # the study (or its tables) is not created yet
                continue
        else:
            pytest.fail("the first trial never reported an epoch")
    finally:
        proc.kill()
        proc.communicate()
    assert [t.state for t in load(tmp_path).trials] == [TrialState.RUNNING]
    time.sleep(2.5)  # past the grace period (2 x heartbeat_interval)
    run_sweep(tmp_path, *common, "hydra.sweeper.n_trials=2", "trainer.max_epochs=1")
    trials = load(tmp_path).trials
    # the killed one, no longer RUNNING: continued from its checkpoint (already past the rerun's
    # one epoch, so it completes at once), counted once towards n_trials
    assert trials[0].state == TrialState.COMPLETE and trials[0].user_attrs["continued"] == 1
    assert [t.number for t in trials] == [0, 1] and trials[1].state == TrialState.COMPLETE


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_several_objectives_give_a_pareto_front(tmp_path):
    rc, out, _ = run_sweep(tmp_path, "objective=[val_loss,latent_dim]", "model.latent_dim=choice(2,4)",
                           "trainer.max_epochs=1", "tracking.enabled=false", "hydra.sweeper.n_trials=2")
    study = load(tmp_path)
    assert [d.name for d in study.directions] == ["MINIMIZE", "MINIMIZE"]
    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 2
    assert all(len(t.values) == 2 and t.values[1] == t.params["model.latent_dim"] for t in study.trials)
    assert "Pareto front" in out


def test_cli_sweeps_win_over_the_search_file():
    merged = merge_overrides(["model.latent_dim=tag(log, int(interval(2, 64)))", "model.cell=choice(gru,lstm)"],
                             [], ["model.latent_dim=choice(4,8,16)", "trainer.max_epochs=2"])
    assert merged == ["model.cell=choice(gru,lstm)", "model.latent_dim=choice(4,8,16)", "trainer.max_epochs=2"]


def test_job_results_map_to_trial_states():
    def states(ret, n=1):
        out = classify(ret, n)
        return out.state, out.values, out.reason

    assert states(JobReturn(status=JobStatus.COMPLETED, _return_value=0.5)) == (TrialState.COMPLETE, 0.5, None)
    assert states(JobReturn(status=JobStatus.COMPLETED, _return_value=float("nan")))[0] == TrialState.FAIL
    two = JobReturn(status=JobStatus.COMPLETED, _return_value=[0.5, 4.0])
    assert states(two, 2) == (TrialState.COMPLETE, [0.5, 4.0], None) and states(two)[0] == TrialState.FAIL
    pruned = JobReturn(status=JobStatus.FAILED, _return_value=optuna.TrialPruned("epoch 1"))
    assert states(pruned)[0] == TrialState.PRUNED
    state, _, reason = states(JobReturn(status=JobStatus.FAILED, _return_value=ValueError("bad size\nmore")))
    assert state == TrialState.FAIL and reason == "ValueError: bad size"
    # a pruned trial is known by its type: an error that merely mentions TrialPruned is a failure
    state, _, reason = states(JobReturn(status=JobStatus.FAILED, _return_value=RuntimeError("TrialPruned was raised")))
    assert state == TrialState.FAIL and reason.startswith("RuntimeError")
    # sizes the data cannot take: pruned as infeasible, with the reason, not a failure
    too_deep = classify(JobReturn(status=JobStatus.FAILED, _return_value=InfeasibleError("4 blocks of stride 2")))
    assert (too_deep.state, too_deep.cause) == (TrialState.PRUNED, "infeasible")
    assert too_deep.reason == "infeasible: 4 blocks of stride 2"


def test_optuna_sweeper_config_is_ours_and_single_runs_ignore_the_space(make_cfg):
    from tests.conftest import compose_config

    cfg = make_cfg()
    assert cfg.search.custom_search_space.endswith("latent_within_hidden")  # composed, unused by train()
    full = compose_config(["hydra/sweeper=optuna"], return_hydra_config=True)
    sweeper = full.hydra.sweeper
    assert sweeper._target_ == "latentsweep.sweeps.sweeper.LatentSweepOptunaSweeper"
    assert sweeper.sampler._target_ == "optuna.samplers.TPESampler"
    assert sweeper.max_failure_rate == 0.5 and sweeper.pruner.name == "successive_halving"


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_joblib_workers_take_the_next_trial_as_soon_as_they_are_free(tmp_path):
    """`make sweep`'s launcher does not wait for the slowest trial of a batch (sweeps/launching.py):
    a short trial's worker starts the next trial while a long one still runs."""
    run_sweep(tmp_path, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", "hydra.sweeper.n_jobs=2",
              "trainer.max_epochs=choice(1,150)", "trainer.patience=null", "hydra.sweeper.pruner.name=none",
              "hydra.sweeper.n_trials=6", "tracking.enabled=false")
    trials = sorted(load(tmp_path).trials, key=lambda t: t.number)
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert {t.params["trainer.max_epochs"] for t in trials} == {1, 150}  # short and long (seeded);
    # long = seconds, so the overtaking below has a wide margin on a loaded machine
    # in batches of two, a trial of a later pair could only end after both of an earlier pair
    overtaking = [(a.number, c.number) for a in trials for c in trials
                  if a.number // 2 < c.number // 2 and c.datetime_complete < a.datetime_complete]
    assert overtaking, [(t.number, t.params, t.datetime_start, t.datetime_complete) for t in trials]
    # and a trial is asked only when a worker can take it: never more than two asked and not done
    assert max(sum(a.datetime_start <= t.datetime_start < a.datetime_complete for a in trials)
               for t in trials) <= 2


def test_custom_search_space_loads_only_whitelisted_constraints():
    """`custom_search_space` comes from config, so it goes through Hydra's execution whitelist."""
    from latentsweep.errors import ConfigError
    from latentsweep.sweeps.spaces import latent_within_hidden, load_constraint

    loaded = load_constraint("latentsweep.sweeps.spaces.latent_within_hidden")
    assert loaded.func is latent_within_hidden and loaded.func.samples == ("model.latent_dim",)
    for outside in ("builtins.print", "os.system", "tests.conftest.compose_config"):
        with pytest.raises(ConfigError, match=f"custom_search_space='{outside}' is not in the execution whitelist"):
            load_constraint(outside)
    with pytest.raises(ConfigError, match="cannot be loaded"):
        load_constraint("latentsweep.sweeps.spaces.no_such_function")
