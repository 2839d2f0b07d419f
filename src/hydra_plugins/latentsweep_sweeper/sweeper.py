"""The sweeper class, imported here so that Hydra's plugin scan registers it (under its own name,
`latentsweep.sweeps.sweeper.LatentSweepOptunaSweeper`, the schema's `_target_`)."""

from latentsweep.sweeps.sweeper import LatentSweepOptunaSweeper

__all__ = ["LatentSweepOptunaSweeper"]
