"""Allowed values that a schema checks at start-up and that the code using them needs too, in one
place: the schemas (config/), data preparation (data/) and the models (models/) import these names,
so a new choice is added once and every layer agrees on it.

Plain Python (no torch, no Hydra). A bad value raises ValueError; the schemas turn it into a
one-line ConfigError, and `build.build_model` does the same for a model built from config.
"""

from __future__ import annotations

LOSSES = ("mse", "l1", "huber", "bce")  # model.loss; "auto" picks bce for data in [0, 1], else mse
NORMALISATIONS = ("none", "zscore", "global", "minmax")  # data.normalize
SEQUENCE_PATHS = ("auto", "padded", "packed")  # model.sequence_path of the recurrent models


def sequence_path(requested: str, bidirectional: bool) -> str:
    """`auto` resolved (padded, or packed for a bidirectional encoder); a path that would give a
    wrong latent is refused."""
    if requested not in SEQUENCE_PATHS:
        raise ValueError(f"unknown model.sequence_path={requested!r} — choose one of {list(SEQUENCE_PATHS)}")
    if requested == "auto":
        return "packed" if bidirectional else "padded"
    if requested == "padded" and bidirectional:
        raise ValueError("model.sequence_path=padded is not exact for a bidirectional encoder (its backward "
                         "pass would start on padding) — use model.sequence_path=packed or auto")
    return requested
