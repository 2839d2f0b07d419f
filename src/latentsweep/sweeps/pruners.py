"""One factory for the pruner, shared by the sweeper (creates the study) and each job (loads it).

Both sides must agree: the job asks `trial.should_prune()`, which consults the study's pruner in
the job's process, so the job rebuilds the very pruner the sweeper was configured with.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any

import optuna

from ..errors import ConfigError
from .config import PrunerConf

PRUNERS = ("median", "hyperband", "successive_halving", "none")


def _resource(value: Any) -> Any:
    return value if value in (None, "auto") else int(value)


class _SameFamily:
    """The study as a pruner sees it, holding only the trials of one model family.

    Its direction is always "minimize": what trials report each epoch is val_loss, whatever the
    study maximises at the end (a family sweep may select on probe_accuracy or svm_cv_accuracy),
    and Optuna's pruners read the study's direction to tell a better intermediate value."""

    direction = optuna.study.StudyDirection.MINIMIZE
    directions = (optuna.study.StudyDirection.MINIMIZE,)

    def __init__(self, study: optuna.Study, family: Any) -> None:
        self._study, self._family = study, family

    def get_trials(self, *args: Any, **kwargs: Any) -> list:
        return [t for t in self._study.get_trials(*args, **kwargs) if t.params.get("model") == self._family]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)


class PerFamilyPruner(optuna.pruners.BasePruner):
    """Family sweeps: a trial is compared only with trials of its own family (Optuna parameter
    `model`), whose per-epoch val_loss is the same quantity (vrae's ELBO is not an MSE).
    Median and successive halving honour it; hyperband's brackets see the whole study."""

    def __init__(self, inner: optuna.pruners.BasePruner) -> None:
        self.inner = inner

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return self.inner.prune(_SameFamily(study, trial.params.get("model")), trial)


def make_pruner(cfg: Mapping[str, Any] | None) -> optuna.pruners.BasePruner:
    """`hydra.sweeper.pruner` ({name, n_startup_trials, ...}) -> an Optuna pruner; `per_family: true`
    (set by family sweeps) compares trials within their model family only. Keys not given take
    `PrunerConf`'s defaults (sweeps/config.py), the only copy of them."""
    cfg = dict(cfg or {})
    if cfg.pop("per_family", False):
        return PerFamilyPruner(make_pruner(cfg))
    unknown = set(cfg) - {f.name for f in fields(PrunerConf)}
    if unknown:
        raise ConfigError(f"unknown hydra.sweeper.pruner keys {sorted(unknown)} — use "
                          f"{', '.join(f.name for f in fields(PrunerConf))}")
    conf = PrunerConf(**{"name": "none", **cfg})  # no name given: no pruning
    name = str(conf.name or "none").lower()
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=int(conf.n_startup_trials),
                                           n_warmup_steps=int(conf.n_warmup_steps),
                                           interval_steps=int(conf.interval_steps))
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1 if conf.min_resource in (None, "auto")
                                              else int(conf.min_resource),
                                              max_resource=_resource(conf.max_resource),
                                              reduction_factor=int(conf.reduction_factor))
    if name == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=_resource(conf.min_resource),
                                                      reduction_factor=int(conf.reduction_factor))
    if name in ("none", "nop", "null"):
        return optuna.pruners.NopPruner()
    raise ConfigError(f"unknown hydra.sweeper.pruner.name={name!r} — choose one of {', '.join(PRUNERS)}")
