"""A model on disk: `weights.safetensors` + `config.yaml` (model, data spec, data, task). No pickle.

Used by tracking (a run's saved model, the registry's pyfunc) and by anyone holding the two files.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml


def save_model_files(folder: str | Path, state_dict: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(folder / "weights.safetensors"))
    (folder / "config.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=False))


def load_model_files(folder: str | Path):
    """(model in eval mode, config dict) from a folder written by `save_model_files`."""
    folder = Path(folder)
    return load_model_paths(folder / "weights.safetensors", folder / "config.yaml")


def load_model_paths(weights: str | Path, config: str | Path):
    """(model in eval mode, config dict) from a safetensors file and its config.yaml.

    The model expects prepared input: `latentsweep.data.prepare_inputs(config, raw_series)` applies
    the training normalisation/resampling saved in `config["preprocess"]`.
    """
    from safetensors.torch import load_file

    from .build import build_model_from_dict  # here: torch loads only when a model does

    cfg = yaml.safe_load(Path(config).read_text())
    model = build_model_from_dict(cfg["model"], cfg["spec"], cfg.get("task"))
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    return model, cfg
