"""A run's data from its config: the source, the prepared splits, the batch loaders.

Shared by training (`pipeline`) and analysis (`analysis.run` rebuilds a model's data from its
stored config), so neither imports the other.
"""

from __future__ import annotations

import dataclasses

import torch
from omegaconf import DictConfig

from .build import load_source
from .config import COMMON_DATA_FIELDS
from .data import BatchLoader, BucketBatchSampler, PreparedData, prepare
from .errors import ConfigError, DataError


def load_data(data_cfg: DictConfig, seed: int) -> PreparedData:
    try:
        raw = load_source(data_cfg, COMMON_DATA_FIELDS)
    except (DataError, ConfigError):
        raise
    except Exception as exc:
        cause = exc.__cause__ or exc
        if isinstance(cause, (DataError, ConfigError)):
            raise cause from exc
        if isinstance(cause, ValueError):
            raise DataError(str(cause).splitlines()[0]) from exc
        raise
    if data_cfg.get("hide_labels", False):
        raw = dataclasses.replace(raw, labels=None, class_names=None)
    return prepare(raw, min_length=data_cfg.min_length, val_fraction=data_cfg.val_fraction, seed=seed,
                   normalize=data_cfg.normalize, fixed_length=data_cfg.fixed_length,
                   drop_nonfinite=data_cfg.drop_nonfinite, test_fraction=data_cfg.get("test_fraction", 0.0),
                   fixed_length_if_variable=data_cfg.get("fixed_length_if_variable"))


def make_loaders(data: PreparedData, data_cfg: DictConfig, seed: int,
                 device: torch.device) -> tuple[BatchLoader, BatchLoader]:
    train_set, val_set = data.train, data.val
    if device.type == "cuda" and data_cfg.get("on_device", True):
        train_set, val_set = train_set.to(device), val_set.to(device)  # small: slice on the GPU
    train = BatchLoader(train_set, BucketBatchSampler(train_set.lengths, data_cfg.batch_size, seed=seed,
                                                      mode=data_cfg.batching,
                                                      pool_batches=data_cfg.bucket_pool), device)
    val = BatchLoader(val_set, BucketBatchSampler(val_set.lengths, data_cfg.batch_size, seed=seed,
                                                  mode="bucket", shuffle=False), device)
    return train, val
