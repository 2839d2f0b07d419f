"""Data sources, preparation and batching."""

from .batching import Batch, BatchLoader, BucketBatchSampler, collate, lengths_to_mask
from .images import images_to_series, load_digits
from .mnist import load_mnist, read_idx
from .prepare import PreparedData, prepare, prepare_inputs, preprocess_series, resample
from .series import DataSpec, SeriesSet
from .ucr import load_ucr, read_ts

__all__ = ["Batch", "BatchLoader", "BucketBatchSampler", "DataSpec", "PreparedData", "SeriesSet",
           "collate", "lengths_to_mask", "prepare", "prepare_inputs", "preprocess_series", "resample",
           "images_to_series", "load_digits", "load_mnist", "load_ucr", "read_idx", "read_ts"]
