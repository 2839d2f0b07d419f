"""Small pieces several zoo models share, kept here so no model copies another.

- `ACTIVATIONS` / `make_activation`: the hidden-layer nonlinearities a config may name.
- `fixed_length_input` / `crop_to_lengths`: how fixed-length models (conv, MLP, highway) read a
  padded `Batch` and hand back `[B, max(lengths), C]`, so padding never reaches them.
- `sinusoidal_encoding`: positions for the transformer, computed for any length (no max length).
- `FlatAutoencoder`: the flatten -> encoder -> latent -> decoder -> unflatten shell shared by
  the feed-forward models; subclasses only build `self.encoder` and `self.decoder`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from ..data.batching import Batch
from ..data.series import DataSpec
from ..errors import DataError, InfeasibleError
from .base import Autoencoder

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU}


def make_activation(name: str) -> nn.Module:
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown model.activation={name!r}; choose one of {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def fixed_length_input(batch: Batch, length: int) -> Tensor:
    """[B, length, C]: the batch with padded steps zeroed, right-padded to `length`.

    Zeroing uses the mask, not the values, so whatever a padded step holds it cannot change
    a latent. Longer series mean the model is fed other data than it was built for.
    """
    values = batch.values * batch.mask.unsqueeze(-1).to(batch.values.dtype)
    steps = values.shape[1]
    if steps > length:
        raise DataError(f"series of {steps} steps reached a model built for data.fixed_length={length} "
                        f"— resample the data with data.fixed_length={length}")
    if steps < length:
        values = nn.functional.pad(values, (0, 0, 0, length - steps))
    return values


def crop_to_lengths(output: Tensor, lengths: Tensor) -> Tensor:
    """[B, L, C] -> [B, max(lengths), C] (the shape `decode` promises)."""
    return output[:, : int(lengths.max())]


def sinusoidal_encoding(length: int, dim: int, device=None, dtype=torch.float32) -> Tensor:
    """[length, dim] sine/cosine positions (Vaswani et al. 2017); works for odd `dim` too."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    freqs = torch.exp(torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim))
    table = torch.zeros(length, dim, device=device, dtype=torch.float32)
    table[:, 0::2] = torch.sin(position * freqs)
    table[:, 1::2] = torch.cos(position * freqs[: dim // 2])
    return table.to(dtype)


class FlatAutoencoder(Autoencoder):
    """Feed-forward AE on the flattened `[T * C]` series; subclasses set `encoder`/`decoder`.

    Flattening ties every weight to a time step, hence `needs_fixed_length`.
    """

    needs_fixed_length = True

    def __init__(self, spec: DataSpec, latent_dim: int, loss: str = "auto"):
        super().__init__(spec, loss)
        if latent_dim < 1:
            raise ValueError(f"model.latent_dim must be >= 1, got {latent_dim}")
        self.length = int(spec.fixed_length)
        self.input_size = self.length * spec.n_channels
        if latent_dim >= self.input_size:
            raise InfeasibleError(f"model.latent_dim={latent_dim} is not smaller than the flattened input "
                             f"({self.length} steps x {spec.n_channels} channels = {self.input_size}) "
                             "— lower model.latent_dim")
        self.latent_dim = latent_dim
        self.encoder: nn.Module
        self.decoder: nn.Module

    def encode(self, batch: Batch) -> Tensor:
        flat = fixed_length_input(batch, self.length).reshape(len(batch), self.input_size)
        return self.encoder(flat)

    def decode(self, latent: Tensor, lengths: Tensor) -> Tensor:
        out = self.decoder(latent).view(latent.shape[0], self.length, self.spec.n_channels)
        return crop_to_lengths(out, lengths)
