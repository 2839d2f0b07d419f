"""Optuna sweeps: a Hydra sweeper over the upstream Optuna plugin, pruning, resumable storage.

`python train.py -m hydra/sweeper=optuna [model=...]` runs (or continues) the study of that model's
search space (`conf/search/<model>.yaml`). Modules: `config` (schema), `sweeper` (the plugin),
`trial` (job side: pruning callback + heartbeat), `pruners`, `storage`, `spaces`, `pyfunc_model`,
`failures` (a failed trial's cause and what the sweep does), `continuation` (killed trials resume).
"""
