"""Schemas for the `task` config group; merged into the ConfigStore by `registry.register_configs`.

`task=reconstruct` (default) trains the autoencoder as such; `task=classify` wraps the same
model's encoder with an MLP head (`latentsweep.tasks`). `check()` is called by
`latentsweep.tasks.setup.setup_task`, so an impossible value fails before any data is read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

from ..errors import ConfigError
from . import checks
from .checks import MAX_WIDTH

CLASSIFY_LOSSES = ("cross_entropy", "focal")


@dataclass
class TaskConfig:
    name: str = MISSING

    def check(self) -> None:
        checks.one_of("task.name", self.name, ("reconstruct", "classify"))


@dataclass
class ReconstructTaskConfig(TaskConfig):
    name: str = "reconstruct"


def _numbers(key: str, value: Any, *, scalar_ok: bool) -> None:
    """null, a non-negative number (if `scalar_ok`) or a list of non-negative numbers."""
    if value is None:
        return
    values = [value] if isinstance(value, (int, float)) and scalar_ok else value
    if isinstance(values, str) or not hasattr(values, "__iter__"):
        raise ConfigError(f"{key}={value!r} is not a list of numbers — e.g. {key}=[1.0,3.0]")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise ConfigError(f"{key} holds {v!r}: every entry must be a number >= 0 — e.g. {key}=[1.0,3.0]")


@dataclass
class ClassifyTaskConfig(TaskConfig):
    name: str = "classify"
    head_sizes: list[int] = field(default_factory=lambda: [64])  # hidden widths of the MLP head; [] = linear
    dropout: float = 0.1
    loss: str = "cross_entropy"  # cross_entropy | focal
    gamma: float = 2.0  # focal only: (1 - p_t)^gamma down-weights easy series
    alpha: Any = None  # focal only: null | one weight per class | a scalar (2 classes: [1-a, a])
    class_weights: Any = None  # null | balanced (from the training split) | [w0, w1, ...]
    label_smoothing: float = 0.0
    pretrained: str | None = None  # null | an MLflow run id of an autoencoder run | best (registry)
    freeze_encoder: bool = False

    def check(self) -> None:
        super().check()
        for i, width in enumerate(self.head_sizes):
            checks.positive(f"task.head_sizes[{i}]", width, upper=MAX_WIDTH)
        checks.fraction("task.dropout", self.dropout)
        checks.one_of("task.loss", self.loss, CLASSIFY_LOSSES)
        checks.non_negative("task.gamma", self.gamma)
        checks.fraction("task.label_smoothing", self.label_smoothing)
        if isinstance(self.class_weights, str):
            if self.class_weights != "balanced":
                raise ConfigError(f"unknown task.class_weights={self.class_weights!r} — use null, balanced "
                                  "or one weight per class, e.g. task.class_weights=[1.0,4.0]")
        else:
            _numbers("task.class_weights", self.class_weights, scalar_ok=False)
        _numbers("task.alpha", self.alpha, scalar_ok=True)
        if self.alpha is not None and self.loss != "focal":
            raise ConfigError("task.alpha only applies to task.loss=focal — use task.class_weights for "
                              "cross-entropy, or set task.loss=focal")


SCHEMAS: dict[str, dict[str, type]] = {
    "task": {"reconstruct": ReconstructTaskConfig, "classify": ClassifyTaskConfig},
}
