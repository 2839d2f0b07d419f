"""What `train()` returns to the sweeper, and in which direction the sweep should go.

Each objective is a function of the finished run (best model, data, loop result) plus a
direction; sweeps read the direction from here so `objective=...` is the only switch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import ConfigError


@dataclass(frozen=True)
class Objective:
    direction: str  # "minimize" | "maximize"
    compute: Callable[..., float]
    needs_labels: bool = False


def _best_val_loss(*, result: Any, **_: Any) -> float:
    return float(result.best_val_loss)


OBJECTIVES: dict[str, Objective] = {
    "val_loss": Objective("minimize", _best_val_loss),
}


def get_objective(name: str) -> Objective:
    if name not in OBJECTIVES:
        raise ConfigError(f"unknown objective={name!r} — choose one of {sorted(OBJECTIVES)}")
    return OBJECTIVES[name]


def objective_value(name: str, **context: Any) -> float:
    return float(get_objective(name).compute(**context))


def direction(name: str) -> str:
    return get_objective(name).direction
