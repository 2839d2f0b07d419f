"""Label-free scores of a representation: what a sweep can select on when the series have no labels.

Each score reads a feature matrix (the TRAIN latents: train + validation rows) and, for
trustworthiness, the same series' raw features; none of them ever sees a label, so they work on
the unlabelled data the tool was made for. `benchmarks/bench_selection.py` measures how well each
predicts the TEST scores that labels would give (docs/latent-recipe.md, "Selecting latents without labels").

- `rankme`: the effective rank of the latents (Garrido et al. 2023, "RankMe"): exp of the entropy
  of the normalised singular values. A latent that spreads the series over many directions keeps
  more of what tells them apart; a collapsed or low-rank one cannot.
- `trustworthiness`: how well each series' nearest latent neighbours were also its raw-space
  neighbours (scikit-learn's `trustworthiness`, 5 neighbours): a latent that invents
  neighbourhoods the series do not have scores low.
- `stability`: k-means on random 80% resamples against k-means on all the series (mean adjusted
  Rand index on the shared series), at the data-chosen k: clusters that are really there come back
  (each k-means here starts once, `KMEANS_STARTS`, so an unstable start counts against the latent too).
- `silhouette`: the k-means silhouette at the data-chosen k (`metrics.best_kmeans`'s best).

The latents are scored as the SVM yardstick sees them (unscaled) for rankme and trustworthiness,
and standardised per column for the clustering scores (as the analysis clusters them). A latent
with every column collapsed (all series at one point) gets each score's worst value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from ..data.series import SeriesSet
from .metrics import (
    MAX_DEFAULT_RAW_LENGTH,
    best_kmeans,
    cluster,
    is_collapsed,
    raw_features,
    standardize,
    subsample,
)

CANDIDATES = ("rankme", "trustworthiness", "stability", "silhouette")
LABEL_FREE_SCORE = "trustworthiness"  # what `objective=label_free` selects on (docs/latent-recipe.md: measured)
MAX_ROWS = 500  # scores on at most this many series, the same random ones for every trial of a study (seeded):
# the silhouettes behind the data-chosen k grow with n squared, and at 1,200 series these scores took
# ~1 s of every trial (issue 29); 500 is still 10x the UCR training sets they were measured on
NEIGHBOURS = 5  # trustworthiness: scikit-learn's default neighbourhood
RESAMPLES = 10  # stability: resamples of RESAMPLE_SHARE of the series
RESAMPLE_SHARE = 0.8
KMEANS_STARTS = 1  # k-means++ restarts per fit (scikit-learn's own default): every trial of a sweep fits
# ~20 k-means for these scores, and ten restarts each made them the largest cost of a small trial (issue 29)
WORST = {"rankme": 0.0, "trustworthiness": 0.0, "stability": 0.0, "silhouette": -1.0, "k": 0.0}


def rankme(x: np.ndarray, eps: float = 1e-7) -> float:
    """Effective rank: exp(entropy of the singular values, normalised to sum 1) of the centred rows.
    Between 1 (one direction) and min(n, dims); Garrido et al.'s definition, centred so an offset
    shared by every series does not count as a direction."""
    x = np.asarray(x, dtype=np.float64)
    singular = np.linalg.svd(x - x.mean(0), compute_uv=False)
    p = singular / (singular.sum() + eps) + eps
    return float(np.exp(-(p * np.log(p)).sum()))


def neighbour_trust(raw: np.ndarray, x: np.ndarray, n_neighbors: int = NEIGHBOURS) -> float:
    """Trustworthiness of `x` as an embedding of `raw` (same rows): 1 when every latent neighbour
    was a raw neighbour too."""
    from sklearn.manifold import trustworthiness

    n_neighbors = max(1, min(n_neighbors, (len(x) - 1) // 2 - 1))  # scikit-learn needs k < n / 2
    return float(trustworthiness(np.asarray(raw, dtype=np.float64), np.asarray(x, dtype=np.float64),
                                 n_neighbors=n_neighbors))


def cluster_stability(z: np.ndarray, k: int, seed: int = 0, resamples: int = RESAMPLES,
                      share: float = RESAMPLE_SHARE, whole: np.ndarray | None = None) -> float:
    """Mean adjusted Rand index between k-means on all rows of `z` (standardised) and k-means on each
    random `share` of them, on the rows they share. `whole`: that k-means on all rows, if already fitted."""
    from sklearn.metrics import adjusted_rand_score

    whole = cluster(z, k, "kmeans", seed, KMEANS_STARTS) if whole is None else whole
    rng = np.random.default_rng(seed)
    size = max(k + 1, int(round(share * len(z))))
    scores = []
    for _ in range(resamples):
        rows = np.sort(rng.choice(len(z), size=min(size, len(z)), replace=False))
        part = cluster(z[rows], k, "kmeans", int(rng.integers(2**31)), KMEANS_STARTS)
        scores.append(adjusted_rand_score(whole[rows], part))
    return float(np.mean(scores))


def raw_length(subsets: Sequence[SeriesSet]) -> int:
    """The length the raw baseline resamples these series to: their median (at most MAX_DEFAULT_RAW_LENGTH)."""
    return min(int(torch.cat([s.lengths for s in subsets]).float().median()), MAX_DEFAULT_RAW_LENGTH)


def train_raw_features(subsets: Sequence[SeriesSet], length: int | None = None) -> np.ndarray:
    """The raw baseline's features of these series (rows in order): each resampled to `length`
    (default: `raw_length` of these series) and z-normalised, as `analyze.py`'s raw column."""
    length = raw_length(subsets) if length is None else length
    return np.vstack([raw_features(s, length) for s in subsets])


def scored_rows(n_train: int, n_val: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The train and validation rows `label_free_scores` keeps of train + val (at most MAX_ROWS):
    encoding only those saves most of the scores' time on large sets (issue 29)."""
    rows = subsample(n_train + n_val, MAX_ROWS, seed)
    return rows[rows < n_train], rows[rows >= n_train] - n_train


def label_free_scores(x: np.ndarray, raw: np.ndarray, seed: int = 0,
                      candidates: Sequence[int] = range(2, 11)) -> dict[str, float]:
    """Every candidate score of the latents `x` (rows: series) and the data-chosen k, no labels read.
    `raw`: the same series' raw features (`metrics.raw_features`), for trustworthiness."""
    x = np.asarray(x, dtype=np.float64)
    rows = subsample(len(x), MAX_ROWS, seed)
    x, raw = x[rows], np.asarray(raw)[rows]
    if not np.isfinite(x).all() or is_collapsed(x) or len(x) < 4:
        return dict(WORST)
    z = standardize(x)
    k, best_silhouette, assignments = best_kmeans(z, seed, candidates, KMEANS_STARTS)  # the k-means both scores below use
    return {"rankme": rankme(x),
            "trustworthiness": neighbour_trust(raw, x),
            "stability": cluster_stability(z, k, seed, whole=assignments),
            "silhouette": best_silhouette,
            "k": float(k)}
