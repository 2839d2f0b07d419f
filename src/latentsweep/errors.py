"""User-facing errors.

A `LatentSweepError` is a problem the user can fix (bad data, an impossible size, a missing
file). `train.py` prints it as one line that names the problem and the fix, without a
traceback (set HYDRA_FULL_ERROR=1 for one). Anything else is a bug and keeps its traceback.
"""


class LatentSweepError(Exception):
    """Base class: a one-line, actionable message."""


class ConfigError(LatentSweepError):
    """A configuration value is invalid or two values contradict each other."""


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
