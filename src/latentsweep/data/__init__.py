"""Data sources, preparation and batching."""

from .batching import Batch, BatchLoader, BucketBatchSampler, collate, lengths_to_mask
from .prepare import PreparedData, prepare, resample
from .series import DataSpec, SeriesSet

__all__ = ["Batch", "BatchLoader", "BucketBatchSampler", "DataSpec", "PreparedData", "SeriesSet",
           "collate", "lengths_to_mask", "prepare", "resample"]
