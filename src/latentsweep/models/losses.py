"""Reconstruction losses over valid time steps only (the mask comes from the lengths)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ..choices import LOSSES as RECONSTRUCTION_LOSSES


def elementwise(recon: Tensor, target: Tensor, kind: str) -> Tensor:
    if kind == "mse":
        return (recon - target) ** 2
    if kind == "l1":
        return (recon - target).abs()
    if kind == "huber":
        return F.huber_loss(recon, target, reduction="none")
    if kind == "bce":  # `recon` are logits; targets in [0, 1]
        return F.binary_cross_entropy_with_logits(recon, target, reduction="none")
    raise ValueError(f"unknown reconstruction loss {kind!r}; choose one of {RECONSTRUCTION_LOSSES}")


def masked_reconstruction_loss(recon: Tensor, target: Tensor, mask: Tensor, kind: str = "mse") -> Tensor:
    """Mean of the element-wise loss over valid steps and all channels.

    recon, target: [B, T, C]; mask: [B, T] bool. Padded steps contribute nothing, whatever
    value they hold, so a series scores the same alone or padded in a batch.
    """
    per_step = elementwise(recon.float(), target.float(), kind).mean(-1)  # [B, T]
    m = mask.to(per_step.dtype)
    return (per_step * m).sum() / m.sum().clamp_min(1.0)


def per_series_reconstruction_error(recon: Tensor, target: Tensor, mask: Tensor, kind: str = "mse") -> Tensor:
    """[B] mean loss per series over its own valid steps (anomaly scores)."""
    per_step = elementwise(recon.float(), target.float(), kind).mean(-1)
    m = mask.to(per_step.dtype)
    return (per_step * m).sum(1) / m.sum(1).clamp_min(1.0)
