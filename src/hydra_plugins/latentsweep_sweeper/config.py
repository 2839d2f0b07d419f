"""`hydra/sweeper/latentsweep_optuna_schema`: the schema `conf/hydra/sweeper/optuna.yaml` extends."""

from hydra.core.config_store import ConfigStore

from latentsweep.sweeps.config import LatentSweepOptunaConf

ConfigStore.instance().store(group="hydra/sweeper", name="latentsweep_optuna_schema",
                             node=LatentSweepOptunaConf, provider="latentsweep")
