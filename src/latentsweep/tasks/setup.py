"""The pipeline's task hooks; it calls two and stays task-agnostic.

- `setup_task(cfg, data)` before training: builds the model (wrapped for the task), resolves
  `task.pretrained` (which replaces `cfg.model`), fills "balanced" class weights from the
  training split and checks the labels. Returns the (possibly updated) config, model and tags.
- `log_task_results(tracker, model, data, result, device)` after training: a classifier's
  confusion matrix, per-class precision/recall and score curves.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import torch
from omegaconf import DictConfig, OmegaConf

from ..build import build_model
from ..data import PreparedData
from ..errors import ConfigError, DataError
from ..objectives import objective_names
from .classifier import Classifier, balanced_class_weights
from .wrap import NO_LABELS

log = logging.getLogger("latentsweep.tasks")

#: Objectives read from the classifier's per-epoch scores; meaningless for an autoencoder.
CLASSIFY_OBJECTIVES = ("val_accuracy", "val_macro_f1")


@dataclass
class TaskSetup:
    cfg: DictConfig  # `cfg` with the pre-trained run's model config when task.pretrained is set
    model: torch.nn.Module
    tags: dict[str, str] = field(default_factory=dict)  # MLflow tags of the run


def _objective_names(cfg: DictConfig) -> list[str]:
    return objective_names(cfg.objective)


def _check_labels(data: PreparedData) -> dict[str, str]:
    """DataError without labels; classes seen in validation only are reported (log + tag)."""
    if data.train.labels is None or not data.spec.n_classes:
        raise DataError(NO_LABELS)
    names = list(data.spec.class_names or range(data.spec.n_classes))
    in_train = set(data.train.labels.unique().tolist())
    if len(in_train) < 2:
        raise DataError(f"the training split holds only class {names[next(iter(in_train))]!r} — a classifier "
                        "needs two or more (check data.val_fraction / the source's split)")
    val_only = sorted(set(data.val.labels.unique().tolist()) - in_train) if data.val.labels is not None else []
    if not val_only:
        return {}
    missing = ",".join(str(names[i]) for i in val_only)
    log.warning("classes in validation but not in training: %s — the classifier cannot learn them", missing)
    return {"classes_missing_in_train": missing}


def setup_task(cfg: DictConfig, data: PreparedData) -> TaskSetup:
    """Model (and config) for the run's task; see the module docstring."""
    task = cfg.get("task")
    name = task.get("name", "reconstruct") if task is not None else "reconstruct"
    wrong = [n for n in _objective_names(cfg) if n in CLASSIFY_OBJECTIVES and name != "classify"]
    if wrong:
        raise ConfigError(f"objective={wrong[0]} scores a classifier — add task=classify, or use objective=val_loss")
    if name == "reconstruct":
        return TaskSetup(cfg, build_model(cfg.model, data.spec, task))
    OmegaConf.to_object(task).check()
    tags = {"task": name, **_check_labels(data)}
    pretrained = None
    if task.get("pretrained"):
        from .pretrained import apply_to_config, load_pretrained

        pretrained = load_pretrained(str(task.pretrained), str(cfg.model._target_), cfg.tracking.get("uri"))
        cfg = apply_to_config(cfg, pretrained)
        tags.update(pretrained.tags())
    elif task.get("freeze_encoder"):
        log.warning("task.freeze_encoder=true without task.pretrained: the head learns on a random encoder")
    model = build_model(cfg.model, data.spec, task)
    if pretrained is not None:
        from .pretrained import load_into

        load_into(model.autoencoder, pretrained, data.spec)
    if task.get("class_weights") == "balanced":
        model.set_class_weights(balanced_class_weights(data.train.labels, model.n_classes))
        log.info("balanced class weights: %s", [round(w, 3) for w in model.class_weights.tolist()])
    return TaskSetup(cfg, model, tags)


def log_task_results(tracker, model, data: PreparedData, result, device) -> dict[str, float]:
    """Task-specific results of the finished run (nothing for autoencoders)."""
    if not isinstance(model, Classifier) or not tracker.enabled:
        return {}
    from .report import log_classification

    return log_classification(tracker, model, data, result, device)
