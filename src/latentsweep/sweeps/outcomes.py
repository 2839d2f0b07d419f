"""A finished job as an Optuna result: COMPLETE with its value(s), PRUNED, infeasible, or FAIL with
its cause; and how each is written into the study.

- PRUNED: the job raised `optuna.TrialPruned` (recognised by its type, never by its text).
- infeasible: the sampled sizes cannot work on this data (`InfeasibleError`, raised by a constraint
  while sampling or by the model's constructor). Recorded as PRUNED with `fail_cause=infeasible`
  and the reason in `fail_reason`, so TPE learns to avoid that region; it never counts towards
  `max_failure_rate` and never stops the sweep (only a whole space of them does, `InfeasibleStreak`).
- FAIL: anything else, with `fail_reason` and `fail_cause` (`sweeps.failures`).

Every write is logged when it fails, and a failing first write never skips the state change.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from optuna.trial import TrialState

from ..errors import InfeasibleError
from . import failures

log = logging.getLogger("latentsweep.sweeps")

INFEASIBLE = "infeasible"  # fail_cause of a trial whose sampled sizes the data cannot take


@dataclass(frozen=True)
class Outcome:
    state: TrialState
    values: Any = None  # a float, or a list for several objectives
    reason: str | None = None  # fail_reason
    cause: str | None = None  # fail_cause: killed / oom / diverged / fatal / error / infeasible
    error: BaseException | None = None  # what the job raised

    @property
    def infeasible(self) -> bool:
        return self.cause == INFEASIBLE


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else ""


def _completed(raw: Any, n_objectives: int) -> Outcome:
    try:
        values = [float(v) for v in raw] if isinstance(raw, (list, tuple)) else [float(raw)]
    except (TypeError, ValueError):
        return Outcome(TrialState.FAIL, reason=f"return value {raw!r} is not a number", cause=failures.ERROR)
    if len(values) != n_objectives:
        return Outcome(TrialState.FAIL, reason=f"{len(values)} values returned for {n_objectives} objectives",
                       cause=failures.ERROR)
    if not all(math.isfinite(v) for v in values):
        shown = values if n_objectives > 1 else values[0]
        return Outcome(TrialState.FAIL, reason=f"objective is {shown}", cause=failures.ERROR)
    return Outcome(TrialState.COMPLETE, values if n_objectives > 1 else values[0])


def classify(ret: JobReturn, n_objectives: int = 1) -> Outcome:
    """A job's result as an `Outcome`."""
    if ret.status == JobStatus.COMPLETED:
        return _completed(ret._return_value, n_objectives)
    error = ret._return_value
    if isinstance(error, optuna.TrialPruned):
        return Outcome(TrialState.PRUNED, error=error)
    if isinstance(error, InfeasibleError):
        return infeasible(error)
    return Outcome(TrialState.FAIL, reason=f"{type(error).__name__}: {_first_line(error)}"[:1000],
                   cause=failures.cause_of(error), error=error)


def infeasible(error: BaseException) -> Outcome:
    return Outcome(TrialState.PRUNED, reason=f"infeasible: {_first_line(error)}"[:1000], cause=INFEASIBLE,
                   error=error)


def _try(what: str, number: int, call: Any, *args: Any, **kwargs: Any) -> bool:
    """Run one storage write; a failure is logged (a flaky store, a trial failed meanwhile as
    stale by another sweeper) and does not stop the next write."""
    try:
        call(*args, **kwargs)
        return True
    except Exception as exc:  # noqa: BLE001 - logged: the caller goes on with its next write
        log.warning("trial %d: could not %s: %s: %s", number, what, type(exc).__name__, exc)
        return False


def tell(study: optuna.Study, trial: optuna.Trial, outcome: Outcome) -> None:
    """Write `outcome` into the study: its reason and cause first, then the state (always tried).
    The line it logs says how long that took (`told in`: benchmarks read it)."""
    start = time.perf_counter()
    if outcome.reason:
        _try("record its reason", trial.number, trial.set_user_attr, "fail_reason", outcome.reason)
    if outcome.cause:
        _try("record its cause", trial.number, trial.set_user_attr, "fail_cause", outcome.cause)
    if outcome.state == TrialState.COMPLETE:
        _try("record it COMPLETE", trial.number, study.tell, trial, outcome.values)
    else:
        _try(f"record it {outcome.state.name}", trial.number, study.tell, trial, state=outcome.state)
    told = f"(told in {time.perf_counter() - start:.3f} s)"
    if outcome.infeasible:
        log.info("trial %d PRUNED as %s %s", trial.number, outcome.reason, told)
    elif outcome.state == TrialState.FAIL:
        log.warning("trial %d failed: %s %s", trial.number, outcome.reason, told)
    else:
        shown = f" values={outcome.values}" if outcome.values is not None else ""
        log.info("trial %d %s%s %s", trial.number, outcome.state.name, shown, told)


def fail(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
    """FAIL a trial this sweeper holds (it stops before the trial could end): two writes, each tried."""
    tell(study, trial, Outcome(TrialState.FAIL, reason=reason))
