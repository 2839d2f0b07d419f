"""The supervised mode: any autoencoder's encoder + an MLP head, trained on the series' labels.

`Classifier` wraps the whole autoencoder (decoder included, unused) rather than copying its
encoder out: every model in the zoo keeps its own `encode`, `get_latent` gives the same latents
as the wrapped model, and weights of an autoencoder run load into `classifier.autoencoder` as they
are. It offers the loop's optional hooks (`batch_weight`, `epoch_tally`) so the loop itself stays
free of classification code. Like models/, this module imports neither Hydra nor MLflow.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..data.batching import Batch, collate
from ..data.series import DataSpec, SeriesSet
from ..models.base import eval_mode
from .metrics import ConfusionTally

LOSSES = ("cross_entropy", "focal")


def focal_loss(logits: Tensor, targets: Tensor, *, gamma: float = 2.0, alpha: Tensor | None = None,
               weight: Tensor | None = None, label_smoothing: float = 0.0) -> Tensor:
    """Multi-class focal loss (Lin et al. 2017): mean of alpha_y * w_y * (1 - p_y)^gamma * CE.

    Normalised like `F.cross_entropy(weight=w)` (by the sum of w_y, else by the count), so
    gamma=0 without alpha *is* (weighted) cross-entropy; alpha is a per-class factor on top.
    With label smoothing the CE term is the smoothed one and p_y stays the true-class probability.
    """
    logits = logits.float()
    log_p = F.log_softmax(logits, dim=-1)
    ce = F.cross_entropy(logits, targets, reduction="none", label_smoothing=label_smoothing)
    p_true = log_p.gather(1, targets.unsqueeze(1)).squeeze(1).exp()
    per_series = (1.0 - p_true).clamp_min(0.0).pow(gamma) * ce if gamma else ce
    if alpha is not None:
        per_series = per_series * alpha[targets]
    if weight is None:
        return per_series.mean()
    w = weight[targets]
    return (per_series * w).sum() / w.sum().clamp_min(1e-12)


def balanced_class_weights(labels: Tensor, n_classes: int) -> Tensor:
    """n / (k * n_c) per class, as scikit-learn's "balanced" (k: classes seen); 1 for unseen ones."""
    counts = torch.bincount(labels.long().cpu(), minlength=n_classes).double()
    seen = counts > 0
    weights = torch.ones(n_classes, dtype=torch.float64)
    weights[seen] = counts.sum() / (int(seen.sum()) * counts[seen])
    return weights.float()


def _head(latent_dim: int, sizes: Sequence[int], n_classes: int, dropout: float) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = latent_dim
    for size in sizes:
        layers += [nn.Linear(width, int(size)), nn.ReLU(), nn.Dropout(dropout)]
        width = int(size)
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


def latent_size(autoencoder: nn.Module, spec: DataSpec) -> int:
    """The encoder's output width, from one zero series (models name their sizes differently)."""
    length = spec.fixed_length or min(spec.max_length, 64)
    probe = collate(SeriesSet.from_arrays([torch.zeros(length, spec.n_channels)]), [0])
    probe = probe.to(next(autoencoder.parameters()).device)
    with eval_mode(autoencoder), torch.no_grad():
        return int(autoencoder.encode(probe).shape[-1])


