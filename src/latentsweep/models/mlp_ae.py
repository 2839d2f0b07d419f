"""Undercomplete, symmetric feed-forward autoencoder on the flattened series.

The classic baseline: no notion of time beyond "step t has its own weights", so it needs one
length (`data.fixed_length`). By default each hidden layer halves the width from the input
down to the latent (input 64, latent 8: 64 -> 32 -> 16 -> 8), so depth follows the data size
and the bottleneck is reached gradually; `hidden_sizes` overrides the rule. The decoder mirrors
the encoder. Output is linear: logits under BCE (`loss: auto` on data in [0, 1], the usual
sigmoid + cross-entropy setup for images), values under MSE otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..data.series import DataSpec
from .common import FlatAutoencoder, make_activation


def halving_widths(input_size: int, latent_dim: int) -> list[int]:
    """Hidden widths between input and latent: input//2, input//4, ... while still > latent_dim."""
    widths, width = [], input_size // 2
    while width > latent_dim:
        widths.append(width)
        width //= 2
    return widths


def mlp(widths: Sequence[int], activation: str) -> nn.Sequential:
    """Linear layers through `widths`, the nonlinearity after every layer except the last."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(widths) - 2:
            layers.append(make_activation(activation))
    return nn.Sequential(*layers)


class MLPAutoencoder(FlatAutoencoder):
    def __init__(self, spec: DataSpec, latent_dim: int = 8, hidden_sizes: Sequence[int] | None = None,
                 activation: str = "relu", loss: str = "auto"):
        super().__init__(spec, latent_dim, loss)
        make_activation(activation)  # fail early on an unknown name
        if hidden_sizes is None:
            hidden = halving_widths(self.input_size, latent_dim)
        else:
            hidden = [int(w) for w in hidden_sizes]
            if any(w < 1 for w in hidden):
                raise ValueError(f"model.hidden_sizes must all be >= 1, got {hidden}")
        #: the encoder's layer widths, input to latent; the decoder runs them backwards
        self.widths = [self.input_size, *hidden, latent_dim]
        self.activation = activation
        self.encoder = mlp(self.widths, activation)  # linear latent layer
        self.decoder = mlp(self.widths[::-1], activation)  # linear output (logits under BCE)
