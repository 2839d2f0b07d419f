"""MLflow pyfunc of a registered latentsweep model, logged as *code* (models-from-code): no pickle.

`tracking.register_best_model` saves this file with `python_model=<this path>` plus the run's
`weights.safetensors` and `config.yaml` as artifacts. `mlflow.pyfunc.load_model("models:/latentsweep-
<model>@best").predict(x)` returns latents [B, latent_dim] for `x`: one series [T, C], a padded batch
[B, T, C] (each series' own length is taken as T), or a list of [T, C] arrays — prepared like the
training data (same `data.normalize`). `latentsweep.tracking.load_registered_model` gives the
torch model instead.
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class LatentModel(PythonModel):
    def load_context(self, context: Any) -> None:
        from latentsweep.tracking import load_model_paths

        self.model, self.config = load_model_paths(context.artifacts["weights"], context.artifacts["config"])

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would read them as a schema
        import numpy as np
        import torch

        from latentsweep.data import collate
        from latentsweep.data.series import SeriesSet

        if hasattr(model_input, "to_numpy"):  # a DataFrame: one series, columns = channels
            model_input = model_input.to_numpy()
        if isinstance(model_input, np.ndarray) and model_input.ndim == 2:
            model_input = [model_input]
        series = [np.asarray(s, dtype=np.float32) for s in model_input]
        data = SeriesSet.from_arrays(series)
        with torch.no_grad():
            latent = self.model.get_latent(collate(data, list(range(len(series)))))
        return latent.float().cpu().numpy()


mlflow.models.set_model(LatentModel())
