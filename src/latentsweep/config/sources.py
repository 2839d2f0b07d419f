"""Schemas for the sources config groups; merged into the ConfigStore by `registry.register_configs`.

Each schema's own fields are passed to its `_target_` source function; the fields inherited from
`DataConfig` (batching, normalisation, fixed_length, ...) are applied by `data.prepare()`.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import ConfigError
from . import checks
from .schema import DataConfig

N_DIGITS = 1797  # images in scikit-learn's bundled digits set


@dataclass
class DigitsDataConfig(DataConfig):
    """scikit-learn's 8x8 digits in [0, 1], rows-as-sequence (T=8 rows, C=8 columns)."""

    _target_: str = "latentsweep.data.images.load_digits"
    n_samples: int | None = None  # first N of the 1,797 images; null: all
    normalize: str = "none"  # keep [0, 1] so model.loss=auto picks BCE

    def check(self) -> None:
        super().check()
        checks.positive("data.n_samples", self.n_samples, allow_none=True)
        if self.n_samples is not None and not 2 <= self.n_samples <= N_DIGITS:
            raise ConfigError(f"data.n_samples={self.n_samples} must be in 2..{N_DIGITS} (the set "
                              "has 1797 digits) — or null for all")


@dataclass
class MnistDataConfig(DataConfig):
    """MNIST 28x28 in [0, 1], rows-as-sequence, official train/test split kept (validation from train)."""

    _target_: str = "latentsweep.data.mnist.load_mnist"
    root: str = "data"  # the IDX files in root/ or root/MNIST/raw/ (torchvision's layout)
    download: bool = False  # needs torchvision and a network
    limit: int | None = None  # first N of each split; null: all 60,000 + 10,000
    normalize: str = "none"
    batch_size: int = 128

    def check(self) -> None:
        super().check()
        checks.positive("data.limit", self.limit, allow_none=True)


@dataclass
class UcrDataConfig(DataConfig):
    """A UCR/UEA archive problem from `<name>_TRAIN.ts` / `<name>_TEST.ts`."""

    _target_: str = "latentsweep.data.ucr.load_ucr"
    name: str = "ArrowHead"
    path: str | None = None  # folder with the .ts files; null: the copies bundled with aeon
    missing: str = "interpolate"  # interpolate | drop | error | keep (after cutting NaN padding)
    official_split: bool = True  # TRAIN -> train + val (val_fraction), TEST held out; false: pool both

    def check(self) -> None:
        super().check()
        checks.one_of("data.missing", self.missing, ("interpolate", "drop", "error", "keep"))
        if not self.name or "/" in self.name or "\\" in self.name:
            raise ConfigError(f"data.name={self.name!r} must be a problem name such as ArrowHead "
                              "— put folders in data.path")


SCHEMAS: dict[str, dict[str, type]] = {
    "data": {"digits": DigitsDataConfig, "mnist": MnistDataConfig, "ucr": UcrDataConfig},
}
