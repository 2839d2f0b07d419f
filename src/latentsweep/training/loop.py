"""The training loop: plain, model-agnostic, resumable.

It only calls the shared model interface (`forward`, `loss`) and reports each epoch to
callbacks (MLflow logging, Optuna pruning, ...) that it knows nothing about.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from ..data.batching import Batch, BatchLoader
from ..errors import CheckpointError, DivergedError
from .checkpoint import Checkpointer, set_rng_state, state_dict_to_cpu

log = logging.getLogger(__name__)


class EpochCallback(Protocol):
    def __call__(self, epoch: int, metrics: dict[str, float]) -> None:
        """Called after every epoch; may raise to stop training (e.g. optuna.TrialPruned)."""


@dataclass
class FitResult:
    best_val_loss: float
    best_epoch: int
    epochs_run: int
    history: list[dict[str, float]]
    best_state: dict[str, torch.Tensor]
    stopped_early: bool = False
    data_wait_s: float = 0.0
    train_s: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _autocast(device: torch.device, precision: str):
    if precision == "bf16" and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def with_input_noise(batch: Batch, std: float) -> Batch:
    """The batch with Gaussian noise of `std` on its valid steps (padding stays zero): the input of a
    denoising autoencoder, whose loss still compares the reconstruction with the clean values."""
    noise = torch.randn_like(batch.values) * std * batch.mask.unsqueeze(-1)
    return replace(batch, values=batch.values + noise)


def _run_epoch(model, loader: BatchLoader, optimizer, *, train: bool, device, precision: str,
               grad_clip: float | None, epoch: int, input_noise: float = 0.0,
               average: AveragedModel | None = None) -> dict[str, float]:
    """Mean of each loss term over the epoch, plus the scores of the model's optional tally.

    Terms are weighted by valid time steps, or by `model.batch_weight(batch)` when the model
    defines it (a classifier: per series). Scores that need the whole epoch's predictions
    (accuracy, macro-F1) come from `model.epoch_tally()`: an object with `update(batch, output)`
    and `compute() -> {name: value}`. `average`: a weight average updated after every optimiser step.
    """
    model.train(train)
    sums: dict[str, torch.Tensor] = {}
    weight_total = 0.0
    batch_weight = getattr(model, "batch_weight", lambda b: float(b.lengths.sum()))
    tally = model.epoch_tally() if hasattr(model, "epoch_tally") else None
    grad_ctx = contextlib.nullcontext() if train else torch.no_grad()
    # The first batch whose loss was not finite, kept on the device: reading the loss back every
    # batch would make the CPU wait for the GPU each step. Checked once per epoch (a diverged run
    # wastes at most one epoch; its checkpoints are the previous epochs', written before it).
    first_bad = bad_loss = None
    with grad_ctx:
        for step, batch in enumerate(loader):
            with _autocast(device, precision):
                output = model(with_input_noise(batch, input_noise) if train and input_noise else batch)
                terms = model.loss(batch, output)
            loss = terms["loss"]
            if train:
                if first_bad is None:
                    first_bad = torch.full((), -1, dtype=torch.long, device=loss.device)
                    bad_loss = torch.zeros((), dtype=torch.float32, device=loss.device)
                newly_bad = (first_bad < 0) & ~torch.isfinite(loss.detach())
                first_bad = torch.where(newly_bad, step, first_bad)
                bad_loss = torch.where(newly_bad, loss.detach().float(), bad_loss)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
                optimizer.step()
                if average is not None:
                    average.update_parameters(model)
            weight = batch_weight(batch)  # a float, or a tensor left on the device (read once per epoch)
            weight_total = weight_total + weight
            for name, value in terms.items():
                sums[name] = sums.get(name, 0.0) + value.detach().float() * weight
            if tally is not None:
                tally.update(batch, output)
    if first_bad is not None and int(first_bad) >= 0:
        raise DivergedError(
            f"training loss became {float(bad_loss)} at epoch {epoch}, batch {int(first_bad)} — lower "
            "optimizer.lr, set trainer.grad_clip, or check the data for extreme values")
    weight_total = float(weight_total)
    means = {name: float(total) / max(weight_total, 1e-12) for name, total in sums.items()}
    return {**means, **(tally.compute() if tally is not None else {})}


def _train_one_epoch(model, optimizer, train_loader: BatchLoader, val_loader: BatchLoader, epoch: int, *,
                     device, precision: str, grad_clip: float | None, input_noise: float,
                     average: AveragedModel | None = None) -> dict[str, float]:
    """One training pass and one validation pass: the epoch's metrics (a non-finite validation
    loss stops the run). With a weight `average`, the validation pass scores the average."""
    t0 = time.perf_counter()
    train_loader.set_epoch(epoch)
    if hasattr(model, "on_epoch_start"):
        model.on_epoch_start(epoch)
    train_terms = _run_epoch(model, train_loader, optimizer, train=True, device=device,
                             precision=precision, grad_clip=grad_clip, epoch=epoch, input_noise=input_noise,
                             average=average)
    val_terms = _run_epoch(model if average is None else average.module, val_loader, optimizer, train=False, device=device,
                           precision=precision, grad_clip=None, epoch=epoch)
    val_loss = val_terms["loss"]
    if not math.isfinite(val_loss):
        raise DivergedError(f"validation loss became {val_loss} at epoch {epoch} — lower "
                            "optimizer.lr or set trainer.grad_clip")
    metrics = {"train_loss": train_terms["loss"], "val_loss": val_loss, "epoch_time_s": time.perf_counter() - t0}
    metrics.update({f"train_{k}": v for k, v in train_terms.items() if k != "loss"})
    metrics.update({f"val_{k}": v for k, v in val_terms.items() if k != "loss"})
    return metrics


@dataclass
class _Progress:
    """What the loop carries from epoch to epoch, and what a checkpoint keeps of it."""

    best_state: dict[str, torch.Tensor]
    history: list[dict[str, float]] = field(default_factory=list)
    best_val: float = math.inf
    best_epoch: int = -1
    bad_epochs: int = 0

    def record(self, epoch: int, metrics: dict[str, float], model: torch.nn.Module) -> None:
        """The epoch's metrics; its weights when its validation loss is the best so far."""
        if metrics["val_loss"] < self.best_val:
            self.best_val, self.best_epoch, self.bad_epochs = metrics["val_loss"], epoch, 0
            self.best_state = state_dict_to_cpu(model.state_dict())
        else:
            self.bad_epochs += 1
        metrics["best_val_loss"] = self.best_val
        self.history.append({"epoch": epoch, **metrics})

    def loop_state(self) -> dict[str, Any]:
        return {"history": self.history, "best_val": self.best_val, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs}


