"""Optuna sweeps: a Hydra sweeper over the upstream Optuna plugin, pruning, resumable storage.

`python train.py -m hydra/sweeper=optuna [model=...]` runs (or continues) the study of that model's
search space (`conf/search/<model>.yaml`). Modules: `config` (schema), `sweeper` (the plugin class,
light to import), `impl` (a sweep's set-up), `loop` (its state and scheduler), `outcomes` (a job's
result into the study), `summary` (the end of a sweep: results, parent run, registry), `launching`,
`trial` (job side: pruning callback + heartbeat), `heartbeat`, `pruners`, `storage`, `spaces`,
`failures` (a failed trial's cause and what the sweep does), `continuation` (killed trials resume),
`families` and `leaderboard` (a sweep over model families). Hydra finds the plugin through
`hydra_plugins.latentsweep_sweeper`.
"""
