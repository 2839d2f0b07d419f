"""From a raw SeriesSet to train/validation sets a model can use.

Order: non-finite check -> min_length filter -> optional resampling to a fixed length ->
split -> normalisation fitted on the training split only.

The split is honest: a source with an official TEST split (UCR/UEA, MNIST) tags those series
"test", and they are held out whole. Validation (early stopping, the sweep objective, pruning,
the best model) is carved from the official TRAIN series: seeded, stratified by class when
labelled, `val_fraction` of them. TEST reaches only `PreparedData.test`, which training never
reads; `analyze.py` scores on it. Sources without an official split get the seeded
train/validation split, plus a seeded TEST of `test_fraction` of the series when asked.
The resampling length and the fitted stats go into `report["preprocess"]`, saved with the model, so
`preprocess_series` / `prepare_inputs` can prepare new raw series the same way at inference.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..choices import NORMALISATIONS
from ..errors import DataError
from .series import DataSpec, SeriesSet

log = logging.getLogger(__name__)


@dataclass
class PreparedData:
    train: SeriesSet
    val: SeriesSet
    spec: DataSpec
    report: dict  # what preparation dropped/changed, logged as run parameters
    test: SeriesSet | None = None  # held out: never read by training or selection, scored by analyze.py
    # The validation series at their own lengths (before data.fixed_length), normalised like the
    # training data: the reference of the `recon_mse` objective, which compares model families.
    val_native: SeriesSet | None = None

    @property
    def val_reference(self) -> SeriesSet:
        return self.val_native if self.val_native is not None else self.val


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


def _carve(indices: list[int], fraction: float, rng: np.random.Generator,
           labels: torch.Tensor | None) -> tuple[list[int], list[int]]:
    """(kept, carved): `fraction` of `indices` carved out at random, per class when labelled.

    At least one index is carved and one kept, so both parts exist whenever there are two indices.
    """
    n = len(indices)
    if n < 2:
        raise DataError(f"only {n} usable series: need at least 2 for a train/validation split "
                        "— add series or lower data.min_length")
    carved: list[int] = []
    if labels is None:
        order = rng.permutation(n)
        carved = [indices[i] for i in order[: min(max(1, round(n * fraction)), n - 1)]]
    else:
        of = labels[indices].cpu().numpy()
        for cls in np.unique(of):
            members = [indices[i] for i in np.flatnonzero(of == cls)]
            take = round(len(members) * fraction)
            carved += [members[i] for i in rng.permutation(len(members))[:take]]
        if not carved:  # tiny sets: every class rounded to zero
            carved = [indices[int(rng.integers(n))]]
        if len(carved) == n:
            carved = carved[1:]
    chosen = set(carved)
    return sorted(i for i in indices if i not in chosen), sorted(carved)


def _split(data: SeriesSet, val_fraction: float, seed: int,
           test_fraction: float = 0.0) -> tuple[list[int], list[int], list[int]]:
    """(train, val, test) indices; see the module docstring for the rules."""
    rng = np.random.default_rng(seed)
    if data.split is not None:
        train = [i for i, s in enumerate(data.split) if s == "train"]
        val = [i for i, s in enumerate(data.split) if s == "val"]
        test = [i for i, s in enumerate(data.split) if s == "test"]
        if train and val:  # the source gives its own validation split
            return train, val, test
        if train and test:  # official TRAIN/TEST: validation comes from TRAIN only
            train, val = _carve(train, val_fraction, rng, data.labels)
            return train, val, test
    everything = list(range(len(data)))
    test = []
    if test_fraction > 0:  # both fractions are shares of all the series
        everything, test = _carve(everything, test_fraction, rng, None)
        val_fraction = val_fraction / (1.0 - test_fraction)
    train, val = _carve(everything, val_fraction, rng, None)
    return train, val, test


def _zscore(s: torch.Tensor) -> torch.Tensor:
    return (s - s.mean(0)) / s.std(0, unbiased=False).clamp_min(1e-6)


def _fit_stats(train: SeriesSet, how: str) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Per-channel (shift, scale) from the training split; None for the per-series/no-op modes."""
    if how not in NORMALISATIONS:
        raise DataError(f"unknown data.normalize={how!r} — use one of {NORMALISATIONS}")
    if how in ("none", "zscore"):
        return None, None
    v = train.values
    if how == "global":
        return v.mean(0), v.std(0, unbiased=False).clamp_min(1e-6)
    return v.min(0).values, (v.max(0).values - v.min(0).values).clamp_min(1e-6)


def _apply_normalisation(d: SeriesSet, how: str, shift: torch.Tensor | None,
                         scale: torch.Tensor | None) -> SeriesSet:
    """The one normalisation step, shared by training (`prepare`) and new input (`preprocess_series`)."""
    if how == "none":
        return d
    if how == "zscore":
        return d.with_series([_zscore(s) for s in d.series_list()])
    out = (d.values - shift) / scale
    if how == "minmax":
        out = out.clamp(0.0, 1.0)  # values outside the training range
    return SeriesSet(out.contiguous(), d.offsets, d.ids, d.labels, d.class_names, d.image_shape, d.split)