class Classifier(nn.Module):
    """latent = autoencoder.encode(batch) -> MLP head -> logits over `spec.n_classes` classes."""

    def __init__(self, autoencoder: nn.Module, spec: DataSpec, *, head_sizes: Sequence[int] = (64,),
                 dropout: float = 0.1, loss: str = "cross_entropy", gamma: float = 2.0,
                 alpha: float | Sequence[float] | None = None,
                 class_weights: Sequence[float] | None = None, label_smoothing: float = 0.0,
                 freeze_encoder: bool = False):
        super().__init__()
        n_classes = spec.n_classes or 0
        if n_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, the data has {n_classes}")
        if loss not in LOSSES:
            raise ValueError(f"unknown task.loss={loss!r}; choose one of {LOSSES}")
        self.autoencoder = autoencoder
        self.spec = spec
        self.n_classes = n_classes
        self.loss_kind, self.gamma, self.label_smoothing = loss, float(gamma), float(label_smoothing)
        self.freeze_encoder = bool(freeze_encoder)
        self.head = _head(latent_size(autoencoder, spec), head_sizes, n_classes, dropout)
        # Buffers, so a saved classifier (and its "balanced" weights) reloads from its state dict.
        self.register_buffer("class_weights", self._per_class(class_weights, "task.class_weights"))
        self.register_buffer("alpha", self._alpha(alpha))
        if self.freeze_encoder:
            self.autoencoder.requires_grad_(False)
            self.autoencoder.eval()

    def _per_class(self, values: Sequence[float] | None, key: str) -> Tensor:
        if values is None:
            return torch.ones(self.n_classes)
        values = [float(v) for v in values]
        if len(values) != self.n_classes:
            raise ValueError(f"{key} has {len(values)} entries but the data has {self.n_classes} classes "
                             f"({', '.join(self.spec.class_names or ())}) — give one per class")
        if sum(values) <= 0:
            raise ValueError(f"{key} are all zero — give at least one positive weight")
        return torch.tensor(values, dtype=torch.float32)

    def _alpha(self, alpha: float | Sequence[float] | None) -> Tensor:
        if alpha is None:
            return torch.ones(self.n_classes)
        if isinstance(alpha, (int, float)):  # the binary convention: alpha for class 1, 1-alpha for class 0
            if self.n_classes != 2 or not 0.0 <= alpha <= 1.0:
                raise ValueError(f"a scalar task.alpha={alpha} means [1-a, a] for 2 classes with a in [0, 1]; "
                                 f"the data has {self.n_classes} classes — give one per class, e.g. task.alpha=[...]")
            return torch.tensor([1.0 - float(alpha), float(alpha)])
        return self._per_class(alpha, "task.alpha")

    def set_class_weights(self, weights: Tensor) -> None:
        self.class_weights.copy_(weights.to(self.class_weights))

    # -- the model interface the loop, tracking and analysis use ---------------------------------
    def train(self, mode: bool = True) -> Classifier:
        """A frozen encoder stays in eval mode: its dropout is off and batch statistics never move."""
        super().train(mode)
        if self.freeze_encoder:
            self.autoencoder.eval()
        return self

    def encode(self, batch: Batch) -> Tensor:
        if self.freeze_encoder:
            with torch.no_grad():
                return self.autoencoder.encode(batch)
        return self.autoencoder.encode(batch)

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        latent = self.encode(batch)
        return {"latent": latent, "logits": self.head(latent)}

    def loss(self, batch: Batch, output: dict[str, Tensor]) -> dict[str, Tensor]:
        if batch.labels is None:
            raise ValueError("a classifier needs labelled batches")
        logits, labels = output["logits"].float(), batch.labels
        if self.loss_kind == "focal":
            loss = focal_loss(logits, labels, gamma=self.gamma, alpha=self.alpha, weight=self.class_weights,
                              label_smoothing=self.label_smoothing)
        else:
            loss = F.cross_entropy(logits, labels, weight=self.class_weights,
                                   label_smoothing=self.label_smoothing)
        return {"loss": loss}

    def batch_weight(self, batch: Batch) -> Tensor:
        """The loop's epoch average is per series, weighted like the loss (sum of class weights).
        A tensor on the model's device: the loop reads it back once per epoch, not per batch."""
        return self.class_weights[batch.labels].sum()

    def epoch_tally(self) -> ConfusionTally:
        """Collects an epoch's predictions; the loop adds its accuracy and macro_f1 to the metrics."""
        return ConfusionTally(self.n_classes)

    def on_epoch_start(self, epoch: int) -> None:
        if hasattr(self.autoencoder, "on_epoch_start"):
            self.autoencoder.on_epoch_start(epoch)

    @torch.no_grad()
    def get_latent(self, batch: Batch) -> Tensor:
        return self.autoencoder.get_latent(batch)

    @torch.no_grad()
    def predict_logits(self, batch: Batch) -> Tensor:
        with eval_mode(self):
            return self.forward(batch)["logits"]

