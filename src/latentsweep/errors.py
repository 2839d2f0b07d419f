"""User-facing errors.

A `LatentSweepError` is a problem the user can fix (bad data, an impossible size, a missing
file). `train.py` prints it as one line that names the problem and the fix, without a
traceback (set HYDRA_FULL_ERROR=1 for one). Anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import traceback
from pathlib import Path

_OUR_CODE = Path(__file__).resolve().parent  # src/latentsweep
ORIGIN_ATTR = "raised_in_our_code"  # set on the exception in the job, survives pickling to the sweeper


class LatentSweepError(Exception):
    """Base class: a one-line, actionable message."""


class ConfigError(LatentSweepError):
    """A configuration value is invalid or two values contradict each other."""


class InfeasibleError(LatentSweepError, ValueError):
    """These sizes cannot work on this data (more downsampling than the series have steps, a latent
    no smaller than the input). Unlike a `ConfigError`, another combination of sizes may work: in a
    sweep the trial is recorded as infeasible (PRUNED, with this reason) and the sweep goes on."""


class DataError(LatentSweepError):
    """The input data cannot be used as configured."""


class DivergedError(LatentSweepError):
    """Training produced a NaN or infinite loss."""


class CheckpointError(LatentSweepError):
    """A checkpoint is missing, corrupt or belongs to another configuration."""


class TrackingError(LatentSweepError):
    """The MLflow store cannot be reached or written."""


class ResourceError(LatentSweepError):
    """The run ran out of a resource (GPU memory) at the sizes it was given."""


def mark_origin(exc: BaseException) -> None:
    """Record on `exc` whether its innermost frame is in latentsweep: the traceback does not travel
    from a worker process back to the sweeper, the exception's attributes do."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    if frames:
        here = Path(frames[-1].filename).resolve()
        setattr(exc, ORIGIN_ATTR, _OUR_CODE in here.parents)
