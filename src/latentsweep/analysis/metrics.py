"""Clustering and linear-probe scores on any feature matrix (latents or raw series).

One implementation serves both the analysis report (latent vs raw, side by side) and the sweep
objectives (`silhouette`, `probe_accuracy`), so a number in a sweep means exactly what the same
number means in `python analyze.py`.

Features are standardised per column before clustering and inside the probe: latent
dimensions of an autoencoder have arbitrary scales, and one loud dimension would otherwise
decide every Euclidean distance. Collapsed dimensions are the exception: a column whose spread is
tiny next to the widest column's (`COLLAPSE_RATIO`) is scaled by that floor rather than blown up
to unit variance, and a latent whose every column is collapsed (all series at one point, up to
float noise) has no geometry at all: it clusters into nothing and its silhouette is -1, the worst.
Otherwise a sweep could game `silhouette` with dimensions that carry only rounding noise.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..data.prepare import resample
from ..data.series import SeriesSet
from ..errors import DataError

CLUSTER_METHODS = ("spectral", "kmeans")
MAX_DEFAULT_RAW_LENGTH = 512  # the raw baseline's default resampling length is capped here
PROBE_CS = tuple(np.logspace(-3, 2, 6))  # inverse L2 strengths the probe's cross-validation tries


@dataclass
class ClusterScores:
    """One clustering of one feature matrix; nmi/ari are None without labels."""

    assignments: np.ndarray
    silhouette: float
    nmi: float | None = None
    ari: float | None = None


@dataclass
class ProbeResult:
    """Logistic regression fitted on the training split, scored on the validation split."""

    accuracy: float
    majority_accuracy: float  # always predicting the training split's most frequent class
    C: float
    predictions: np.ndarray
    confusion: np.ndarray  # [n_classes, n_classes], rows: true class


@contextlib.contextmanager
def limited_threads(n: int | None) -> Iterator[None]:
    """Cap the BLAS/OpenMP threads of scikit-learn (and torch) for a block; None: leave them.

    Why: these matrices are small, and on a shared CPU (parallel sweep trials, other jobs) BLAS
    threads that spin-wait for each other made a k-means 100x slower (5.7 s vs 0.04 s, 2 cores
    at load 8); one thread per job is the robust choice.
    """
    if not n:
        yield
        return
    from threadpoolctl import threadpool_limits

    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        torch.set_num_threads(previous)


# A column whose standard deviation is below this share of the widest column's is collapsed: it
# is divided by that floor (so it keeps its tiny spread), not by its own deviation.
COLLAPSE_RATIO = 1e-3
# Every column is collapsed when even the widest spread is below this share of the values'
# magnitude: float32 latents carry ~1e-7 relative rounding noise, so 1e-5 is noise, not structure.
NOISE_RATIO = 1e-5


def column_scales(x: np.ndarray) -> np.ndarray | None:
    """Per-column divisors for `standardize`; None when every column is collapsed (see module doc)."""
    x = np.asarray(x, dtype=np.float64)
    std = x.std(0)
    widest = float(std.max()) if std.size else 0.0
    magnitude = float(np.abs(x).max()) if x.size else 0.0
    if widest == 0.0 or widest <= NOISE_RATIO * magnitude:
        return None
    return np.maximum(std, COLLAPSE_RATIO * widest)


def standardize(x: np.ndarray) -> np.ndarray:
    """Zero mean, unit variance per column; collapsed columns stay small, an all-collapsed x is zeros."""
    x = np.asarray(x, dtype=np.float64)
    scales = column_scales(x)
    if scales is None:
        return np.zeros_like(x)
    return (x - x.mean(0)) / scales


def is_collapsed(x: np.ndarray) -> bool:
    """True when every column of `x` is collapsed: the rows are one point up to float noise."""
    return column_scales(x) is None


class CollapseAwareScaler:
    """`standardize` as a scikit-learn transformer, fitted on the training split only (the probe's)."""

    def fit(self, x: np.ndarray, y: np.ndarray | None = None) -> CollapseAwareScaler:
        x = np.asarray(x, dtype=np.float64)
        self.mean_ = x.mean(0)
        scales = column_scales(x)
        self.scale_ = np.full(x.shape[1], np.inf) if scales is None else scales  # collapsed: all zeros
        return self

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean_) / self.scale_

    def fit_transform(self, x: np.ndarray, y: np.ndarray | None = None) -> np.ndarray:
        return self.fit(x, y).transform(x)

    def get_params(self, deep: bool = True) -> dict:
        return {}

    def set_params(self, **params) -> CollapseAwareScaler:
        return self


