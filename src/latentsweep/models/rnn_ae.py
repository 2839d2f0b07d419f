"""Recurrent (GRU/LSTM) autoencoder, exact on variable-length series.

Two ways to run a batch, with the same weights and the same results on valid steps:
- `padded`: run the RNN over the zero-padded batch, read the encoder's top-layer output at
  each series' last valid step, run the (unidirectional) decoder to the batch's longest length
  and let the masked loss ignore the rest. Valid outputs never depend on later (padded) steps.
- `packed`: `PackedSequence`s, so the RNN never computes on padding. Needed for bidirectional
  encoders, whose backward direction would otherwise start on padding.

`auto` picks `padded` for unidirectional encoders on every device: measured faster than packed
on a 2-core CPU (1.8 s vs 5.6 s per epoch, bucketed) and on an H100 (0.143 s vs 0.66 s) in the
issue-9 prototype; `make bench` re-measures it (`benchmarks/bench_batching.py`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from .. import choices
from ..data.batching import Batch, to_device_async
from ..data.series import DataSpec
from .base import Autoencoder

CELLS = {"gru": nn.GRU, "lstm": nn.LSTM}


def last_valid_step(outputs: Tensor, lengths: Tensor) -> Tensor:
    """outputs [B, T, H] -> [B, H] taken at index lengths-1 of each series."""
    idx = (to_device_async(lengths, outputs.device) - 1).view(-1, 1, 1).expand(-1, 1, outputs.shape[-1])
    return outputs.gather(1, idx).squeeze(1)


def relative_time(lengths: Tensor, total: int, like: Tensor) -> Tensor:
    """[B, total, 1]: step t of a series of length L as t / (L - 1), 0 to 1 over its own length.

    Tells the decoder where in the series it is, so one latent can describe an event that a
    longer recording samples more densely. Steps past a series' end get values > 1; they are
    padding and masked out of the loss.
    """
    steps = torch.arange(total, device=like.device, dtype=like.dtype).unsqueeze(0)
    span = (to_device_async(lengths, like.device).to(like.dtype) - 1).clamp_min(1).unsqueeze(1)
    return (steps / span).unsqueeze(-1)


class RNNAutoencoder(Autoencoder):
    def __init__(self, spec: DataSpec, hidden_size: int = 64, latent_dim: int = 16, num_layers: int = 1,
                 cell: str = "gru", bidirectional: bool = False, dropout: float = 0.0,
                 loss: str = "mse", sequence_path: str = "auto", time_input: bool = True):
        super().__init__(spec, loss)
        cell = cell.lower()
        if cell not in CELLS:
            raise ValueError(f"unknown model.cell={cell!r}; choose one of {sorted(CELLS)}")
        for name, value in (("hidden_size", hidden_size), ("latent_dim", latent_dim), ("num_layers", num_layers)):
            if value < 1:
                raise ValueError(f"model.{name} must be >= 1, got {value}")
        self.cell, self.hidden_size, self.num_layers = cell, hidden_size, num_layers
        self.bidirectional = bidirectional
        self.sequence_path = choices.sequence_path(sequence_path, bidirectional)
        rnn = CELLS[cell]
        layer_dropout = dropout if num_layers > 1 else 0.0
        directions = 2 if bidirectional else 1
        self.encoder = rnn(spec.n_channels, hidden_size, num_layers, batch_first=True,
                           dropout=layer_dropout, bidirectional=bidirectional)
        self.to_latent = nn.Linear(hidden_size * directions, latent_dim)
        n_states = 2 if cell == "lstm" else 1
        self.to_initial_state = nn.Linear(latent_dim, n_states * num_layers * hidden_size)
        self.time_input = time_input
        self.decoder = rnn(latent_dim + int(time_input), hidden_size, num_layers, batch_first=True,
                           dropout=layer_dropout)
        self.head = nn.Linear(hidden_size, spec.n_channels)

    # -- encoder -------------------------------------------------------------------------------
    def _summary_packed(self, batch: Batch) -> Tensor:
        packed = pack_padded_sequence(batch.values, batch.lengths, batch_first=True, enforce_sorted=False)
        _, state = self.encoder(packed)
        h_n = state[0] if self.cell == "lstm" else state  # [layers * dirs, B, H]
        if self.bidirectional:
            return torch.cat([h_n[-2], h_n[-1]], dim=-1)
        return h_n[-1]

    def _summary_padded(self, batch: Batch) -> Tensor:
        outputs, _ = self.encoder(batch.values)
        return last_valid_step(outputs, batch.lengths)

    def summarize(self, batch: Batch) -> Tensor:
        """[B, H * directions]: the encoder's summary of each series, on the chosen path."""
        return self._summary_packed(batch) if self.sequence_path == "packed" else self._summary_padded(batch)

    def encode(self, batch: Batch) -> Tensor:
        return self.to_latent(self.summarize(batch))

    # -- decoder -------------------------------------------------------------------------------
    def _initial_state(self, latent: Tensor):
        b = latent.shape[0]
        flat = torch.tanh(self.to_initial_state(latent))
        states = flat.view(b, -1, self.num_layers, self.hidden_size).permute(1, 2, 0, 3).contiguous()
        return (states[0], states[1]) if self.cell == "lstm" else states[0]

    def decode(self, latent: Tensor, lengths: Tensor) -> Tensor:
        total = int(lengths.max())
        inputs = latent.unsqueeze(1).expand(-1, total, -1)
        if self.time_input:
            inputs = torch.cat([inputs, relative_time(lengths, total, latent)], dim=-1)
        state = self._initial_state(latent)
        if self.sequence_path == "packed":
            packed = pack_padded_sequence(inputs, lengths.cpu(), batch_first=True, enforce_sorted=False)
            out, _ = self.decoder(packed, state)
            out, _ = pad_packed_sequence(out, batch_first=True, total_length=total)
        else:
            out, _ = self.decoder(inputs.contiguous(), state)
        return self.head(out)
