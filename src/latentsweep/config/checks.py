"""Small validators shared by the schema dataclasses: each failure is a one-line ConfigError."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from ..errors import ConfigError


def positive(key: str, value: Any, *, allow_none: bool = False, upper: float | None = None) -> None:
    if value is None and allow_none:
        return
    if value is None or value <= 0:
        raise ConfigError(f"{key} must be positive, got {value} — e.g. {key}=16")
    if upper is not None and value > upper:
        raise ConfigError(f"{key}={value} is absurdly large (limit {upper:g}) — pick a realistic size")


def non_negative(key: str, value: Any) -> None:
    if value is None or value < 0:
        raise ConfigError(f"{key} must be >= 0, got {value}")


def fraction(key: str, value: float, *, closed_right: bool = False) -> None:
    ok = 0.0 <= value <= 1.0 if closed_right else 0.0 <= value < 1.0
    if not ok:
        raise ConfigError(f"{key} must be in [0, 1{']' if closed_right else ')'}, got {value}")


def one_of(key: str, value: Any, choices: Iterable[Any]) -> None:
    choices = list(choices)
    if value not in choices:
        raise ConfigError(f"unknown {key}={value!r} — choose one of {choices}")


def rule(check: Callable[..., Any], *args: Any) -> None:
    """A rule of `latentsweep.choices` (which the code using the value applies too), as a ConfigError."""
    try:
        check(*args)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


# A model size above this is a typo, not an experiment: it would exhaust memory minutes later.
MAX_WIDTH = 65536