def _normalise(parts: list[SeriesSet], how: str) -> tuple[list[SeriesSet], dict]:
    """Every part normalised with the statistics of the first (the training split)."""
    shift, scale = _fit_stats(parts[0], how)
    stats = {} if shift is None else {"shift": shift.tolist(), "scale": scale.tolist()}
    return [_apply_normalisation(d, how, shift, scale) for d in parts], stats


def preprocess_series(series: Sequence, preprocess: Mapping[str, Any], n_channels: int) -> SeriesSet:
    """Raw [T, C] series (arrays/tensors; [T] for one channel) prepared exactly like the training data.

    `preprocess` is the model config's "preprocess" section (see `prepare`'s report): resampling
    to `fixed_length`, then the training split's shift/scale (global, minmax) or per-series zscore.
    Unlike `prepare`, nothing is dropped or split: the output keeps the input's order.
    """
    tensors = []
    for i, s in enumerate(series):
        t = torch.as_tensor(np.asarray(s, dtype=np.float32))
        t = t.unsqueeze(-1) if t.ndim == 1 else t
        if t.ndim != 2:
            raise DataError(f"series {i} has shape {tuple(t.shape)} — pass [time steps, channels] arrays")
        if t.shape[1] != n_channels:
            raise DataError(f"series {i} has {t.shape[1]} channels but the model was trained on {n_channels} "
                            f"— pass [time steps, {n_channels}] arrays")
        if t.shape[0] == 0:
            raise DataError(f"series {i} is empty — pass series with at least one time step")
        if not torch.isfinite(t).all():
            raise DataError(f"series {i} has {int((~torch.isfinite(t)).sum())} NaN/inf values "
                            "— fill or drop those time steps first")
        tensors.append(t)
    if not tensors:
        raise DataError("no series given — pass a list of [time steps, channels] arrays")
    data = SeriesSet.from_arrays(tensors)
    if preprocess.get("fixed_length") is not None:
        data = data.with_series([resample(s, int(preprocess["fixed_length"])) for s in data.series_list()])
    how = preprocess.get("normalize", "none")
    if how not in NORMALISATIONS:
        raise DataError(f"unknown normalize={how!r} in the model's preprocess config — use one of {NORMALISATIONS}")
    shift = scale = None
    if how in ("global", "minmax"):
        shift = torch.tensor(preprocess["shift"], dtype=torch.float32)
        scale = torch.tensor(preprocess["scale"], dtype=torch.float32)
    return _apply_normalisation(data, how, shift, scale)


_warned_legacy = False


def prepare_inputs(config: Mapping[str, Any], series: Sequence) -> SeriesSet:
    """Raw series prepared for the model whose saved `config` (from `tracking.load_model*`) is given.

    Models saved before the preprocess section existed get no preprocessing (warned once).
    """
    global _warned_legacy
    preprocess = config.get("preprocess")
    if preprocess is None:
        if not _warned_legacy:
            log.warning("this model predates saved normalisation: its input is used as given — normalise "
                        "it like the training data (data.normalize) yourself, or retrain the model")
            _warned_legacy = True
        preprocess = {"normalize": "none", "fixed_length": None}
    return preprocess_series(series, preprocess, int(config["spec"]["n_channels"]))


def prepare(data: SeriesSet, *, min_length: int = 2, val_fraction: float = 0.2, seed: int = 0,
            normalize: str = "global", fixed_length: int | None = None,
            drop_nonfinite: bool = False, test_fraction: float = 0.0,
            fixed_length_if_variable: int | None = None) -> PreparedData:
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
    native = data
    if fixed_length is None and fixed_length_if_variable is not None and len(set(data.lengths.tolist())) > 1:
        fixed_length = int(fixed_length_if_variable)  # a fixed-length model on variable-length series
    if fixed_length is not None:
        data = data.with_series([resample(s, fixed_length) for s in data.series_list()])
    train_idx, val_idx, test_idx = _split(data, val_fraction, seed, test_fraction)
    parts = [data.subset(train_idx), data.subset(val_idx)] + ([data.subset(test_idx)] if test_idx else [])
    # Statistics come from the training series at their own lengths, so a resampled (fixed-length)
    # run and a variable-length run of one data set normalise the same way and their `recon_mse`
    # objectives compare.
    parts, stats = _normalise([native.subset(train_idx), *parts], normalize)
    parts = parts[1:]
    val_native = None
    if fixed_length is not None:
        (_, val_native), _ = _normalise([native.subset(train_idx), native.subset(val_idx)], normalize)
    train, val = parts[0], parts[1]
    test = parts[2] if test_idx else None
    # Shapes (lengths) count every split, so a model built here can encode TEST at analysis time;
    # values (the [0, 1] check that lets model.loss=auto pick BCE) come from train + val only.
    all_lengths = torch.cat([p.lengths for p in parts])
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
    # everything `preprocess_series` needs to prepare new raw input the same way (saved with the model)
    preprocess = {"normalize": normalize, "shift": stats.get("shift"), "scale": stats.get("scale"),
                  "fixed_length": int(fixed_length) if fixed_length is not None else None}
    report = {"n_train": len(train), "n_val": len(val), "n_test": len(test) if test is not None else 0,
              "dropped_short": n_short, "dropped_nonfinite_steps": n_nonfinite, "normalize_stats": stats,
              "preprocess": preprocess}
    return PreparedData(train, val, spec, report, test, val_native)
