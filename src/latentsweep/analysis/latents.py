"""Encode every series once: latents and reconstruction errors, exported as parquet.

Why one pass: the latent export, the anomaly scores and the latent-quality objectives all need
the same eval-mode forward. Batches run in length order (`BucketBatchSampler(shuffle=False)`),
so padding stays minimal, and results are put back in the SeriesSet's order via `Batch.index`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..data import BatchLoader, BucketBatchSampler, PreparedData, SeriesSet, collate
from ..data.prepare import resample
from ..models.base import eval_mode
from ..models.losses import per_series_reconstruction_error

LATENT_PREFIX = "z"


@dataclass
class Encoded:
    latents: np.ndarray  # [N, K] float32, in the SeriesSet's order
    errors: np.ndarray | None  # [N] per-series reconstruction error in the model's own loss


def _device_of(model: torch.nn.Module) -> torch.device:
    param = next(model.parameters(), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def encode_series(model, series: SeriesSet, *, batch_size: int = 256, with_errors: bool = True,
                  device: torch.device | str | None = None) -> Encoded:
    """Deterministic latents (`get_latent`, eval mode) and, if asked, per-series reconstruction errors.

    The error decodes that same latent (for a VAE: the posterior mean), scored with the loss the
    model trains on (`loss_kind`), so anomalies are ranked by what the model optimised.
    """
    device = torch.device(device) if device is not None else _device_of(model)
    loader = BatchLoader(series, BucketBatchSampler(series.lengths, batch_size, mode="bucket",
                                                    shuffle=False), device)
    with_errors = with_errors and hasattr(model, "decode")
    latents: np.ndarray | None = None
    errors = np.full(len(series), np.nan, dtype=np.float64) if with_errors else None
    with eval_mode(model):
        for batch in loader:
            z = model.get_latent(batch)
            if latents is None:
                latents = np.zeros((len(series), z.shape[-1]), dtype=np.float32)
            idx = batch.index.cpu().numpy()
            latents[idx] = z.float().cpu().numpy()
            if with_errors:
                recon = model.decode(z, batch.lengths)
                err = per_series_reconstruction_error(recon, batch.values, batch.mask,
                                                      getattr(model, "loss_kind", "mse"))
                errors[idx] = err.cpu().numpy()
    if latents is None:
        latents = np.zeros((0, 0), dtype=np.float32)
    return Encoded(latents, errors)


@torch.no_grad()
def reconstruct_series(model, series: SeriesSet, indices: list[int],
                       device: torch.device | str | None = None) -> list[torch.Tensor]:
    """Reconstructions (data space, each at its own length) of the chosen series, for figures."""
    device = torch.device(device) if device is not None else _device_of(model)
    batch = collate(series.to("cpu"), indices).to(device)
    recon = model.reconstruct(batch).float().cpu()
    return [recon[j, : int(n)] for j, n in enumerate(batch.lengths.tolist())]


@torch.no_grad()
def native_reconstruction_mse(model, series: SeriesSet, native: SeriesSet, *, batch_size: int = 256,
                              device: torch.device | str | None = None) -> float:
    """Mean per-series MSE of the reconstructions against `native`, each at its own length.

    `series` is what the model reads (resampled to data.fixed_length, or the same as `native`);
    a reconstruction is resampled back to its series' own length before it is scored, and the
    latent is the deterministic one (a VAE's posterior mean), so the number means the same for
    every model family: the `recon_mse` objective of family sweeps.
    """
    device = torch.device(device) if device is not None else _device_of(model)
    loader = BatchLoader(series, BucketBatchSampler(series.lengths, batch_size, mode="bucket",
                                                    shuffle=False), device)
    was_training = model.training
    model.eval()
    errors = np.zeros(len(series), dtype=np.float64)
    try:
        for batch in loader:
            recon = model.output_to_values(model.decode(model.get_latent(batch), batch.lengths)).float().cpu()
            for j, (i, n) in enumerate(zip(batch.index.tolist(), batch.lengths.tolist())):
                target = native[i].float().cpu()
                errors[i] = float(((resample(recon[j, :n], len(target)) - target) ** 2).mean())
    finally:
        model.train(was_training)
    return float(errors.mean())


def splits_of(data: PreparedData) -> list[tuple[str, SeriesSet]]:
    """The prepared splits in frame order: train, val, then test when the data holds one out."""
    parts = [("train", data.train), ("val", data.val)]
    if data.test is not None and len(data.test):
        parts.append(("test", data.test))
    return parts


def latents_frame(data: PreparedData, encoded: dict[str, Encoded]) -> pd.DataFrame:
    """One row per series: series_id, split, length, [label, label_index], [recon_error], z0..zK-1.

    `split` is "train", "val" or "test" (the held-out official TEST, or `data.test_fraction`).
    """
    parts = []
    for name, subset in splits_of(data):
        enc = encoded[name]
        frame = pd.DataFrame({"series_id": list(subset.ids), "split": name,
                              "length": subset.lengths.numpy().astype(np.int64)})
        if subset.labels is not None:
            index = subset.labels.cpu().numpy().astype(np.int64)
            names = subset.class_names or [str(i) for i in range(int(index.max()) + 1)]
            frame["label"] = [str(names[i]) for i in index]
            frame["label_index"] = index
        if enc.errors is not None:
            frame["recon_error"] = enc.errors
        z = pd.DataFrame(enc.latents, columns=[f"{LATENT_PREFIX}{i}" for i in range(enc.latents.shape[1])])
        parts.append(pd.concat([frame, z], axis=1))
    return pd.concat(parts, ignore_index=True)


def latent_columns(frame: pd.DataFrame) -> list[str]:
    cols = [c for c in frame.columns if c.startswith(LATENT_PREFIX) and c[len(LATENT_PREFIX):].isdigit()]
    return sorted(cols, key=lambda c: int(c[len(LATENT_PREFIX):]))


def write_latents(frame: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(path, index=False)
    return path


def read_latents(path: str | Path) -> pd.DataFrame:
    return pd.read_parquet(path)
