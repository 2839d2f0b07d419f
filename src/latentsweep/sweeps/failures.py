"""Why a trial failed, and what the sweep does about it.

A failed trial is not always the trial's fault, and not always worth repeating:

- `killed`: its process died (a worker killed for memory, a preempted node, `kill -9`). Nothing
  was wrong with the trial: it continues from its own last checkpoint.
- `oom`: out of (GPU or host) memory at its sizes. FAIL, the sweep goes on: smaller trials fit.
- `diverged`: NaN/inf loss. FAIL, the sweep goes on: another learning rate may be fine.
- `fatal`: a bug or a config error that every trial will hit: a `ConfigError`, an `ImportError`,
  a `TypeError` raised in our code, or the same exception (type and message) in each of the first
  trials. The sweep stops at once with that one line, instead of burning `n_trials`.
- `error`: anything else; FAIL, and the sweep's `max_failure_rate` decides.

Infeasible trials (`errors.InfeasibleError`: a constraint refused the sample, or the model refused
its sizes for this data) are not failures: they are PRUNED as infeasible (`sweeps.outcomes`).
`InfeasibleStreak` counts them: a space in which every sample is infeasible stops the sweep with
the line that names the reason.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import ORIGIN_ATTR, ConfigError, DivergedError, ResourceError

KILLED, OOM, DIVERGED, FATAL, ERROR = "killed", "oom", "diverged", "fatal", "error"

# The first trials that decide whether a failure is one every trial hits (same type and message).
SAME_FAILURE_TRIALS = 3
# Infeasible samples in a row, with none feasible yet, that show a space has no feasible point.
INFEASIBLE_STREAK = 10



class WorkerDied(RuntimeError):
    """The process running the trial died (killed for memory, preempted, a crash in C code)."""


def signature(error: BaseException | None) -> str:
    """`Type: first line of the message`: how two trials' failures are compared."""
    if error is None:
        return ""
    first = str(error).strip().splitlines()[0] if str(error).strip() else ""
    return f"{type(error).__name__}: {first}"[:1000]


def cause_of(error: BaseException | None) -> str:
    """The failure's cause (one of the constants above) from the exception the job returned."""
    if error is None:
        return ERROR
    name = type(error).__name__
    if isinstance(error, WorkerDied) or name in ("TerminatedWorkerError", "BrokenProcessPool"):
        return KILLED
    if isinstance(error, (ResourceError, MemoryError)) or "OutOfMemoryError" in name:
        return OOM
    if isinstance(error, DivergedError):
        return DIVERGED
    if isinstance(error, (ConfigError, ImportError)):
        return FATAL
    if isinstance(error, TypeError) and getattr(error, ORIGIN_ATTR, False):
        return FATAL
    return ERROR


def same_failure_everywhere(first_failures: Sequence[str | None]) -> bool:
    """True when each of the first `SAME_FAILURE_TRIALS` trials to end failed with the same
    signature (`None` for a trial that did not fail, or failed for a cause of its own)."""
    head = list(first_failures[:SAME_FAILURE_TRIALS])
    return len(head) == SAME_FAILURE_TRIALS and head[0] is not None and all(s == head[0] for s in head)


class InfeasibleStreak:
    """Counts infeasible samples until the first feasible one; `hopeless` once `limit` in a row
    (fewer when the study wants fewer trials) were all infeasible."""

    def __init__(self, limit: int = INFEASIBLE_STREAK) -> None:
        self.limit = limit
        self.count = 0
        self.feasible_seen = False
        self.last: str | None = None

    def infeasible(self, reason: str) -> None:
        self.count += 1
        self.last = reason

    def feasible(self) -> None:
        self.feasible_seen = True

    def hopeless(self, n_trials: int) -> bool:
        return not self.feasible_seen and self.count >= min(self.limit, max(1, n_trials))
