"""Build models and optimisers from config with `hydra.utils.instantiate`, safely.

Config-selected targets are limited to this package's and torch's optimisers (Hydra 1.4's
execution whitelist), so a config can never run arbitrary code, and users see no warning.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from .config.plain import plain
from .data.series import DataSpec
from .errors import ConfigError, InfeasibleError
from .tasks.wrap import wrap_for_task

MODEL_TARGETS = ("latentsweep.models.*",)
OPTIMIZER_TARGETS = ("torch.optim.*",)
DATA_TARGETS = ("latentsweep.data.*",)


def build_model(model_cfg: Mapping[str, Any] | DictConfig, spec: DataSpec, task: Mapping[str, Any] | None = None):
    """Instantiate `model_cfg` for data described by `spec`. Sizes this data cannot take stay
    `InfeasibleError`s (a sweep prunes that trial); other impossible values become ConfigErrors."""
    params = plain(model_cfg)
    try:
        model = instantiate(params, spec=spec, _execution_whitelist_=MODEL_TARGETS)
    except (ConfigError, InfeasibleError):
        raise
    except Exception as exc:  # Hydra wraps the constructor's error: find what the model raised
        cause = exc
        while cause.__cause__ is not None and not isinstance(cause, (ValueError, TypeError)):
            cause = cause.__cause__
        if isinstance(cause, InfeasibleError):
            raise InfeasibleError(str(cause).splitlines()[0]) from exc
        if isinstance(cause, (ValueError, TypeError)):
            raise ConfigError(str(cause).splitlines()[0]) from exc
        raise
    if task and task.get("name", "reconstruct") != "reconstruct":
        model = wrap_for_task(model, task, spec)
    return model


def build_model_from_dict(model_cfg: Mapping[str, Any], spec: Mapping[str, Any] | DataSpec,
                          task: Mapping[str, Any] | None = None):
    spec = spec if isinstance(spec, DataSpec) else DataSpec.from_dict(spec)
    return build_model(model_cfg, spec, task)


def build_optimizer(optimizer_cfg: Mapping[str, Any] | DictConfig, params) -> torch.optim.Optimizer:
    factory = instantiate(plain(optimizer_cfg), _execution_whitelist_=OPTIMIZER_TARGETS)
    return factory(params)


def load_source(data_cfg: Mapping[str, Any] | DictConfig, common_fields: frozenset[str]):
    """Call the data source named by `data._target_` with its own (non-common) fields."""
    params = {k: v for k, v in plain(data_cfg).items() if k == "_target_" or k not in common_fields}
    return instantiate(params, _execution_whitelist_=DATA_TARGETS)
