"""MNIST (60,000 train + 10,000 test 28x28 digits) as rows-as-sequence series.

With torchvision importable, `torchvision.datasets.MNIST` reads (and, with `download=True`,
fetches) the files under `root/MNIST/raw/`. Without it, our own IDX reader loads the four
official files, plain or `.gz`, from `root/` or `root/MNIST/raw/`, so an offline machine only
needs the files copied in. The official split is kept as SeriesSet.split ("train"/"test"):
`prepare()` carves validation out of the 60,000 training digits and holds the 10,000 test digits
out of training and selection, so `analyze.py`'s test scores are comparable with the literature.
"""

from __future__ import annotations

import gzip
import importlib.util
import logging
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from .images import DIGIT_CLASSES, images_to_series
from .series import SeriesSet

log = logging.getLogger(__name__)

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# IDX type byte -> big-endian numpy dtype (http://yann.lecun.com/exdb/mnist/ "THE IDX FILE FORMAT").
IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
HOW_TO_GET = ("put train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte and "
              "t10k-labels-idx1-ubyte (plain or .gz) there, or pip install torchvision and set "
              "data.download=true")


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into an array of its declared shape and type."""
    path = Path(path)
    try:
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # BadGzipFile is an OSError
        raise DataError(f"cannot read {path}: {exc} — the file is damaged or incomplete; "
                        "delete it and copy/download it again") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in IDX_DTYPES:
        raise DataError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()}) — "
                        "expected the MNIST files as published, e.g. train-images-idx3-ubyte")
    dtype, ndim = np.dtype(IDX_DTYPES[raw[2]]), raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path} is truncated inside its header — copy/download it again")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(f"{path} holds {len(raw) - header} data bytes but its header declares "
                        f"{shape} ({expected} bytes) — the file is truncated or damaged; "
                        "copy/download it again")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def find_idx(root: Path, name: str) -> Path | None:
    """`name` or `name.gz` in root/ or root/MNIST/raw/ (torchvision's layout); plain first."""
    for folder in (root, root / "MNIST" / "raw"):
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def _read_split_idx(root: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    images_name, labels_name = FILES[split]
    paths = [find_idx(root, images_name), find_idx(root, labels_name)]
    if None in paths:
        missing = [n for n, p in zip(FILES[split], paths) if p is None]
        where = root.resolve()
        raise DataError(f"MNIST file(s) {missing} not found in {where} or {where / 'MNIST' / 'raw'} "
                        f"— {HOW_TO_GET}")
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DataError(f"{paths[0]} ({images.shape}) and {paths[1]} ({labels.shape}) do not "
                        "match: expected [N, H, W] images and N labels — use the official files")
    return images, labels


def _read_split_torchvision(root: Path, split: str, download: bool):
    """(images, labels) via torchvision, or None when torchvision is absent or lacks the files."""
    try:
        from torchvision import datasets
    except ImportError:
        return None
    try:
        ds = datasets.MNIST(root=str(root), train=split == "train", download=download)
    except RuntimeError as exc:  # "Dataset not found": maybe our own reader finds a flat layout
        log.info("torchvision MNIST: %s", str(exc).splitlines()[0] if str(exc) else exc)
        return None
    except OSError as exc:  # URLError, HTTP errors, disk full
        raise DataError(f"MNIST download into {root} failed ({exc}) — check the network, or copy "
                        f"the four IDX files (plain or .gz) into {root}") from exc
    return ds.data.numpy(), ds.targets.numpy()


def load_mnist(root: str = "data", download: bool = False, limit: int | None = None) -> SeriesSet:
    """Both official splits, scaled to [0, 1]; `limit` keeps the first N of each split."""
    root_path = Path(root).expanduser()
    if limit is not None and limit < 1:
        raise DataError(f"data.limit={limit} must be positive (or null for everything)")
    if download and importlib.util.find_spec("torchvision") is None:
        raise DataError(f"data.download=true needs torchvision — pip install torchvision, or copy "
                        f"the four MNIST IDX files (plain or .gz) into {root_path.resolve()}")
    parts, labels, ids, split = [], [], [], []
    for name in ("train", "test"):
        found = _read_split_torchvision(root_path, name, download)
        images, targets = found if found is not None else _read_split_idx(root_path, name)
        if limit is not None:
            images, targets = images[:limit], targets[:limit]
        parts.append(images)
        labels.append(targets)
        ids += [f"mnist-{name}-{i:05d}" for i in range(len(images))]
        split += [name] * len(images)
    if parts[0].shape[1:] != parts[1].shape[1:]:
        raise DataError(f"MNIST train images are {parts[0].shape[1:]} but test images are "
                        f"{parts[1].shape[1:]} — the files in {root_path} do not belong together")
    targets = np.concatenate(labels)
    if targets.size and (targets.min() < 0 or targets.max() >= len(DIGIT_CLASSES)):
        raise DataError(f"MNIST labels in {root_path} range over {int(targets.min())}.."
                        f"{int(targets.max())}, not 0..9 — these are not the MNIST label files")
    images = np.concatenate(parts).astype(np.float32)  # 70,000 x 784: scale in place
    images /= np.float32(255.0 if parts[0].dtype == np.uint8 else max(float(images.max()), 1.0))
    return images_to_series(images, labels=targets, class_names=DIGIT_CLASSES, ids=ids, split=split)
