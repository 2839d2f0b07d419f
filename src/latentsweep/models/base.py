"""The interface every autoencoder in the zoo shares.

The training loop, tracking, analysis and sweeps only call these methods, so adding a model
never touches them. Models are plain `nn.Module`s built from a `DataSpec` plus sizes; they know
nothing of Hydra or MLflow.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from ..data.batching import Batch
from ..data.series import DataSpec
from .losses import RECONSTRUCTION_LOSSES, masked_reconstruction_loss


@contextmanager
def eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """`module` in eval mode for the block (no dropout, a VAE's mean as its latent), then back in
    the mode it was in: inference in the middle of training leaves training as it was."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)


class Autoencoder(nn.Module):
    """Base class: subclasses implement `encode` and `decode`; the rest is shared."""

    #: True for models that need every series at one length (`data.fixed_length`).
    needs_fixed_length: bool = False

    def __init__(self, spec: DataSpec, loss: str = "mse"):
        super().__init__()
        if loss == "auto":  # BCE on data in [0, 1] (images), MSE otherwise
            loss = "bce" if spec.unit_range else "mse"
        if loss not in RECONSTRUCTION_LOSSES:
            raise ValueError(f"unknown reconstruction loss {loss!r}; choose one of {RECONSTRUCTION_LOSSES}")
        if loss == "bce" and not spec.unit_range:
            raise ValueError("model.loss=bce needs data in [0, 1] — set data.normalize=minmax "
                             "or choose model.loss=mse")
        self.spec = spec
        self.loss_kind = loss
        if self.needs_fixed_length and spec.fixed_length is None:
            raise ValueError(f"{type(self).__name__} needs series of one length, but these vary "
                             f"(up to {spec.max_length}) — set data.fixed_length=<steps>")

    # -- to implement -------------------------------------------------------------------------
    def encode(self, batch: Batch) -> Tensor:
        """[B, latent] from a padded batch; must ignore padded steps."""
        raise NotImplementedError

    def decode(self, latent: Tensor, lengths: Tensor) -> Tensor:
        """[B, max(lengths), C] reconstruction (logits when the loss is BCE)."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------------
    def forward(self, batch: Batch) -> dict[str, Tensor]:
        latent = self.encode(batch)
        return {"latent": latent, "recon": self.decode(latent, batch.lengths)}

    def loss(self, batch: Batch, output: dict[str, Tensor]) -> dict[str, Tensor]:
        """{"loss": the scalar to minimise, ...named components}."""
        rec = masked_reconstruction_loss(output["recon"], batch.values, batch.mask, self.loss_kind)
        return {"loss": rec, "recon_loss": rec}

    def output_to_values(self, recon: Tensor) -> Tensor:
        """Map the decoder output to data space (sigmoid for BCE logits)."""
        return torch.sigmoid(recon) if self.loss_kind == "bce" else recon

    def on_epoch_start(self, epoch: int) -> None:
        """Hook for schedules that depend on the epoch (e.g. a KL warm-up); default: nothing."""

    @torch.no_grad()
    def get_latent(self, batch: Batch) -> Tensor:
        """Deterministic latent (eval mode, no grad); restores the previous mode."""
        with eval_mode(self):
            return self.encode(batch)

    @torch.no_grad()
    def reconstruct(self, batch: Batch) -> Tensor:
        with eval_mode(self):
            return self.output_to_values(self.forward(batch)["recon"])
