"""Schemas for the zoo config groups; merged into the ConfigStore by `registry.register_configs`.

One dataclass per `conf/model/<name>.yaml`. `check()` rejects impossible values at start-up with
a one-line ConfigError naming the key; checks that need the data (e.g. how far a conv stack may
downsample `data.fixed_length`) happen in the model and reach the user through `build_model`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from . import checks
from .checks import MAX_WIDTH
from .schema import ModelConfig, RNNAEConfig

ACTIVATIONS = ("relu", "leaky_relu", "gelu")


@dataclass
class ConvAEConfig(ModelConfig):
    _target_: str = "latentsweep.models.conv_ae.ConvAutoencoder"
    channels: list[int] | None = None  # explicit widths per block; null: base_channels doubling
    base_channels: int = 16
    n_blocks: int = 3
    kernel_size: int = 5
    stride: int = 2
    pooling: str = "stride"
    latent_dim: int = 16
    activation: str = "relu"
    length: int | None = None  # resample inside the model (variable-length data); null: data.fixed_length
    duration_weight: float = 0.0  # > 0 (needs length): the latent must predict each series' log duration

    def check(self) -> None:
        super().check()
        if self.length is not None:
            checks.positive("model.length", self.length, upper=1_000_000)
        if self.duration_weight < 0 or (self.duration_weight > 0 and self.length is None):
            raise ConfigError(f"model.duration_weight={self.duration_weight} must be >= 0 and needs model.length "
                              "— e.g. model.length=64 model.duration_weight=1")
        if self.channels is not None:
            if len(self.channels) == 0:
                raise ConfigError("model.channels is empty — give one width per block, e.g. "
                                  "model.channels=[16,32,64], or null to use base_channels")
            for i, width in enumerate(self.channels):
                checks.positive(f"model.channels[{i}]", width, upper=MAX_WIDTH)
        checks.positive("model.base_channels", self.base_channels, upper=MAX_WIDTH)
        checks.positive("model.n_blocks", self.n_blocks, upper=32)
        checks.positive("model.kernel_size", self.kernel_size, upper=4096)
        if self.kernel_size % 2 == 0:
            raise ConfigError(f"model.kernel_size={self.kernel_size} must be odd — e.g. "
                              f"model.kernel_size={self.kernel_size + 1}")
        checks.positive("model.stride", self.stride, upper=64)
        checks.one_of("model.pooling", self.pooling, ("stride", "max", "avg"))
        checks.positive("model.latent_dim", self.latent_dim, upper=MAX_WIDTH)
        checks.one_of("model.activation", self.activation, ACTIVATIONS)


@dataclass
class MLPAEConfig(ModelConfig):
    _target_: str = "latentsweep.models.mlp_ae.MLPAutoencoder"
    loss: str = "auto"
    latent_dim: int = 8
    hidden_sizes: list[int] | None = None  # null: halve from the input size down to latent_dim
    activation: str = "relu"

    def check(self) -> None:
        super().check()
        checks.positive("model.latent_dim", self.latent_dim, upper=MAX_WIDTH)
        for i, width in enumerate(self.hidden_sizes or []):
            checks.positive(f"model.hidden_sizes[{i}]", width, upper=MAX_WIDTH)
        checks.one_of("model.activation", self.activation, ACTIVATIONS)


@dataclass
class HighwayAEConfig(ModelConfig):
    _target_: str = "latentsweep.models.highway_ae.HighwayAutoencoder"
    loss: str = "auto"
    width: int = 64
    n_highway: int = 3
    latent_dim: int = 8
    gate_bias: float = -2.0

    def check(self) -> None:
        super().check()
        checks.positive("model.width", self.width, upper=MAX_WIDTH)
        if not 0 <= self.n_highway <= 256:
            raise ConfigError(f"model.n_highway must be in [0, 256], got {self.n_highway}")
        checks.positive("model.latent_dim", self.latent_dim, upper=MAX_WIDTH)


@dataclass
class VRAEConfig(RNNAEConfig):
    _target_: str = "latentsweep.models.vrae.VRAE"
    hidden_size: int = 64  # as conf/model/vrae.yaml
    latent_dim: int = 16
    beta: float = 1.0
    kl_warmup_epochs: int = 0

    def check(self) -> None:
        super().check()
        checks.non_negative("model.beta", self.beta)
        checks.non_negative("model.kl_warmup_epochs", self.kl_warmup_epochs)


@dataclass
class TransformerAEConfig(ModelConfig):
    _target_: str = "latentsweep.models.transformer_ae.TransformerAutoencoder"
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    dim_feedforward: int = 128
    dropout: float = 0.0
    latent_dim: int = 16
    pooling: str = "mean"
    decoder_layers: int = 1

    def check(self) -> None:
        super().check()
        checks.positive("model.d_model", self.d_model, upper=MAX_WIDTH)
        checks.positive("model.n_heads", self.n_heads, upper=1024)
        if self.d_model % self.n_heads:
            raise ConfigError(f"model.d_model={self.d_model} is not divisible by model.n_heads={self.n_heads} "
                              f"— e.g. model.d_model={max(self.n_heads, self.d_model - self.d_model % self.n_heads)}")
        checks.positive("model.n_layers", self.n_layers, upper=64)
        checks.positive("model.dim_feedforward", self.dim_feedforward, upper=MAX_WIDTH)
        checks.fraction("model.dropout", self.dropout)
        checks.positive("model.latent_dim", self.latent_dim, upper=MAX_WIDTH)
        checks.one_of("model.pooling", self.pooling, ("mean", "token"))
        if not 0 <= self.decoder_layers <= 64:
            raise ConfigError(f"model.decoder_layers must be in [0, 64], got {self.decoder_layers}")


SCHEMAS: dict[str, dict[str, type]] = {
    "model": {
        "conv_ae": ConvAEConfig,
        "mlp_ae": MLPAEConfig,
        "highway_ae": HighwayAEConfig,
        "vrae": VRAEConfig,
        "transformer_ae": TransformerAEConfig,
    },
}