def weight_average(model: torch.nn.Module, decay: float) -> AveragedModel | None:
    """An exponential moving average of `model`'s weights and buffers (`trainer.ema_decay`), or None
    at decay 0. At small batches each optimiser step moves the weights a lot, and the latents of the
    last step carry that noise; the average of the last ~1/(1 - decay) steps does not (PyTorch's
    `AveragedModel`, the same EMA as timm's ModelEmaV3)."""
    if not decay:
        return None
    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)


def _restore(model: torch.nn.Module, optimizer: torch.optim.Optimizer, ckpt: dict[str, Any],
             average: AveragedModel | None = None) -> _Progress:
    """Model, optimiser, weight average and RNG as `Checkpointer.load` returned them; the loop's progress."""
    if (ckpt.get("average") is None) != (average is None):
        had = "a weight average" if average is None else "no weight average"
        raise CheckpointError(f"the checkpoint has {had} — resume with the trainer.ema_decay it was trained with")
    model.load_state_dict(ckpt["model"])
    if average is not None:
        average.load_state_dict(ckpt["average"])
    optimizer.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"])
    loop = ckpt["loop"]
    progress = _Progress(best_state=ckpt["best_state"] if ckpt["best_state"] is not None
                         else state_dict_to_cpu(model.state_dict()),
                         history=loop["history"], best_val=loop["best_val"], best_epoch=loop["best_epoch"],
                         bad_epochs=loop["bad_epochs"])
    log.info("resumed from epoch %d (best val_loss %.5g)", ckpt["epoch"], progress.best_val)
    return progress


