"""Small grey-scale images as series: rows-as-sequence, plus scikit-learn's bundled 8x8 digits.

An H x W image is stored as a series of T=H time steps with C=W channels (one row per step),
and `SeriesSet.image_shape=(H, W)` records that, so figures can draw images again and models
that want a flat vector (mlp, highway) can reshape [H, W] -> [H*W]. Sequence models (rnn, conv,
transformer) read the rows in order, the classic "row-by-row MNIST" set-up.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..errors import DataError
from .series import SeriesSet

DIGIT_CLASSES = tuple(str(d) for d in range(10))


def images_to_series(
    images: np.ndarray,
    labels: np.ndarray | Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
    ids: Sequence[str] | None = None,
    split: Sequence[str] | None = None,
) -> SeriesSet:
    """[N, H, W] images (already scaled) -> a SeriesSet of N series of shape [H, W].

    Built directly from one reshape (no per-image tensors), which matters for MNIST's 70,000.
    """
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 3 or images.shape[0] == 0:
        raise DataError(f"expected a non-empty [N, H, W] image array, got shape {images.shape} "
                        "— check the image source")
    n, height, width = images.shape
    values = torch.from_numpy(np.ascontiguousarray(images.reshape(n * height, width)))
    offsets = torch.arange(n + 1, dtype=torch.long) * height
    label_tensor = None
    if labels is not None:
        label_tensor = torch.as_tensor(np.asarray(labels, dtype=np.int64))
        if label_tensor.shape != (n,):
            raise DataError(f"{label_tensor.numel()} labels for {n} images — the label file does "
                            "not belong to the image file")
    return SeriesSet(
        values=values,
        offsets=offsets,
        ids=list(ids) if ids is not None else [f"img-{i:05d}" for i in range(n)],
        labels=label_tensor,
        class_names=list(class_names) if class_names is not None else None,
        image_shape=(height, width),
        split=list(split) if split is not None else None,
    )


def load_digits(n_samples: int | None = None) -> SeriesSet:
    """scikit-learn's 1,797 8x8 handwritten digits (shipped with it: no download), in [0, 1].

    Pixel values are 0..16 in the original, so dividing by 16 gives the unit range in which
    `model.loss=auto` picks BCE. `n_samples` keeps the first N, which stays class-balanced
    because the set cycles through the digits in order.
    """
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    images, target = bunch.images, bunch.target
    if n_samples is not None:
        if n_samples < 2:
            raise DataError(f"data.n_samples={n_samples} is too small — keep at least 2 digits")
        images, target = images[:n_samples], target[:n_samples]
    return images_to_series(images / 16.0, labels=target, class_names=DIGIT_CLASSES,
                            ids=[f"digit-{i:04d}" for i in range(len(images))])
