"""In-memory containers for variable-length multichannel series.

All series of a data set live in one concatenated tensor with offsets, so a batch is a few
slices and one pad (no per-item Python objects, no worker processes needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from torch import Tensor


@dataclass
class SeriesSet:
    """N series of shape [T_i, C], stored as `values` [sum T_i, C] with `offsets` [N + 1]."""

    values: Tensor
    offsets: Tensor
    ids: list[str]
    labels: Tensor | None = None
    class_names: list[str] | None = None
    image_shape: tuple[int, int] | None = None
    # Optional split given by the source: "train"/"test" for an official TRAIN/TEST (UCR, MNIST;
    # prepare() carves validation from "train"), or "train"/"val" for a given validation split.
    split: list[str] | None = None

    @classmethod
    def from_arrays(
        cls,
        series: Sequence[np.ndarray | Tensor],
        ids: Sequence[str] | None = None,
        labels: Sequence | None = None,
        class_names: Sequence[str] | None = None,
        image_shape: tuple[int, int] | None = None,
        split: Sequence[str] | None = None,
    ) -> SeriesSet:
        """Build from a list of [T_i] or [T_i, C] arrays; string labels become class indices."""
        tensors = [torch.as_tensor(np.asarray(s, dtype=np.float32)) for s in series]
        tensors = [t.unsqueeze(-1) if t.ndim == 1 else t for t in tensors]
        lengths = torch.tensor([t.shape[0] for t in tensors], dtype=torch.long)
        offsets = torch.zeros(len(tensors) + 1, dtype=torch.long)
        offsets[1:] = torch.cumsum(lengths, 0)
        n_channels = tensors[0].shape[1] if tensors else 1
        values = torch.cat(tensors, 0) if tensors else torch.zeros(0, n_channels)
        label_tensor = None
        if labels is not None:
            labels = list(labels)
            integer = all(isinstance(x, (int, np.integer)) for x in labels)
            if integer and class_names is not None:  # indices into the given class names
                label_tensor = torch.tensor([int(x) for x in labels], dtype=torch.long)
            elif class_names is None:
                class_names = sorted({str(x) for x in labels}, key=_natural_key)
            if label_tensor is None:
                index = {name: i for i, name in enumerate(class_names)}
                label_tensor = torch.tensor([index[str(x)] for x in labels], dtype=torch.long)
        return cls(
            values=values.contiguous(),
            offsets=offsets,
            ids=[str(i) for i in ids] if ids is not None else [str(i) for i in range(len(tensors))],
            labels=label_tensor,
            class_names=list(class_names) if class_names is not None else None,
            image_shape=image_shape,
            split=list(split) if split is not None else None,
        )

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> Tensor:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    @property
    def lengths(self) -> Tensor:
        return self.offsets[1:] - self.offsets[:-1]

    @property
    def n_channels(self) -> int:
        return int(self.values.shape[1])

    def series_list(self) -> list[Tensor]:
        return [self[i] for i in range(len(self))]

    def subset(self, indices: Sequence[int] | Tensor) -> SeriesSet:
        idx = [int(i) for i in indices]
        return replace(
            SeriesSet.from_arrays(
                [self[i] for i in idx],
                ids=[self.ids[i] for i in idx],
                image_shape=self.image_shape,
                split=[self.split[i] for i in idx] if self.split is not None else None,
            ),
            labels=self.labels[idx] if self.labels is not None else None,
            class_names=self.class_names,
        )

    def with_series(self, series: Sequence[Tensor]) -> SeriesSet:
        """Same ids/labels/split, new values (after resampling or normalisation)."""
        rebuilt = SeriesSet.from_arrays(series, ids=self.ids, image_shape=self.image_shape,
                                        split=self.split)
        return replace(rebuilt, labels=self.labels, class_names=self.class_names)

    def to(self, device: torch.device | str) -> SeriesSet:
        return replace(self, values=self.values.to(device))


def _natural_key(text: str):
    return [int(t) if t.isdigit() else t for t in __import__("re").split(r"(\d+)", text)]


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about its input, derived from the training data."""

    n_channels: int
    max_length: int
    fixed_length: int | None = None  # every series has exactly this length
    n_classes: int | None = None
    unit_range: bool = False  # values scaled to [0, 1]: BCE and sigmoid outputs make sense
    image_shape: tuple[int, int] | None = None
    class_names: tuple[str, ...] | None = field(default=None)

    def as_dict(self) -> dict:
        return {
            "n_channels": self.n_channels,
            "max_length": self.max_length,
            "fixed_length": self.fixed_length,
            "n_classes": self.n_classes,
            "unit_range": self.unit_range,
            "image_shape": list(self.image_shape) if self.image_shape else None,
            "class_names": list(self.class_names) if self.class_names else None,
        }

    @classmethod
    def from_dict(cls, d: dict) -> DataSpec:
        d = dict(d)
        if d.get("image_shape") is not None:
            d["image_shape"] = tuple(d["image_shape"])
        if d.get("class_names") is not None:
            d["class_names"] = tuple(d["class_names"])
        return cls(**d)