def _epoch_bar(start_epoch: int, max_epochs: int, progress: bool | None) -> tqdm:
    """The epochs to run, as a progress bar (shown on a terminal when `progress` is None)."""
    return tqdm(range(start_epoch, max_epochs), desc="epochs", leave=False, initial=start_epoch, total=max_epochs,
                disable=not (sys.stderr.isatty() if progress is None else progress))


def _show_epoch(bar: tqdm, epoch: int, max_epochs: int, metrics: dict[str, float]) -> None:
    """The epoch's losses in the log and on the progress bar."""
    log.info("epoch %d/%d train_loss %.5g val_loss %.5g (%.2fs)", epoch + 1, max_epochs,
             metrics["train_loss"], metrics["val_loss"], metrics["epoch_time_s"])
    bar.set_postfix(train=f"{metrics['train_loss']:.4g}", val=f"{metrics['val_loss']:.4g}")


def fit(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    train_loader: BatchLoader,
    val_loader: BatchLoader,
    *,
    max_epochs: int,
    device: torch.device,
    patience: int | None = None,
    grad_clip: float | None = None,
    precision: str = "32",
    checkpointer: Checkpointer | None = None,
    resume_from: dict[str, Any] | None = None,
    callbacks: Sequence[EpochCallback] = (),
    progress: bool | None = None,
    loop_extras: Callable[[], dict[str, Any]] | None = None,
    input_noise: float = 0.0, ema_decay: float = 0.0,  # the denoising input and the weight average
) -> FitResult:
    """Train for up to `max_epochs`, keep the weights with the lowest validation loss.

    `input_noise` > 0: a denoising autoencoder (noisy training inputs, every loss against the clean
    series). `ema_decay` > 0: validate and keep a moving average of the weights (`weight_average`).
    With `resume_from` (what `Checkpointer.load` returned) the loop continues after that epoch and,
    for the same seed, ends with the same weights as an uninterrupted run. The checkpointer writes
    the epochs it says are due, and the last one."""
    average = weight_average(model, ema_decay)
    evaluated = model if average is None else average.module  # what is validated and kept
    if resume_from is not None:
        state, start_epoch = _restore(model, optimizer, resume_from, average), resume_from["epoch"] + 1
    else:
        state, start_epoch = _Progress(best_state=state_dict_to_cpu(evaluated.state_dict())), 0

    def save_checkpoint(epoch: int) -> None:
        loop_state = {**state.loop_state(), **(loop_extras() if loop_extras else {})}
        checkpointer.save(epoch=epoch, model=model, optimizer=optimizer, best_state=state.best_state,
                          loop_state=loop_state, average=average)

    bar, stopped_early, t_start = _epoch_bar(start_epoch, max_epochs, progress), False, time.perf_counter()
    train_loader.data_wait_s = val_loader.data_wait_s = 0.0
    for epoch in bar:
        if state.history and patience and state.bad_epochs >= patience:
            stopped_early = True
            break
        metrics = _train_one_epoch(model, optimizer, train_loader, val_loader, epoch, device=device,
                                   precision=precision, grad_clip=grad_clip, input_noise=input_noise,
                                   average=average)
        state.record(epoch, metrics, evaluated)
        _show_epoch(bar, epoch, max_epochs, metrics)
        if checkpointer is not None and checkpointer.due():
            save_checkpoint(epoch)
        for callback in callbacks:
            callback(epoch, metrics)
    bar.close()
    if checkpointer is not None and state.history and checkpointer.newest_epoch != state.history[-1]["epoch"]:
        save_checkpoint(state.history[-1]["epoch"])  # the run's last epoch: what a resume with more epochs needs
    return FitResult(best_val_loss=state.best_val, best_epoch=state.best_epoch, epochs_run=len(state.history),
                     history=state.history, best_state=state.best_state, stopped_early=stopped_early,
                     data_wait_s=train_loader.data_wait_s + val_loader.data_wait_s,
                     train_s=time.perf_counter() - t_start)
