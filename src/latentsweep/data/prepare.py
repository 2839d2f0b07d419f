"""From a raw SeriesSet to train/validation sets a model can use.

Order: non-finite check -> min_length filter -> optional resampling to a fixed length ->
seeded split (or the source's own split) -> normalisation fitted on the training split only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import DataError
from .series import DataSpec, SeriesSet

log = logging.getLogger(__name__)

NORMALISATIONS = ("none", "zscore", "global", "minmax")


@dataclass
class PreparedData:
    train: SeriesSet
    val: SeriesSet
    spec: DataSpec
    report: dict  # what preparation dropped/changed, logged as run parameters


def _handle_nonfinite(data: SeriesSet, drop: bool) -> tuple[SeriesSet, int]:
    finite_rows = torch.isfinite(data.values).all(dim=1)
    n_bad = int((~torch.isfinite(data.values)).sum())
    if n_bad == 0:
        return data, 0
    bad_rows = (~finite_rows).nonzero().flatten()
    series_of_row = torch.bucketize(bad_rows, data.offsets[1:], right=True)
    n_series = int(series_of_row.unique().numel())
    first = int(series_of_row[0])
    step = int(bad_rows[0] - data.offsets[first])
    if not drop:
        raise DataError(f"{n_bad} NaN/inf values in {n_series} series (first: series "
                        f"{data.ids[first]!r} at step {step}) — clean them or set "
                        "data.drop_nonfinite=true to drop those time steps")
    kept = [s[torch.isfinite(s).all(dim=1)] for s in data.series_list()]
    log.warning("dropped %d non-finite time steps in %d series", int((~finite_rows).sum()), n_series)
    return data.with_series(kept), int((~finite_rows).sum())


def resample(series: torch.Tensor, length: int) -> torch.Tensor:
    """Linear interpolation of a [T, C] series to [length, C]."""
    if series.shape[0] == length:
        return series
    if series.shape[0] == 1:
        return series.expand(length, -1).clone()
    x = series.T.unsqueeze(0)  # [1, C, T]
    return F.interpolate(x, size=length, mode="linear", align_corners=True)[0].T.contiguous()


def _split(data: SeriesSet, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    if data.split is not None:
        train = [i for i, s in enumerate(data.split) if s == "train"]
        val = [i for i, s in enumerate(data.split) if s != "train"]
        if train and val:
            return train, val
    n = len(data)
    if n < 2:
        raise DataError(f"only {n} usable series: need at least 2 for a train/validation split "
                        "— add series or lower data.min_length")
    n_val = min(max(1, round(n * val_fraction)), n - 1)
    perm = np.random.default_rng(seed).permutation(n)
    return sorted(perm[n_val:].tolist()), sorted(perm[:n_val].tolist())


def _normalise(train: SeriesSet, val: SeriesSet, how: str) -> tuple[SeriesSet, SeriesSet, dict]:
    if how == "none":
        return train, val, {}
    if how == "zscore":
        def per_series(s: torch.Tensor) -> torch.Tensor:
            return (s - s.mean(0)) / s.std(0, unbiased=False).clamp_min(1e-6)
        return (train.with_series([per_series(s) for s in train.series_list()]),
                val.with_series([per_series(s) for s in val.series_list()]), {})
    v = train.values
    if how == "global":
        shift, scale = v.mean(0), v.std(0, unbiased=False).clamp_min(1e-6)
    elif how == "minmax":
        shift, scale = v.min(0).values, (v.max(0).values - v.min(0).values).clamp_min(1e-6)
    else:
        raise DataError(f"unknown data.normalize={how!r} — use one of {NORMALISATIONS}")

    def apply(d: SeriesSet) -> SeriesSet:
        out = (d.values - shift) / scale
        if how == "minmax":
            out = out.clamp(0.0, 1.0)  # validation values outside the training range
        return SeriesSet(out.contiguous(), d.offsets, d.ids, d.labels, d.class_names, d.image_shape, d.split)

    return apply(train), apply(val), {"shift": shift.tolist(), "scale": scale.tolist()}


def prepare(data: SeriesSet, *, min_length: int = 2, val_fraction: float = 0.2, seed: int = 0,
            normalize: str = "global", fixed_length: int | None = None,
            drop_nonfinite: bool = False) -> PreparedData:
    """Check, filter, split and normalise `data`; every problem is a one-line DataError."""
    if len(data) == 0:
        raise DataError("the data source returned no series — check data.path / the source settings")
    data, n_nonfinite = _handle_nonfinite(data, drop_nonfinite)
    lengths = data.lengths
    keep = (lengths >= min_length).nonzero().flatten().tolist()
    n_short = len(data) - len(keep)
    if not keep:
        raise DataError(f"all {len(data)} series are shorter than data.min_length={min_length} "
                        f"(longest: {int(lengths.max())}) — lower data.min_length")
    if n_short:
        log.warning("dropped %d of %d series shorter than data.min_length=%d",
                    n_short, len(data), min_length)
        data = data.subset(keep)
    if fixed_length is not None:
        data = data.with_series([resample(s, fixed_length) for s in data.series_list()])
    train_idx, val_idx = _split(data, val_fraction, seed)
    train, val = data.subset(train_idx), data.subset(val_idx)
    train, val, stats = _normalise(train, val, normalize)
    all_lengths = torch.cat([train.lengths, val.lengths])
    uniform = int(all_lengths.min()) == int(all_lengths.max())
    lo = min(float(train.values.min()), float(val.values.min()))
    hi = max(float(train.values.max()), float(val.values.max()))
    n_classes = len(train.class_names) if train.labels is not None and train.class_names else None
    spec = DataSpec(
        n_channels=train.n_channels,
        max_length=int(all_lengths.max()),
        fixed_length=int(all_lengths[0]) if uniform else None,
        n_classes=n_classes,
        unit_range=lo >= 0.0 and hi <= 1.0,
        image_shape=train.image_shape,
        class_names=tuple(train.class_names) if n_classes else None,
    )
    report = {"n_train": len(train), "n_val": len(val), "dropped_short": n_short,
              "dropped_nonfinite_steps": n_nonfinite, "normalize_stats": stats}
    return PreparedData(train, val, spec, report)
