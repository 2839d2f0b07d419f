"""Private APIs of other packages that the sweeper relies on, each checked by what we use it for.

pyproject.toml pins these packages exactly (or within a tested major version); an upgrade that
moves one of these fails here, loudly, naming it, instead of breaking sweeps at run time.
"""

from __future__ import annotations

import inspect
import re
from importlib.metadata import version
from pathlib import Path

import optuna
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from optuna.distributions import CategoricalDistribution, FloatDistribution

from latentsweep.sweeps.impl import reseed

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _pins() -> dict[str, str]:
    deps = re.search(r"dependencies = \[(.*?)\n\]", PYPROJECT.read_text(), re.S).group(1)
    return dict(re.findall(r'"([a-z-]+)==([^"]+)"', deps))


@pytest.mark.parametrize("package", ["hydra-core", "hydra-optuna-sweeper", "hydra-joblib-launcher"])
def test_the_installed_version_is_the_pinned_one(package):
    pinned = _pins()[package]
    assert version(package) == pinned, (f"{package} {version(package)} is installed, pyproject pins {pinned}: "
                                        "run tests/test_compat.py against the new version, then move the pin")


def test_joblib_launchers_execute_job_takes_what_launching_passes():
    """sweeps/launching.py runs each trial through the joblib launcher's own `_core.execute_job`."""
    from hydra_plugins.hydra_joblib_launcher._core import execute_job

    assert list(inspect.signature(execute_job).parameters) == [
        "idx", "overrides", "hydra_context", "config", "task_function", "task_function_unwrap_depth",
        "singleton_state", "wrap_result"]


def test_upstream_override_parsing_splits_distributions_fixed_values_and_deletions():
    from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides

    dists, fixed, fixed_overrides = create_params_from_overrides(
        ["model.a=choice(1,2)", "model.b=interval(0.0,1.0)", "model.c=3", "~model.d"])
    assert dists == {"model.a": CategoricalDistribution([1, 2]), "model.b": FloatDistribution(0.0, 1.0)}
    assert fixed == {"model.c": "3"} and fixed_overrides == ["~model.d"]  # a fixed value stays a string


def _impl(params=None, custom_search_space=None):
    from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl

    impl = OptunaSweeperImpl(optuna.samplers.RandomSampler(seed=0), "minimize", None, "s", 4, 1, 0.5,
                             custom_search_space, params)
    impl.config = OmegaConf.create({"x": 0})  # what setup() stores; the extender receives it
    return impl


def test_upstream_sweeper_impl_methods_the_loop_calls():
    """sweeps/impl.py calls `_process_searchspace_config`, `_parse_sweeper_params_config` and
    `_to_grid_sampler_choices`. (Upstream's
    `_configure_trials` is not used: `spaces.TrialSpace.sample` samples every sweep's trials.)"""
    impl = _impl(params=None)
    impl._process_searchspace_config()
    assert OmegaConf.is_config(impl.params) and impl._parse_sweeper_params_config() == []
    impl.params = OmegaConf.create({"model.a": "choice(1,2)"})
    assert impl._parse_sweeper_params_config() == ["model.a=choice(1,2)"]
    assert list(impl._to_grid_sampler_choices(CategoricalDistribution([1, 2]))) == [1, 2]


def test_optuna_trial_internals_the_sweeper_uses():
    """`trial._suggest` (sweeps/spaces.py), `trial._trial_id` and `study._storage` (sweeps/sweeper.py)."""
    study = optuna.create_study()
    trial = study.ask()
    value = trial._suggest("x", FloatDistribution(0.0, 1.0))
    assert 0.0 <= value <= 1.0 and trial.params == {"x": value}
    assert study._storage.get_trial(trial._trial_id).number == trial.number


@pytest.mark.parametrize("make", [lambda: optuna.samplers.TPESampler(seed=0, n_startup_trials=2),
                                  lambda: optuna.samplers.RandomSampler(seed=0)])
def test_reseeding_a_sampler_through_its_rng_makes_its_asks_reproducible(make):
    """`reseed` (sweeps/impl.py) sets `sampler._rng.rng` (and its start-up sampler's): the same seed
    gives the same parameters, another seed others. If Optuna renames `_rng`, nothing would be reseeded."""

    def first_params(seed: int) -> list[float]:
        sampler = make()
        study = optuna.create_study(sampler=sampler)
        values = []
        for i in range(3):
            reseed(sampler, seed * 1000 + i)
            trial = study.ask()
            values.append(trial.suggest_float("x", 0.0, 1.0))
            study.tell(trial, values[-1])
        return values

    assert first_params(7) == first_params(7)
    assert first_params(7) != first_params(8)


def test_job_return_keeps_the_exception_of_a_failed_job_in_return_value():
    """`classify` (sweeps/outcomes.py) and `failed_return` (sweeps/launching.py) use `JobReturn._return_value`."""
    error = ValueError("boom")
    ret = JobReturn(status=JobStatus.FAILED, _return_value=error)
    assert ret._return_value is error
    with pytest.raises(ValueError):
        ret.return_value  # noqa: B018 - the public property re-raises; the sweeper needs the exception itself


def test_the_submitit_launcher_is_the_pinned_one_and_has_what_submitit_jobs_reads():
    """sweeps/submitit_jobs.py submits one job per trial through the upstream launcher's settings:
    its `_EXECUTOR`, `params`, `__call__` (the job body) and `config.BaseQueueConf`."""
    pinned = re.search(r'slurm = \["hydra-submitit-launcher==([^"]+)"\]', PYPROJECT.read_text()).group(1)
    assert version("hydra-submitit-launcher") == pinned
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf
    from hydra_plugins.hydra_submitit_launcher.submitit_launcher import LocalLauncher, SlurmLauncher

    assert (LocalLauncher._EXECUTOR, SlurmLauncher._EXECUTOR) == ("local", "slurm")
    assert "submitit_folder" in OmegaConf.structured(BaseQueueConf)
    assert LocalLauncher(submitit_folder="x", timeout_min=1).params == {"submitit_folder": "x", "timeout_min": 1}
    assert list(inspect.signature(LocalLauncher.__call__).parameters) == [
        "self", "sweep_overrides", "job_dir_key", "job_num", "job_id", "singleton_state"]
    from submitit.core.core import Job

    assert isinstance(Job._results_timeout_s, (int, float))


def test_optuna_heartbeat_interface_the_remote_storages_implement():
    """sweeps/remote_storage.py gives the journal and gRPC storages Optuna's `BaseHeartbeat`."""
    from optuna.storages._heartbeat import BaseHeartbeat, is_heartbeat_enabled

    from latentsweep.sweeps.remote_storage import HeartbeatJournalStorage

    abstract = {name for name in dir(BaseHeartbeat) if getattr(getattr(BaseHeartbeat, name), "__isabstractmethod__", False)}
    assert abstract == {"record_heartbeat", "_get_stale_trial_ids", "get_heartbeat_interval",
                        "get_heartbeat_stale_trial_callback"}
    assert not HeartbeatJournalStorage.__abstractmethods__
    assert callable(is_heartbeat_enabled)