def subsample(n: int, max_points: int | None, seed: int) -> np.ndarray:
    """Sorted indices of at most `max_points` of `n` rows (spectral clustering and t-SNE are O(n^2))."""
    if not max_points or n <= max_points:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def _check_k(n: int, k: int, what: str) -> None:
    if k < 2 or k >= n:
        raise DataError(f"cannot form k={k} clusters from {n} {what} — need 2 <= k < {n}; "
                        "set k=<clusters> (analysis) or objective=silhouette@<k>")


def cluster(x: np.ndarray, k: int, method: str, seed: int = 0, n_init: int = 10) -> np.ndarray:
    """Cluster assignments of the (already standardised) rows of `x`; `n_init`: k-means restarts."""
    from sklearn.cluster import KMeans, SpectralClustering

    _check_k(len(x), k, "series")
    if method == "kmeans":
        return KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit_predict(x)
    if method == "spectral":
        # A k-nearest-neighbour graph adapts to the local scale; an RBF kernel with a fixed gamma
        # does not, and collapses on high-dimensional raw series.
        model = SpectralClustering(n_clusters=k, affinity="nearest_neighbors",
                                   n_neighbors=min(10, len(x) - 1), assign_labels="cluster_qr",
                                   random_state=seed)
        with warnings.catch_warnings():  # "graph is not fully connected": the embedding still works
            warnings.filterwarnings("ignore", message=".*not fully connected.*")
            return model.fit_predict(x)
    raise ValueError(f"unknown clustering method {method!r}; choose one of {CLUSTER_METHODS}")


def silhouette(x: np.ndarray, assignments: np.ndarray, seed: int = 0, max_points: int = 5000) -> float:
    """Mean silhouette in the space that was clustered; NaN when there is only one cluster."""
    from sklearn.metrics import silhouette_score

    n_clusters = len(np.unique(assignments))
    if n_clusters < 2 or n_clusters >= len(x):
        return float("nan")
    size = max_points if len(x) > max_points else None
    return float(silhouette_score(x, assignments, sample_size=size, random_state=seed))


def kmeans_silhouette(x: np.ndarray, k: int, seed: int = 0) -> float:
    """Silhouette of k-means with `k` clusters on standardised features (the sweep objective).

    A collapsed latent (every column collapsed) scores -1, the worst silhouette there is.
    """
    if is_collapsed(x):
        _check_k(len(x), k, "series")
        return -1.0
    z = standardize(x)
    return silhouette(z, cluster(z, k, "kmeans", seed), seed)


def best_kmeans(z: np.ndarray, seed: int = 0, candidates: Sequence[int] = range(2, 11),
                n_init: int = 10) -> tuple[int, float, np.ndarray]:
    """(k, silhouette, assignments) of the k-means on standardised rows `z` whose silhouette is
    best: the assignments too, so a caller that needs that clustering does not fit it again."""
    options = [k for k in candidates if 2 <= k < len(z)]
    if not options:
        raise DataError(f"only {len(z)} series: too few to cluster — add series")
    fits = {k: cluster(z, k, "kmeans", seed, n_init) for k in options}
    scores = {k: silhouette(z, fits[k], seed) for k in options}
    best = max(scores, key=lambda k: -np.inf if np.isnan(scores[k]) else scores[k])
    return best, scores[best], fits[best]


