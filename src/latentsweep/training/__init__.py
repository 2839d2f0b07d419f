"""Model-agnostic training: loop, checkpoints, device choice."""

from .checkpoint import Checkpointer
from .device import resolve_device, seed_everything
from .loop import FitResult, fit

__all__ = ["Checkpointer", "FitResult", "fit", "resolve_device", "seed_everything"]
