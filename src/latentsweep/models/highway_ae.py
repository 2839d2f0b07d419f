"""Autoencoder built from highway layers (Srivastava et al. 2015) on the flattened series.

A highway layer computes y = H(x) * T(x) + x * (1 - T(x)) with H = ReLU(linear) and the gate
T = sigmoid(linear). With the gate bias negative (`gate_bias`, e.g. -2) every layer starts close
to the identity, so gradients reach the first layers however deep the stack is: going from 5
to 10 layers (`n_highway`) is one override, with no change in how training starts.

Layout of each side: a linear projection into `width` (ReLU), `n_highway` highway layers, a
linear projection out (to the latent for the encoder; to the flattened series for the decoder).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ..data.series import DataSpec
from .common import FlatAutoencoder


class HighwayLayer(nn.Module):
    def __init__(self, width: int, gate_bias: float = -2.0):
        super().__init__()
        self.transform = nn.Linear(width, width)
        self.gate = nn.Linear(width, width)
        nn.init.constant_(self.gate.bias, gate_bias)

    def forward(self, x: Tensor) -> Tensor:
        t = torch.sigmoid(self.gate(x))
        return torch.relu(self.transform(x)) * t + x * (1.0 - t)


def highway_stack(n_in: int, width: int, n_out: int, n_highway: int, gate_bias: float) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, width), nn.ReLU(),
                         *[HighwayLayer(width, gate_bias) for _ in range(n_highway)],
                         nn.Linear(width, n_out))


class HighwayAutoencoder(FlatAutoencoder):
    def __init__(self, spec: DataSpec, width: int = 64, n_highway: int = 3, latent_dim: int = 8,
                 gate_bias: float = -2.0, loss: str = "auto"):
        super().__init__(spec, latent_dim, loss)
        if width < 1:
            raise ValueError(f"model.width must be >= 1, got {width}")
        if n_highway < 0:
            raise ValueError(f"model.n_highway must be >= 0, got {n_highway}")
        self.width, self.n_highway = width, n_highway
        self.encoder = highway_stack(self.input_size, width, latent_dim, n_highway, gate_bias)
        self.decoder = highway_stack(latent_dim, width, self.input_size, n_highway, gate_bias)

    def highway_layers(self) -> list[HighwayLayer]:
        return [m for m in self.modules() if isinstance(m, HighwayLayer)]
