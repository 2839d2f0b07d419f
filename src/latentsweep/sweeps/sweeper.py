"""`hydra/sweeper=optuna`: the Hydra plugin class, and nothing heavy.

Hydra imports every plugin module when it scans `hydra_plugins`, in every Hydra app of the
environment. So this module, like Hydra's own plugins, imports only Hydra at module level: optuna,
torch, pandas and MLflow are imported when a sweep is constructed (`sweeps.impl`), never by the
scan. `tests/test_plugin.py` checks it.
"""

from __future__ import annotations

from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig, OmegaConf


class LatentSweepOptunaSweeper(OptunaSweeper):
    """The Hydra plugin (`_target_` of conf/hydra/sweeper/optuna.yaml); the work is `sweeps.impl`."""

    def __init__(self, sampler: Any, direction: Any, storage: Any | None, study_name: str | None,
                 n_trials: int, n_jobs: int, max_failure_rate: float, custom_search_space: str | None,
                 params: DictConfig | None, pruner: Any = None, heartbeat_interval: int | None = None,
                 grace_period: int | None = None, mlflow: bool = True, register_best: bool = True,
                 min_trials_for_failure_rate: int = 4, max_retries: int = 2) -> None:
        from .impl import LatentSweepImpl  # lazily, as upstream's OptunaSweeper imports its _impl

        seed = OmegaConf.select(sampler, "seed", default=None) if isinstance(sampler, DictConfig) else None
        # custom_search_space is not passed up: upstream would import it outside the execution
        # whitelist; `spaces.build_space` loads it through `spaces.load_constraint` instead.
        super().__init__(sampler, direction, storage, study_name, n_trials, n_jobs, max_failure_rate,
                         None, params)  # instantiates the sampler
        self.sweeper = LatentSweepImpl(
            self.sweeper.sampler, direction, storage, study_name, n_trials, n_jobs, max_failure_rate,
            None, params, custom_search_space=custom_search_space, sampler_cfg=sampler,
            pruner=OmegaConf.to_container(pruner, resolve=True) if isinstance(pruner, DictConfig) else pruner,
            heartbeat_interval=heartbeat_interval, grace_period=grace_period, mlflow=mlflow,
            register_best=register_best, min_trials_for_failure_rate=min_trials_for_failure_rate,
            sampler_seed=seed, max_retries=max_retries)
