"""Tasks: what a run trains the model for. `task=reconstruct` (default) or `task=classify`.

- `setup`: the pipeline's two hooks, `setup_task` before training and `log_task_results` after
- `wrap`: `wrap_for_task`, the autoencoder wrapped for a task (used by `build.build_model`, so a
  saved classifier rebuilds from its files)
- `classifier`, `metrics`, `report`: the classification head, its scores and its figures
- `pretrained`: `task.pretrained`, a classifier's encoder started from an autoencoder run

This file imports nothing, so `build` can use `tasks.wrap` while `tasks.setup` uses `build`.
"""
