"""Classification scores from a confusion matrix: accuracy, macro-F1, per-class precision/recall.

Plain numpy so the training loop's per-epoch tally costs one `bincount`. Macro-F1 averages over
the classes that occur in the labels or the predictions (as scikit-learn's default does), so a
class absent from a split neither helps nor hurts.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def confusion_matrix(labels: np.ndarray | Tensor, predictions: np.ndarray | Tensor, n_classes: int) -> np.ndarray:
    """[n_classes, n_classes] counts: rows are true classes, columns predicted ones."""
    labels = torch.as_tensor(labels).long().flatten().cpu()
    predictions = torch.as_tensor(predictions).long().flatten().cpu()
    counts = torch.bincount(labels * n_classes + predictions, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).numpy()


def per_class_scores(confusion: np.ndarray) -> dict[str, np.ndarray]:
    """precision, recall, f1 and support per class (0 where a ratio is undefined)."""
    confusion = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(confusion)
    predicted, support = confusion.sum(0), confusion.sum(1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support.astype(np.int64)}


def summary_scores(confusion: np.ndarray) -> dict[str, float]:
    """{"accuracy", "macro_f1"} of one split."""
    confusion = np.asarray(confusion)
    total = confusion.sum()
    scores = per_class_scores(confusion)
    present = (confusion.sum(0) + confusion.sum(1)) > 0
    return {"accuracy": float(np.trace(confusion) / total) if total else float("nan"),
            "macro_f1": float(scores["f1"][present].mean()) if present.any() else float("nan")}


class ConfusionTally:
    """Accumulates one epoch's predictions for the loop (`Classifier.epoch_tally`)."""

    def __init__(self, n_classes: int):
        self.n_classes = n_classes
        self.counts: Tensor | None = None

    def update(self, batch, output: dict[str, Tensor]) -> None:
        pairs = batch.labels.long() * self.n_classes + output["logits"].detach().argmax(-1)
        if self.counts is None:
            self.counts = torch.zeros(self.n_classes ** 2, dtype=torch.long, device=pairs.device)
        # scatter_add, not bincount: CUDA's bincount reads the largest value back to size its output
        self.counts.scatter_add_(0, pairs, torch.ones_like(pairs))

    def confusion(self) -> np.ndarray:
        if self.counts is None:
            return np.zeros((self.n_classes, self.n_classes), dtype=np.int64)
        return self.counts.reshape(self.n_classes, self.n_classes).cpu().numpy()

    def compute(self) -> dict[str, float]:
        return summary_scores(self.confusion())
