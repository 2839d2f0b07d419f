"""Transformer autoencoder, exact on variable lengths.

Encoder: per-step linear embedding + sinusoidal positions -> `nn.TransformerEncoder` over the
padded batch with a key-padding mask from `batch.mask`, so no valid step attends to padding ->
pooled to one vector -> linear to the latent. Pooling (`pooling`):
- `mean`: mean over each series' valid steps (the mask, never the values, decides which);
- `token`: a learned summary token prepended to every series ([CLS]-style); its final state is
  the summary, and it attends only to valid steps.

Decoder: every step t of a series of length T_i gets [projected latent + position t]; a small
transformer (`decoder_layers`, masked the same way) lets the steps coordinate, then a per-step
MLP maps to the channels. With `decoder_layers: 0` the decoder is that per-step MLP alone.
Either way a step's output depends only on the latent and valid steps of its own series.

Pre-norm layers (`norm_first`) train stably without a learning-rate warm-up, which matters for
short sweep trials.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..data.batching import Batch, lengths_to_mask
from ..data.series import DataSpec
from .base import Autoencoder
from .common import sinusoidal_encoding

POOLINGS = ("mean", "token")


def check_heads(d_model: int, n_heads: int) -> None:
    if d_model % n_heads:
        raise ValueError(f"model.d_model={d_model} is not divisible by model.n_heads={n_heads} "
                         f"— e.g. model.d_model={max(n_heads, d_model - d_model % n_heads)}")


def transformer(d_model: int, n_heads: int, n_layers: int, dim_feedforward: int, dropout: float):
    layer = nn.TransformerEncoderLayer(d_model, n_heads, dim_feedforward, dropout, batch_first=True,
                                       norm_first=True)
    return nn.TransformerEncoder(layer, n_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False)


class TransformerAutoencoder(Autoencoder):
    def __init__(self, spec: DataSpec, d_model: int = 64, n_heads: int = 4, n_layers: int = 2,
                 dim_feedforward: int = 128, dropout: float = 0.0, latent_dim: int = 16,
                 pooling: str = "mean", decoder_layers: int = 1, loss: str = "mse"):
        super().__init__(spec, loss)
        for name, value in (("d_model", d_model), ("n_heads", n_heads), ("n_layers", n_layers),
                            ("dim_feedforward", dim_feedforward), ("latent_dim", latent_dim)):
            if value < 1:
                raise ValueError(f"model.{name} must be >= 1, got {value}")
        if decoder_layers < 0:
            raise ValueError(f"model.decoder_layers must be >= 0, got {decoder_layers}")
        check_heads(d_model, n_heads)
        if pooling not in POOLINGS:
            raise ValueError(f"unknown model.pooling={pooling!r}; choose one of {POOLINGS}")
        self.d_model, self.latent_dim, self.pooling = d_model, latent_dim, pooling
        self.embed = nn.Linear(spec.n_channels, d_model)
        self.encoder = transformer(d_model, n_heads, n_layers, dim_feedforward, dropout)
        if pooling == "token":
            self.summary_token = nn.Parameter(torch.randn(1, 1, d_model) * 0.02)
        self.to_latent = nn.Linear(d_model, latent_dim)
        self.from_latent = nn.Linear(latent_dim, d_model)
        self.decoder = (transformer(d_model, n_heads, decoder_layers, dim_feedforward, dropout)
                        if decoder_layers else None)
        self.head = nn.Sequential(nn.Linear(d_model, dim_feedforward), nn.GELU(),
                                  nn.Linear(dim_feedforward, spec.n_channels))

    def _positions(self, length: int, like: Tensor) -> Tensor:
        return sinusoidal_encoding(length, self.d_model, device=like.device, dtype=like.dtype)

    def encode(self, batch: Batch) -> Tensor:
        x = self.embed(batch.values)
        x = x + self._positions(x.shape[1], x)
        mask = batch.mask
        if self.pooling == "token":
            token = self.summary_token.expand(x.shape[0], -1, -1).to(x.dtype)
            x = torch.cat([token, x], dim=1)
            mask = torch.cat([mask.new_ones(mask.shape[0], 1), mask], dim=1)
        h = self.encoder(x, src_key_padding_mask=~mask)
        if self.pooling == "token":
            pooled = h[:, 0]
        else:
            m = mask.unsqueeze(-1).to(h.dtype)
            pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        return self.to_latent(pooled)

    def decode(self, latent: Tensor, lengths: Tensor) -> Tensor:
        total = int(lengths.max())
        x = self.from_latent(latent).unsqueeze(1)  # [B, 1, d]
        x = x + self._positions(total, x).unsqueeze(0)  # [B, T, d]
        if self.decoder is not None:
            mask = lengths_to_mask(lengths, total, device=latent.device)
            x = self.decoder(x, src_key_padding_mask=~mask)
        return self.head(x)
