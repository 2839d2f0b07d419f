"""MLflow pyfunc of a registered latentsweep model, logged as *code* (models-from-code): no pickle.

`tracking.registry.register_best_model` saves this file with `python_model=<this path>` plus the run's
`weights.safetensors` and `config.yaml` as artifacts. `mlflow.pyfunc.load_model("models:/latentsweep-
<model>@best").predict(x)` takes `x`: one series [T, C], a batch [B, T, C] (every series T steps
long), or a list of [T, C] arrays. An autoencoder returns latents [B, latent_dim]. A classifier
(`latentsweep-<model>-classify`, task=classify) returns a DataFrame with one row per series: the
predicted class name in `label`, then `prob_<class name>` for every class (rows sum to 1). `x` is RAW data, in the units
of the training source: predict prepares it exactly like training (resampling to `data.fixed_length`,
then `data.normalize` with the training split's saved shift/scale, or per-series zscore), via the
config's "preprocess" section. Models saved before that section existed get `x` as given (warned
once). `latentsweep.tracking.load_registered_model` gives the torch model instead; pair it with
`latentsweep.data.prepare_inputs(config, x)`.
"""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class LatentModel(PythonModel):
    def load_context(self, context: Any) -> None:
        from latentsweep.model_files import load_model_paths

        self.model, self.config = load_model_paths(context.artifacts["weights"], context.artifacts["config"])

    def predict(self, context, model_input, params=None):  # no type hints: MLflow would read them as a schema
        import torch

        from latentsweep.data import collate, prepare_inputs

        if hasattr(model_input, "to_numpy"):  # a DataFrame: one series, columns = channels
            model_input = model_input.to_numpy()
        if getattr(model_input, "ndim", None) == 2:  # one [T, C] array or tensor
            model_input = [model_input]
        data = prepare_inputs(self.config, list(model_input))  # raw -> normalised like the training data
        batch = collate(data, list(range(len(data))))
        if hasattr(self.model, "predict_logits"):  # task=classify: classes, not latents
            return self._classes(self.model.predict_logits(batch))
        with torch.no_grad():
            latent = self.model.get_latent(batch)
        return latent.float().cpu().numpy()

    def _classes(self, logits):
        import pandas as pd
        import torch

        probs = torch.softmax(logits.float(), dim=-1).cpu().numpy()
        names = [str(n) for n in ((self.config.get("spec") or {}).get("class_names") or range(probs.shape[1]))]
        frame = pd.DataFrame({"label": [names[i] for i in probs.argmax(1)]})
        for j, name in enumerate(names):
            frame[f"prob_{name}"] = probs[:, j]
        return frame


mlflow.models.set_model(LatentModel())
