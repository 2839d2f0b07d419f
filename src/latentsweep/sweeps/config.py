"""Schema of `hydra.sweeper` for our Optuna sweeper; `hydra_plugins.latentsweep_sweeper` registers it
as `hydra/sweeper/latentsweep_optuna_schema` when Hydra scans its plugins.

It extends the upstream `OptunaSweeperConf`, so every upstream key (sampler, storage, study_name,
n_trials, n_jobs, params, custom_search_space, ...) keeps its meaning; `conf/hydra/sweeper/optuna.yaml`
starts from it and shadows the upstream `optuna` entry, so `hydra/sweeper=optuna` gets ours.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf


@dataclass
class PrunerConf:
    """Which Optuna pruner stops hopeless trials; built by `sweeps.pruners.make_pruner`."""

    name: str = "successive_halving"  # successive_halving | median | hyperband | none (docs/sweeps.md: why)
    n_startup_trials: int = 4  # median: trials that always run to the end first
    n_warmup_steps: int = 1  # median: epochs before a trial may be pruned
    interval_steps: int = 1
    min_resource: Any = 2  # hyperband / successive_halving: the step of the first cut ("auto": from the trials)
    max_resource: Any = "auto"  # hyperband: epochs of a full trial ("auto": from the first finished trial)
    reduction_factor: int = 3  # hyperband / successive_halving: keep 1/reduction_factor per rung


@dataclass
class LatentSweepOptunaConf(OptunaSweeperConf):
    _target_: str = "latentsweep.sweeps.sweeper.LatentSweepOptunaSweeper"
    # null: the objective decides (latentsweep.objectives.direction(cfg.objective))
    direction: Any = None
    storage: Any | None = "sqlite:///sweeps/optuna.db"
    n_trials: int = 20  # the study's TARGET total: a rerun only runs what is missing
    n_jobs: int = 1  # trials per batch; with hydra/launcher=joblib, trials run in parallel
    max_failure_rate: float = 0.5
    pruner: PrunerConf = field(default_factory=PrunerConf)
    heartbeat_interval: int | None = 20  # seconds; trials silent for grace_period are failed on restart
    grace_period: int | None = None  # null: 2 * heartbeat_interval
    mlflow: bool = True  # a parent MLflow run per study, trials as nested runs, figures at the end
    register_best: bool = True  # register the best trial's model as latentsweep-<model>@best
    min_trials_for_failure_rate: int = 4  # judge max_failure_rate only after this many trials
    max_retries: int = 2  # times a killed trial continues from its checkpoint before it FAILs
