"""latentsweep's Optuna sweeper as a Hydra plugin, found by Hydra's scan of the `hydra_plugins`
namespace package like any installed plugin: no run registers it by hand.

- `config`: stores the schema as `hydra/sweeper/latentsweep_optuna_schema`. It does not replace
  the upstream `hydra/sweeper/optuna` entry, so other Hydra apps keep the upstream sweeper;
  latentsweep's `conf/hydra/sweeper/optuna.yaml` picks ours for `python train.py`.
- `sweeper`: exposes `latentsweep.sweeps.sweeper.LatentSweepOptunaSweeper` to the scan.
"""
