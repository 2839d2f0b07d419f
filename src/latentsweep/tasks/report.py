"""What a classification run logs at the end: confusion matrix, per-class scores, score curves."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .. import figures
from ..data import collate
from ..data.series import SeriesSet
from .metrics import confusion_matrix, per_class_scores, summary_scores

plt = figures.plt


def predict(model, series: SeriesSet, device, batch_size: int = 256) -> np.ndarray:
    """Predicted class of every series (eval mode), in the set's order."""
    order = torch.argsort(series.lengths, stable=True).tolist()  # similar lengths: little padding
    predictions = np.zeros(len(series), dtype=np.int64)
    cpu_set = series.to("cpu")
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        logits = model.predict_logits(collate(cpu_set, chunk).to(device))
        predictions[chunk] = logits.argmax(-1).cpu().numpy()
    return predictions


def per_class_table(confusion: np.ndarray, class_names: Sequence[str]) -> pd.DataFrame:
    scores = per_class_scores(confusion)
    return pd.DataFrame({"class": list(class_names), **{k: v for k, v in scores.items()}})


def confusion_figure(confusion: np.ndarray, class_names: Sequence[str], title: str) -> plt.Figure:
    """Counts, coloured by the share of each true class (rows), so small classes stay readable."""
    confusion = np.asarray(confusion)
    k = len(class_names)
    shares = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    size = 2.5 + 0.55 * k
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    for i in range(k):
        for j in range(k):
            ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=8,
                    color="white" if shares[i, j] > 0.6 else "black")
    ax.set_xticks(range(k), class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(k), class_names, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title, fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of true class")
    fig.tight_layout()
    return fig


def score_curves(history: Sequence[dict]) -> plt.Figure:
    epochs = [h["epoch"] + 1 for h in history]
    fig, ax = plt.subplots(figsize=(6, 4))
    for key, style in (("train_accuracy", "-"), ("val_accuracy", "--"), ("train_macro_f1", "-"),
                       ("val_macro_f1", "--")):
        if history and key in history[0]:
            ax.plot(epochs, [h[key] for h in history], style, marker="o", ms=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylim(0, 1.02)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    return fig


def _metric_key(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.\-/ ]", "_", str(name))


def log_classification(tracker, model, data, result, device) -> dict[str, float]:
    """Scores of the best model on the validation split: metrics, a parquet table, two figures."""
    class_names = [str(c) for c in (data.spec.class_names or range(model.n_classes))]
    predictions = predict(model, data.val, device)
    confusion = confusion_matrix(data.val.labels.cpu(), predictions, model.n_classes)
    summary = summary_scores(confusion)
    table = per_class_table(confusion, class_names)
    metrics = {"best_val_accuracy": summary["accuracy"], "best_val_macro_f1": summary["macro_f1"]}
    for row in table.itertuples(index=False):
        for score in ("precision", "recall", "f1"):
            metrics[f"val_{score}.{_metric_key(row[0])}"] = float(getattr(row, score))
    tracker.log_metrics(metrics)
    fig = confusion_figure(confusion, class_names, f"validation (accuracy {summary['accuracy']:.3f}, "
                                                   f"macro-F1 {summary['macro_f1']:.3f})")
    tracker.log_figure(fig, "figures/confusion_matrix.png")
    figures.close(fig)
    fig = score_curves(result.history)
    tracker.log_figure(fig, "figures/scores.png")
    figures.close(fig)
    with tempfile.TemporaryDirectory() as tmp:
        table.to_parquet(Path(tmp) / "per_class_val.parquet", index=False)
        pd.DataFrame(confusion, index=class_names, columns=class_names).rename_axis("true").reset_index() \
            .to_parquet(Path(tmp) / "confusion_val.parquet", index=False)
        tracker.log_artifact_dir(tmp, "tables")
    return metrics
