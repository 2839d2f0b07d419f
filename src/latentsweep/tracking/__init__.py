"""Everything MLflow, one job a module; this package's public API is re-exported here.

- `store`: where the store is, opening it (`client_for`), its errors in one line
- `tracker`: `Tracker`, one run of a training job
- `runs`: questions about finished runs, and loading the model a run saved (`load_model`)
- `sweep_runs`: the parent run of an Optuna study and its trials' nested runs
- `registry`: the Model Registry (the best model as a pyfunc, `load_registered_model`)
- `pyfunc_model`: the pyfunc's code, logged as a file (models-from-code, no pickle)

Model files themselves (safetensors + config.yaml) are `latentsweep.model_files`.
"""

from ..model_files import load_model_files, load_model_paths, save_model_files
from .registry import (
           RegisteredVersion,
           load_registered_model,
           register_best_model,
           registered_version,
)
from .runs import (
           RunSummary,
           experiment_name_of_run,
           finished_runs,
           has_saved_model,
           load_model,
           max_metric,
)
from .store import client_for, open_store, resolve_tracking_uri
from .sweep_runs import find_trial_run, finish_sweep_run, sweep_parent_run
from .tracker import Tracker

__all__ = ["RegisteredVersion", "RunSummary", "Tracker", "client_for", "experiment_name_of_run",
           "find_trial_run", "finish_sweep_run", "finished_runs", "has_saved_model", "load_model",
           "load_model_files", "load_model_paths", "load_registered_model", "max_metric", "open_store",
           "register_best_model", "registered_version", "resolve_tracking_uri", "save_model_files",
           "sweep_parent_run"]
