"""Analysis figures (latent maps, confusion matrices, reconstruction errors) and the summary table.

Figure functions return matplotlib figures and never save them: the caller logs them to MLflow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from .. import tables
from ..figures import plt  # pyplot with the headless Agg backend already selected
from .metrics import ClusterScores, ProbeResult, is_collapsed, standardize
from .svm import SVMResult


def tsne_perplexity(n: int) -> float:
    """sklearn needs perplexity < n; ~n/3 keeps small sets from collapsing into one blob."""
    return float(max(1.0, min(30.0, (n - 1) / 3)))


def _scatter(ax, points: np.ndarray, colour_index: np.ndarray, names: Sequence[str], title: str) -> None:
    cmap = plt.get_cmap("tab10" if len(names) <= 10 else "tab20")
    for i, name in enumerate(names):
        sel = colour_index == i
        if sel.any():
            ax.scatter(points[sel, 0], points[sel, 1], s=8, alpha=0.75, color=cmap(i % cmap.N), label=name)
    ax.set_title(title, fontsize=10)
    ax.set_xticks([])
    ax.set_yticks([])


def embedding_figure(latents: np.ndarray, colour_index: np.ndarray, names: Sequence[str], *,
                     colour_by: str, seed: int = 0, title: str = "latent space") -> plt.Figure:
    """Two panels: t-SNE (local neighbourhoods) and PCA (global linear structure) of the latents."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE

    z = standardize(latents)
    n = len(z)
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    if is_collapsed(latents):  # every series at one point: t-SNE would divide by zero (and crash)
        for ax in axes:
            ax.text(0.5, 0.5, "the latents collapsed to one point:\nnothing to embed",
                    ha="center", va="center", transform=ax.transAxes)
            ax.axis("off")
        fig.suptitle(f"{title} — {n} series, {latents.shape[1]} dims, collapsed")
        return fig
    if n >= 5 and z.shape[1] >= 2:
        perplexity = tsne_perplexity(n)
        emb = TSNE(n_components=2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(z)
        _scatter(axes[0], emb, colour_index, names, f"t-SNE (perplexity {perplexity:.0f})")
    else:
        axes[0].text(0.5, 0.5, f"t-SNE needs >= 5 series and >= 2 dims ({n}, {z.shape[1]})",
                     ha="center", va="center", transform=axes[0].transAxes)
        axes[0].axis("off")
    if z.shape[1] >= 2:
        pca = PCA(n_components=2, random_state=seed).fit(z)
        ratio = pca.explained_variance_ratio_
        _scatter(axes[1], pca.transform(z), colour_index, names,
                 f"PCA ({ratio[0]:.0%} + {ratio[1]:.0%} of variance)")
    else:  # a 1-d latent: plot it against its rank
        order = np.argsort(np.argsort(z[:, 0]))
        _scatter(axes[1], np.stack([order, z[:, 0]], 1), colour_index, names, "1-d latent")
    axes[1].legend(fontsize=7, markerscale=1.5, loc="best", title=colour_by, title_fontsize=7)
    fig.suptitle(f"{title} — {n} series, {latents.shape[1]} dims, coloured by {colour_by}")
    fig.tight_layout()
    return fig


def confusion_figure(probes: Mapping[str, ProbeResult], class_names: Sequence[str]) -> plt.Figure:
    """One confusion matrix (validation split, row-normalised colours, counts written) per feature set."""
    fig, axes = plt.subplots(1, len(probes), figsize=(4.6 * len(probes), 4.4), squeeze=False)
    for ax, (name, result) in zip(axes[0], probes.items()):
        cm = result.confusion
        share = cm / np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for i in range(cm.shape[0]):
            for j in range(cm.shape[1]):
                ax.text(j, i, str(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if share[i, j] > 0.5 else "black")
        ticks = range(len(class_names))
        ax.set_xticks(ticks, class_names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(ticks, class_names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_title(f"{name}: accuracy {result.accuracy:.3f}", fontsize=10)
    fig.suptitle("logistic-regression probe, held-out split")
    fig.tight_layout()
    return fig


def error_histogram(errors: np.ndarray, splits: np.ndarray, threshold: float) -> plt.Figure:
    """Distribution of per-series reconstruction errors per split; the worst ones lie right of the line."""
    fig, ax = plt.subplots(figsize=(6, 4))
    positive = errors[np.isfinite(errors) & (errors > 0)]
    log_x = len(positive) == np.isfinite(errors).sum() and len(positive) > 1
    bins = np.geomspace(positive.min(), positive.max(), 40) if log_x and positive.min() < positive.max() else 40
    for split in ("train", "val", "test"):
        sel = splits == split
        if sel.any():
            ax.hist(errors[sel], bins=bins, alpha=0.6, label=f"{split} ({int(sel.sum())})")
    if log_x:
        ax.set_xscale("log")
    ax.axvline(threshold, color="red", ls="--", lw=1, label="worst shown")
    ax.set_xlabel("reconstruction error per series")
    ax.set_ylabel("series")
    ax.legend(fontsize=8)
    ax.set_title("reconstruction errors (anomaly scores)")
    fig.tight_layout()
    return fig


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return "nan" if isinstance(value, float) and math.isnan(value) else f"{value:.3f}"


def comparison_rows(clusters: Mapping[str, Mapping[str, ClusterScores]],
                    probes: Mapping[str, ProbeResult] | None,
                    svms: Mapping[str, SVMResult] | None = None,
                    scored: str = "val",
                    label_free: Mapping[str, Mapping[str, float]] | None = None,
                    ) -> list[tuple[str, dict[str, float | None]]]:
    """(metric, {feature set: value}) rows; label-based rows only when labels exist.

    `scored` names the split the probe and the SVM are scored on ("test" when one is held out).
    `label_free`: {feature set: `labelfree.label_free_scores`}, rows "<score> (label-free, train)".
    """
    sets = list(clusters)
    methods = list(next(iter(clusters.values())))
    rows: list[tuple[str, dict[str, float | None]]] = []
    names = {"spectral": "spectral", "kmeans": "k-means"}
    for method in methods:
        label = names.get(method, method)
        if probes is not None:
            rows.append((f"{label} NMI", {s: clusters[s][method].nmi for s in sets}))
            rows.append((f"{label} ARI", {s: clusters[s][method].ari for s in sets}))
        rows.append((f"{label} silhouette", {s: clusters[s][method].silhouette for s in sets}))
    if probes is not None:
        rows.append((f"probe accuracy ({scored})", {s: probes[s].accuracy for s in sets}))
        rows.append((f"majority class ({scored})", {s: probes[s].majority_accuracy for s in sets}))
    if svms is not None:
        rows.append((f"RBF-SVM accuracy ({scored})", {s: svms[s].accuracy for s in sets}))
    for score in next(iter(label_free.values())) if label_free else ():
        rows.append((f"{score} (label-free, train)", {s: label_free[s].get(score) for s in sets}))
    return rows


def markdown_table(rows: Sequence[tuple[str, Mapping[str, float | None]]], columns: Sequence[str]) -> str:
    return tables.markdown_table(["metric", *columns],
                                 [[name, *(_fmt(values.get(c)) for c in columns)] for name, values in rows])
