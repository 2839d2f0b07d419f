"""`wrap_for_task`: the autoencoder wrapped for `task.name` (a classifier for `task=classify`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from ..config.plain import plain
from ..data.series import DataSpec
from ..errors import ConfigError, DataError
from .classifier import Classifier

NO_LABELS = ("task=classify needs labelled series and these have none — pick a labelled source "
             "(data=synthetic, ucr, digits, mnist) or set data.label_column=<column>")


def wrap_for_task(model: torch.nn.Module, task: Mapping[str, Any], spec: DataSpec) -> torch.nn.Module:
    """The autoencoder wrapped for `task.name` (called by `build.build_model`)."""
    task = plain(task)
    if task.get("name") != "classify":
        raise ConfigError(f"unknown task={task.get('name')!r} — use task=reconstruct or task=classify")
    if not spec.n_classes:
        raise DataError(NO_LABELS)
    weights = task.get("class_weights")
    try:
        return Classifier(model, spec, head_sizes=list(task.get("head_sizes", [64])),
                          dropout=task.get("dropout", 0.1), loss=task.get("loss", "cross_entropy"),
                          gamma=task.get("gamma", 2.0), alpha=task.get("alpha"),
                          class_weights=None if weights in (None, "balanced") else weights,
                          label_smoothing=task.get("label_smoothing", 0.0),
                          freeze_encoder=task.get("freeze_encoder", False))
    except ValueError as exc:
        raise ConfigError(str(exc).splitlines()[0]) from exc
