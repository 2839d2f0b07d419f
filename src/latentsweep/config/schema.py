"""Structured-config schemas of the core config groups (zoo, sources and tasks have their own modules).

Each YAML file under `conf/<group>/` starts from one of these schemas (`config.registry` stores
them in Hydra's ConfigStore), so a misspelled key or a wrong type fails at composition, and
`check()` rejects impossible values at start-up with a one-line message naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING, DictConfig, OmegaConf

from .. import choices
from . import checks
from .checks import MAX_WIDTH


# --- model --------------------------------------------------------------------------------------
@dataclass
class ModelConfig:
    _target_: str = MISSING
    loss: str = "mse"

    def check(self) -> None:
        checks.one_of("model.loss", self.loss, ("auto", *choices.LOSSES))


@dataclass
class RNNAEConfig(ModelConfig):
    _target_: str = "latentsweep.models.rnn_ae.RNNAutoencoder"
    hidden_size: int = 128  # as conf/model/rnn_ae.yaml (the best sizes measured: benchmarks/results/first-run/)
    latent_dim: int = 32
    num_layers: int = 1
    cell: str = "gru"
    bidirectional: bool = False
    dropout: float = 0.0
    sequence_path: str = "auto"
    time_input: bool = True

    def check(self) -> None:
        super().check()
        checks.positive("model.hidden_size", self.hidden_size, upper=MAX_WIDTH)
        checks.positive("model.latent_dim", self.latent_dim, upper=MAX_WIDTH)
        checks.positive("model.num_layers", self.num_layers, upper=64)
        checks.one_of("model.cell", self.cell, ("gru", "lstm"))
        checks.fraction("model.dropout", self.dropout)
        checks.rule(choices.sequence_path, self.sequence_path, self.bidirectional)


# --- data ---------------------------------------------------------------------------------------
@dataclass
class DataConfig:
    """Fields here are shared by every source; a subclass's own fields go to its `_target_`."""

    _target_: str = MISSING
    batch_size: int = 64
    batching: str = "bucket"  # bucket | random
    bucket_pool: int = 16  # batches per sorted pool when bucketing
    val_fraction: float = 0.2  # of the official TRAIN split when the source has one (UCR, MNIST)
    test_fraction: float = 0.0  # sources without an official TEST: a seeded held-out part for analyze.py
    min_length: int = 8
    normalize: str = "global"  # none | zscore (per series) | global | minmax
    fixed_length: int | None = None
    # Resample to this many steps only when the series' lengths differ (and fixed_length is null):
    # what the search files of fixed-length families (conv, MLP, highway) search, so they take
    # variable-length data in a family sweep and leave equal-length data (images, ArrowHead) alone.
    fixed_length_if_variable: int | None = None
    drop_nonfinite: bool = False
    on_device: bool = True  # keep the data set on the GPU when training there
    # Drop the source's labels before anything reads them (the split too): a labelled set seen as
    # the unlabelled series it stands in for, to measure label-free selection against its labels.
    hide_labels: bool = False

    def check(self) -> None:
        checks.positive("data.batch_size", self.batch_size, upper=1_000_000)
        checks.one_of("data.batching", self.batching, ("bucket", "random"))
        checks.positive("data.bucket_pool", self.bucket_pool)
        checks.fraction("data.val_fraction", self.val_fraction)
        checks.fraction("data.test_fraction", self.test_fraction)
        if self.val_fraction + self.test_fraction >= 1.0:
            from ..errors import ConfigError

            raise ConfigError(f"data.val_fraction + data.test_fraction = {self.val_fraction + self.test_fraction:g} "
                              "leaves no training series — keep their sum below 1")
        checks.positive("data.min_length", self.min_length)
        checks.one_of("data.normalize", self.normalize, choices.NORMALISATIONS)
        checks.positive("data.fixed_length", self.fixed_length, allow_none=True, upper=10_000_000)
        checks.positive("data.fixed_length_if_variable", self.fixed_length_if_variable, allow_none=True,
                        upper=10_000_000)


COMMON_DATA_FIELDS = frozenset(DataConfig.__dataclass_fields__)


@dataclass
class SyntheticDataConfig(DataConfig):
    _target_: str = "latentsweep.data.synthetic.make_synthetic"
    n_series: int = 1200
    shortest: int = 24
    longest: int = 480
    n_channels: int = 3
    noise: float = 0.15
    seed: int = 0

    def check(self) -> None:
        super().check()
        checks.positive("data.n_series", self.n_series)
        checks.positive("data.n_channels", self.n_channels)
        if not 2 <= self.shortest <= self.longest:
            from ..errors import ConfigError

            raise ConfigError(f"data.shortest={self.shortest} and data.longest={self.longest} must "
                              "satisfy 2 <= shortest <= longest")


@dataclass
class ParquetDataConfig(DataConfig):
    _target_: str = "latentsweep.data.parquet.load_parquet"
    path: str = MISSING
    id_column: str = "series_id"
    value_columns: list[str] | None = None
    time_column: str | None = None
    label_column: str | None = None
    list_column: bool = False


# --- optimizer ----------------------------------------------------------------------------------
@dataclass
class OptimizerConfig:
    _target_: str = MISSING
    _partial_: bool = True
    lr: float = 1e-3
    weight_decay: float = 0.0

    def check(self) -> None:
        checks.positive("optimizer.lr", self.lr, upper=10.0)
        checks.non_negative("optimizer.weight_decay", self.weight_decay)


