"""1-D convolutional autoencoder for series of one length.

Encoder: `n_blocks` blocks of (conv, activation), each shrinking time by `stride` either with a
strided convolution (`pooling: stride`) or a stride-1 convolution followed by max/avg pooling;
then a linear layer from the flattened feature map to the latent. The final linear layer ties
weights to positions, hence `needs_fixed_length`.

Decoder: the mirror image. A linear layer back to the smallest feature map, then per block an
upsampling to exactly the length that block had in the encoder followed by a convolution
(upsample + conv rather than ConvTranspose1d: no checkerboard artefacts, and every stage has
the exact encoder length, so odd lengths need no cropping tricks). The last convolution maps
to the data channels with no activation (logits under BCE).

Padded steps, should a batch hold any, are zeroed on input and masked out of the loss.

Variable-length series (`length`): the model resamples each series to `length` steps itself and
its decoder's output back to each series' own length, so no `data.fixed_length` is needed and
the model still knows how long each series was. With `duration_weight` > 0 it uses that: the
encoder also sees each series' log duration, and the latent must predict it (a loss term of that
weight). Resampling to one length erases durations, and they often tell classes apart (on
PickupGestureWiimoteZ the duration alone classifies 48% of the TEST series, 10 classes).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.batching import Batch
from ..data.series import DataSpec
from ..errors import InfeasibleError
from .base import Autoencoder
from .common import crop_to_lengths, fixed_length_input, make_activation

POOLINGS = ("stride", "max", "avg")


def channel_plan(channels: Sequence[int] | None, base_channels: int, n_blocks: int) -> list[int]:
    """Explicit `channels`, else `base_channels` doubling per block (16, 32, 64, ...)."""
    if channels is not None:
        plan = [int(c) for c in channels]
        if not plan or any(c < 1 for c in plan):
            raise ValueError(f"model.channels must be a non-empty list of positive widths, got {plan}")
        return plan
    if base_channels < 1 or n_blocks < 1:
        raise ValueError(f"model.base_channels and model.n_blocks must be >= 1, got {base_channels}, {n_blocks}")
    return [base_channels * 2**i for i in range(n_blocks)]


def resample_batch(values: Tensor, lengths: Tensor, length: int) -> Tensor:
    """[B, T, C] padded series -> [B, C, length]: each series' valid steps, linearly resampled."""
    out = [F.interpolate(values[i, : int(n)].T.unsqueeze(0), size=length, mode="linear", align_corners=True)
           if int(n) > 1 else values[i, :1].T.unsqueeze(0).expand(-1, -1, length)
           for i, n in enumerate(lengths.tolist())]
    return torch.cat(out)


def resample_back(output: Tensor, lengths: Tensor) -> Tensor:
    """[B, C, length] -> [B, max(lengths), C]: each series at its own length, zero-padded."""
    total = int(lengths.max())
    rows = []
    for i, n in enumerate(lengths.tolist()):
        row = F.interpolate(output[i : i + 1], size=int(n), mode="linear", align_corners=True)[0].T
        rows.append(F.pad(row, (0, 0, 0, total - int(n))))
    return torch.stack(rows)