def choose_k(x: np.ndarray, seed: int = 0, candidates: Sequence[int] = range(2, 11)) -> int:
    """For unlabelled data without a configured k: the k-means k with the best silhouette."""
    return best_kmeans(standardize(x), seed, candidates)[0]


def clustering_scores(x: np.ndarray, k: int, labels: np.ndarray | None = None, seed: int = 0,
                      methods: Sequence[str] = CLUSTER_METHODS) -> dict[str, ClusterScores]:
    """Each method's clusters, their silhouette, and NMI/ARI against `labels` when given."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    z = standardize(x)
    out: dict[str, ClusterScores] = {}
    if is_collapsed(x):  # one point: no clusters to find; scored like the silhouette objective (-1)
        _check_k(len(x), k, "series")
        none = np.zeros(len(x), dtype=np.int64)
        return {m: ClusterScores(none, -1.0, *((0.0, 0.0) if labels is not None else ())) for m in methods}
    for method in methods:
        assignments = cluster(z, k, method, seed)
        scores = ClusterScores(assignments, silhouette(z, assignments, seed))
        if labels is not None:
            scores.nmi = float(normalized_mutual_info_score(labels, assignments))
            scores.ari = float(adjusted_rand_score(labels, assignments))
        out[method] = scores
    return out


def probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
          n_classes: int | None = None, seed: int = 0) -> ProbeResult:
    """Logistic regression on standardised features (`CollapseAwareScaler`); C cross-validated on the
    training split only.

    Linear on purpose: it measures how much class information the representation makes
    *linearly* available, which is what "a nice latent space" promises.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import confusion_matrix
    from sklearn.model_selection import GridSearchCV, StratifiedKFold
    from sklearn.pipeline import make_pipeline

    y_train, y_val = np.asarray(y_train), np.asarray(y_val)
    classes, counts = np.unique(y_train, return_counts=True)
    if len(classes) < 2:
        raise DataError(f"the training split holds only {len(classes)} class — a probe needs at least 2")
    if len(y_val) == 0:
        raise DataError("the validation split is empty — raise data.val_fraction")
    n_classes = n_classes or int(max(y_train.max(), y_val.max()) + 1)
    pipe = make_pipeline(CollapseAwareScaler(), LogisticRegression(max_iter=1000))
    folds = int(min(5, counts.min()))
    with warnings.catch_warnings():  # large C on separable features: converged enough for a probe
        warnings.simplefilter("ignore", ConvergenceWarning)
        if folds >= 2:
            search = GridSearchCV(pipe, {"logisticregression__C": list(PROBE_CS)},
                                  cv=StratifiedKFold(folds, shuffle=True, random_state=seed))
            fitted = search.fit(x_train, y_train).best_estimator_
        else:  # a class with a single training example: no stratified folds possible
            fitted = pipe.fit(x_train, y_train)
    predictions = fitted.predict(x_val)
    majority = classes[np.argmax(counts)]
    return ProbeResult(
        accuracy=float((predictions == y_val).mean()),
        majority_accuracy=float((y_val == majority).mean()),
        C=float(fitted[-1].C),
        predictions=predictions,
        confusion=confusion_matrix(y_val, predictions, labels=list(range(n_classes))),
    )


def raw_features(series: SeriesSet, length: int) -> np.ndarray:
    """[N, length * C]: each series resampled to `length`, z-normalised per channel, flattened.

    The usual raw-series baseline: per-series z-normalisation (as in the UCR literature) makes
    Euclidean distance compare shapes, not offsets or gains.
    """
    rows = []
    for s in series.series_list():
        r = resample(s.float().cpu(), length)
        r = (r - r.mean(0)) / r.std(0, unbiased=False).clamp_min(1e-6)
        rows.append(r.reshape(-1))
    return torch.stack(rows).numpy().astype(np.float64)
