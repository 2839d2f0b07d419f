"""Variational recurrent autoencoder (Fabius & van Amersfoort 2014), exact on variable lengths.

It is the recurrent autoencoder of `rnn_ae.py` (same encoder, same packed/padded paths, same
decoder: latent -> initial state -> one output per step of each series' own length) with a
Gaussian posterior: the encoder summary gives a mean (`to_latent`, so `encode`/`get_latent`
return it unchanged) and a log-variance (`to_logvar`). Training decodes a reparameterised
sample z = mean + exp(logvar / 2) * eps; evaluation decodes the mean.

Loss scale. The masked reconstruction term is a mean over valid (step, channel) values. The KL
term uses the same denominator: the batch's summed KL divergence (over series and latent
dimensions, in nats) divided by the number of valid values, sum(lengths) * C. So

    loss = recon + beta * kl  ==  (sum of recon + beta * sum of KL) / valid values,

i.e. the negative beta-ELBO per valid value (up to the likelihood's constant): `beta=1` is the
ordinary VAE trade-off whatever the series lengths, and the epoch averages the loop computes
(weighted by valid steps) stay exact.

`kl_warmup_epochs` ramps the KL weight linearly from 0 (epoch 0) to `beta` (epoch
`kl_warmup_epochs`) during training, against posterior collapse. Validation always scores the
full-beta objective, so epochs (and trials with different warm-ups) stay comparable for
early stopping, best-weights selection and sweeps.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..data.batching import Batch
from ..data.series import DataSpec
from .base import eval_mode
from .losses import masked_reconstruction_loss
from .rnn_ae import RNNAutoencoder

LOGVAR_LIMIT = 10.0  # keeps exp(logvar) finite early in training


class VRAE(RNNAutoencoder):
    def __init__(self, spec: DataSpec, hidden_size: int = 64, latent_dim: int = 16, num_layers: int = 1,
                 cell: str = "gru", bidirectional: bool = False, dropout: float = 0.0, loss: str = "mse",
                 sequence_path: str = "auto", beta: float = 1.0, kl_warmup_epochs: int = 0,
                 time_input: bool = True):
        super().__init__(spec, hidden_size=hidden_size, latent_dim=latent_dim, num_layers=num_layers,
                         cell=cell, bidirectional=bidirectional, dropout=dropout, loss=loss,
                         sequence_path=sequence_path, time_input=time_input)
        if beta < 0:
            raise ValueError(f"model.beta must be >= 0, got {beta}")
        if kl_warmup_epochs < 0:
            raise ValueError(f"model.kl_warmup_epochs must be >= 0, got {kl_warmup_epochs}")
        self.latent_dim = latent_dim
        self.beta = float(beta)
        self.kl_warmup_epochs = int(kl_warmup_epochs)
        self.kl_weight = 0.0 if self.kl_warmup_epochs else self.beta  # training weight, see on_epoch_start
        self.to_logvar = nn.Linear(self.to_latent.in_features, latent_dim)

    # -- posterior -------------------------------------------------------------------------------
    def posterior(self, batch: Batch) -> tuple[Tensor, Tensor]:
        """(mean, logvar), each [B, latent]."""
        summary = self.summarize(batch)
        logvar = self.to_logvar(summary).clamp(-LOGVAR_LIMIT, LOGVAR_LIMIT)
        return self.to_latent(summary), logvar

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        mean, logvar = self.posterior(batch)
        z = mean + torch.exp(0.5 * logvar) * torch.randn_like(mean) if self.training else mean
        return {"latent": mean, "z": z, "mean": mean, "logvar": logvar,
                "recon": self.decode(z, batch.lengths)}

    # -- objective -------------------------------------------------------------------------------
    def on_epoch_start(self, epoch: int) -> None:
        if self.kl_warmup_epochs:
            self.kl_weight = self.beta * min(1.0, epoch / self.kl_warmup_epochs)

    def kl_per_value(self, mean: Tensor, logvar: Tensor, lengths: Tensor) -> Tensor:
        """Summed KL(q(z|x) || N(0, I)) of the batch / its number of valid values (see module doc)."""
        mean, logvar = mean.float(), logvar.float()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).sum()
        return kl / (float(lengths.sum()) * self.spec.n_channels)

    def loss(self, batch: Batch, output: dict[str, Tensor]) -> dict[str, Tensor]:
        recon = masked_reconstruction_loss(output["recon"], batch.values, batch.mask, self.loss_kind)
        kl = self.kl_per_value(output["mean"], output["logvar"], batch.lengths)
        weight = self.kl_weight if self.training else self.beta
        return {"loss": recon + weight * kl, "recon_loss": recon, "kl": kl}

    # -- generation ------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, length: int, generator: torch.Generator | None = None) -> Tensor:
        """[n, length, C] series decoded from z ~ N(0, I), in data space."""
        with eval_mode(self):
            device = self.to_latent.weight.device
            z = torch.randn(n, self.latent_dim, generator=generator).to(device)
            lengths = torch.full((n,), int(length), dtype=torch.long)
            return self.output_to_values(self.decode(z, lengths))