class ConvAutoencoder(Autoencoder):
    needs_fixed_length = True  # unless `length` is given: then the model resamples itself

    def __init__(self, spec: DataSpec, channels: Sequence[int] | None = None, base_channels: int = 16,
                 n_blocks: int = 3, kernel_size: int = 5, stride: int = 2, pooling: str = "stride",
                 latent_dim: int = 16, activation: str = "relu", loss: str = "mse", length: int | None = None,
                 duration_weight: float = 0.0):
        if length is not None and length < 2:
            raise ValueError(f"model.length must be >= 2 steps, got {length}")
        if duration_weight < 0 or (duration_weight > 0 and length is None):
            raise ValueError(f"model.duration_weight={duration_weight} needs model.length (the model "
                             "resamples, so it knows each duration) and must be >= 0 — e.g. model.length=64")
        self.needs_fixed_length = length is None
        super().__init__(spec, loss)
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"model.kernel_size must be odd and >= 1 (keeps each block centred), got {kernel_size}")
        if stride < 1:
            raise ValueError(f"model.stride must be >= 1, got {stride}")
        if pooling not in POOLINGS:
            raise ValueError(f"unknown model.pooling={pooling!r}; choose one of {POOLINGS}")
        if latent_dim < 1:
            raise ValueError(f"model.latent_dim must be >= 1, got {latent_dim}")
        make_activation(activation)
        self.channels = channel_plan(channels, base_channels, n_blocks)
        self.resamples = length is not None
        self.length = int(length if self.resamples else spec.fixed_length)
        self.duration_weight = float(duration_weight)
        n_blocks = len(self.channels)
        if stride**n_blocks > self.length:
            raise InfeasibleError(f"{n_blocks} blocks of stride {stride} downsample {stride**n_blocks}x, more than "
                             f"data.fixed_length={self.length} steps allow — lower model.n_blocks or model.stride")
        self.latent_dim = latent_dim
        pad = kernel_size // 2
        widths = [spec.n_channels, *self.channels]
        n_inputs = spec.n_channels + int(self.duration_weight > 0)  # + the log-duration channel

        blocks = []
        for c_in, c_out in zip([n_inputs, *self.channels[:-1]], widths[1:]):
            if pooling == "stride":
                layers = [nn.Conv1d(c_in, c_out, kernel_size, stride=stride, padding=pad), make_activation(activation)]
            else:
                pool = nn.MaxPool1d if pooling == "max" else nn.AvgPool1d
                layers = [nn.Conv1d(c_in, c_out, kernel_size, padding=pad), make_activation(activation),
                          pool(stride, ceil_mode=True)]
            blocks.append(nn.Sequential(*layers))
        self.encoder_blocks = nn.ModuleList(blocks)
        #: time steps entering each encoder block, then the bottleneck's: the decoder's targets
        self.stage_lengths = self._trace_lengths()
        flat = self.channels[-1] * self.stage_lengths[-1]
        self.to_latent = nn.Linear(flat, latent_dim)
        self.from_latent = nn.Linear(latent_dim, flat)

        up = []
        for i in range(n_blocks, 0, -1):  # mirror: block i maps widths[i] back to widths[i-1]
            conv = nn.Conv1d(widths[i], widths[i - 1], kernel_size, padding=pad)
            up.append(conv if i == 1 else nn.Sequential(conv, make_activation(activation)))
        self.decoder_blocks = nn.ModuleList(up)
        self.duration_head = nn.Linear(latent_dim, 1) if self.duration_weight > 0 else None

    def log_duration(self, lengths: Tensor, like: Tensor) -> Tensor:
        """[B]: log(steps / length), 0 for a series as long as the model's own length."""
        return torch.log(lengths.to(like.device, like.dtype) / self.length)

    @torch.no_grad()
    def _trace_lengths(self) -> list[int]:
        x = torch.zeros(1, self.spec.n_channels + int(self.duration_weight > 0), self.length)
        lengths = [self.length]
        for block in self.encoder_blocks:
            x = block(x)
            lengths.append(int(x.shape[-1]))
        return lengths

    def encode(self, batch: Batch) -> Tensor:
        if self.resamples:
            x = resample_batch(batch.values, batch.lengths, self.length)  # [B, C, length]
        else:
            x = fixed_length_input(batch, self.length).transpose(1, 2)  # [B, C, T]
        if self.duration_head is not None:
            duration = self.log_duration(batch.lengths, x)
            x = torch.cat([x, duration.view(-1, 1, 1).expand(-1, 1, x.shape[-1])], dim=1)
        for block in self.encoder_blocks:
            x = block(x)
        return self.to_latent(x.flatten(1))

    def decode(self, latent: Tensor, lengths: Tensor) -> Tensor:
        x = self.from_latent(latent).view(latent.shape[0], self.channels[-1], self.stage_lengths[-1])
        targets = self.stage_lengths[-2::-1]  # the length each mirrored block must restore
        for block, size in zip(self.decoder_blocks, targets):
            if x.shape[-1] != size:
                x = F.interpolate(x, size=size, mode="nearest")
            x = block(x)
        if self.resamples:
            return resample_back(x, lengths)
        return crop_to_lengths(x.transpose(1, 2), lengths)

    def loss(self, batch: Batch, output: dict[str, Tensor]) -> dict[str, Tensor]:
        terms = super().loss(batch, output)
        if self.duration_head is not None:
            latent = output["latent"]
            target = self.log_duration(batch.lengths, latent)
            duration = F.mse_loss(self.duration_head(latent).squeeze(-1), target)
            terms["duration_loss"] = duration
            terms["loss"] = terms["loss"] + self.duration_weight * duration
        return terms