@dataclass
class AdamConfig(OptimizerConfig):
    _target_: str = "torch.optim.Adam"


@dataclass
class AdamWConfig(OptimizerConfig):
    _target_: str = "torch.optim.AdamW"
    weight_decay: float = 0.01


@dataclass
class SGDConfig(OptimizerConfig):
    _target_: str = "torch.optim.SGD"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False


# --- trainer, tracking, top level ---------------------------------------------------------------
@dataclass
class TrainerConfig:
    max_epochs: int = 20
    patience: int | None = 5  # epochs without validation improvement before stopping
    grad_clip: float | None = 1.0
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: str = "32"  # 32 | bf16 (bf16 autocast, CUDA only)
    num_threads: int | None = None  # torch CPU threads; null: the rule in latentsweep/threads.py
    checkpoint_dir: str | None = None
    checkpoint_every_s: float = 10.0  # write a checkpoint at most this often, and the last epoch (0: every epoch)
    checkpoint_sync_s: float = 30.0  # fsync a checkpoint at most this often (0: every write): what a power loss can cost
    resume: bool = False
    resume_from: str | None = None  # a run's output dir or checkpoint dir
    deterministic: bool = False  # torch.use_deterministic_algorithms: bit-identical resume on CUDA too
    progress: bool | None = None  # tqdm bar; default: only on a terminal
    input_noise: float = 0.0  # > 0: denoising autoencoder, Gaussian noise of this std on training inputs
    ema_decay: float = 0.0  # > 0: validate and keep an exponential moving average of the weights (e.g. 0.99)

    def check(self) -> None:
        checks.positive("trainer.max_epochs", self.max_epochs, upper=1_000_000)
        checks.positive("trainer.patience", self.patience, allow_none=True)
        checks.positive("trainer.grad_clip", self.grad_clip, allow_none=True)
        checks.one_of("trainer.precision", str(self.precision), ("32", "bf16"))
        checks.positive("trainer.num_threads", self.num_threads, allow_none=True)
        checks.non_negative("trainer.input_noise", self.input_noise)
        checks.fraction("trainer.ema_decay", self.ema_decay)  # 1 would never move from the initial weights
        checks.non_negative("trainer.checkpoint_every_s", self.checkpoint_every_s)
        checks.non_negative("trainer.checkpoint_sync_s", self.checkpoint_sync_s)


FIGURE_POLICIES = ("all", "improving", "none")  # tracking.figures (see TrackingConfig)


@dataclass
class TrackingConfig:
    enabled: bool = True
    uri: str | None = None  # default: $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db
    experiment: str = "latentsweep"
    run_name: str | None = None
    log_model: bool = True
    n_reconstructions: int = 6
    figures: str = "improving"  # all | improving (a sweep's trials only when they beat every finished one) | none

    def check(self) -> None:
        checks.one_of("tracking.figures", str(self.figures), FIGURE_POLICIES)
        checks.non_negative("tracking.n_reconstructions", self.n_reconstructions)


# --- the top level of conf/train.yaml -----------------------------------------------------------
DEFAULT_OBJECTIVE = "val_loss"


@dataclass
class SweepJobConfig:
    """What the sweeper tells each of its trial jobs (`++sweep.*`); all null in a single run."""

    storage: str | None = None  # the study's storage URL (absolute)
    study_name: str | None = None
    trial_id: int | None = None  # the Optuna trial this job trains
    trial_number: int | None = None
    pruner: Any = None  # hydra.sweeper.pruner as JSON: the job rebuilds the study's pruner
    heartbeat_interval: int | None = None
    parallel_trials: int | None = None  # trials at once on this machine (torch threads per trial)


@dataclass
class RootConfig:
    """The top level of `conf/train.yaml`: each default here is the only copy of it."""

    model: Any = MISSING
    data: Any = MISSING
    optimizer: Any = MISSING
    trainer: Any = MISSING
    tracking: Any = MISSING
    task: Any = MISSING
    search: Any = None  # conf/search/<model>.yaml: read by the sweeper only
    seed: int = 0
    objective: Any = DEFAULT_OBJECTIVE  # a name, or a list of names (latentsweep.objectives)
    trials_per_gpu: int = 16  # GPU boxes: trial processes sharing each GPU (hydra/launcher=trials)
    sweep: SweepJobConfig = field(default_factory=SweepJobConfig)
    extra_tags: dict[str, Any] = field(default_factory=dict)  # MLflow tags of the run (the sweeper adds its own)


SCHEMAS: dict[str, dict[str, type]] = {
    "root": {"train": RootConfig},
    "model": {"rnn_ae": RNNAEConfig},
    "data": {"synthetic": SyntheticDataConfig, "parquet": ParquetDataConfig},
    "optimizer": {"adam": AdamConfig, "adamw": AdamWConfig, "sgd": SGDConfig},
    "trainer": {"default": TrainerConfig},
    "tracking": {"mlflow": TrackingConfig},
}


def validate(cfg: DictConfig) -> None:
    """Run every group's `check()`; raises ConfigError on the first impossible value."""
    for group in ("model", "data", "optimizer", "trainer", "tracking"):
        node = cfg.get(group)
        if node is None:
            continue
        obj: Any = OmegaConf.to_object(node)
        if hasattr(obj, "check"):
            obj.check()
    seed = cfg.seed
    if not isinstance(seed, int) or seed < 0:
        from ..errors import ConfigError

        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")


__all__ = ["COMMON_DATA_FIELDS", "SCHEMAS", "validate", "field"]
