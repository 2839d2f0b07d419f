"""`train(cfg) -> float`: one training run from a composed config.

Glue only: validate the config, prepare data, build model and optimiser, run the loop, and
hand results to tracking. Each step lives in its own module.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import torch
from omegaconf import DictConfig, OmegaConf

from .build import build_optimizer
from .config import validate
from .data import PreparedData, collate
from .errors import CheckpointError, DataError, ResourceError
from .loading import load_data, make_loaders
from .objectives import (
    check_objective,
    label_free_metrics,
    objective_metrics,
    objective_names,
    objective_value,
    resolve,
)
from .tasks.setup import log_task_results, setup_task
from .threads import RunLease, ThreadPolicy
from .timing import PhaseClock
from .tracking.tracker import Tracker
from .training import Checkpointer, fit, resolve_device, seed_everything
from .training.checkpoint import (
    CHECKPOINT_FILES,
    LEGACY_POINTER,
    SLOT_FILES,
    has_checkpoint,
    is_finished,
)
from .training.device import configure_cuda, set_deterministic

log = logging.getLogger("latentsweep")

RESUME_SEARCH_ROOT = Path("outputs")


def _find_checkpoint_dir(trainer_cfg: DictConfig) -> Path:
    """The checkpoint folder to resume from: `resume_from`, else the newest under outputs/ whose
    run did not finish (a finished run marks its checkpoint FINISHED)."""
    if trainer_cfg.resume_from:
        base = Path(trainer_cfg.resume_from)
        for candidate in (base / "checkpoint", base):
            if has_checkpoint(candidate):
                return candidate
        raise CheckpointError(f"no checkpoint under {base} — point trainer.resume_from at a run's "
                              f"output directory (it holds checkpoint/{SLOT_FILES[0]})")
    found = sorted({p.parent for name in (*CHECKPOINT_FILES, LEGACY_POINTER)
                    for p in RESUME_SEARCH_ROOT.glob(f"**/checkpoint/{name}")}, key=lambda p: p.stat().st_mtime)
    unfinished = [p for p in found if not is_finished(p)]
    if not unfinished:
        what = "only finished runs' checkpoints" if found else "no checkpoint"
        raise CheckpointError(f"trainer.resume=true but {what} under {RESUME_SEARCH_ROOT}/ — "
                              "set trainer.resume_from=<run output dir> or drop trainer.resume")
    return unfinished[-1]


def fingerprint(cfg: DictConfig) -> dict[str, Any]:
    """Config values a checkpoint must share with the run that resumes it."""
    flat: dict[str, Any] = {"seed": cfg.seed}
    for group in ("model", "data", "optimizer", "task"):
        node = cfg.get(group)
        if node is not None:
            for key, value in OmegaConf.to_container(node, resolve=True).items():
                flat[f"{group}.{key}"] = value
    if cfg.trainer.get("ema_decay"):  # only when on: checkpoints written before the option still resume
        flat["trainer.ema_decay"] = cfg.trainer.ema_decay
    return flat


def _save_config(cfg: DictConfig, data: PreparedData) -> dict[str, Any]:
    return {
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "spec": data.spec.as_dict(),
        "data": OmegaConf.to_container(cfg.data, resolve=True),
        "task": OmegaConf.to_container(cfg.task, resolve=True) if cfg.get("task") else None,
        "seed": cfg.seed,
        # normalisation stats of the training split + resampling: raw input is prepared like training
        "preprocess": data.report["preprocess"],
    }


def _log_results(tracker: Tracker, model, data: PreparedData, result, cfg: DictConfig, device,
                 draw_figures: bool = True) -> None:
    if not tracker.enabled:
        return
    tracker.log_metrics({"best_val_loss": result.best_val_loss, "best_epoch": result.best_epoch,
                         "epochs_run": result.epochs_run,
                         "data_wait_share": result.data_wait_s / max(result.train_s, 1e-9)})
    if draw_figures:
        _log_figures(tracker, model, data, result, cfg, device)
    log_task_results(tracker, model, data, result, device)  # e.g. a classifier's confusion matrix
    if cfg.tracking.log_model:
        tracker.log_model(model.state_dict(), _save_config(cfg, data))


def _log_figures(tracker: Tracker, model, data: PreparedData, result, cfg: DictConfig, device) -> None:
    """The loss curve, a few validation reconstructions, and prior samples of a generative model."""
    from . import figures  # matplotlib: imported after training, not before the first step

    fig = figures.loss_curve(result.history, title=f"{cfg.model._target_.rsplit('.', 1)[-1]}")
    tracker.log_figure(fig, "figures/loss_curve.png")
    figures.close(fig)
    n = min(cfg.tracking.n_reconstructions, len(data.val))
    if n > 0 and hasattr(model, "reconstruct"):
        picks = torch.linspace(0, len(data.val) - 1, n).round().long().tolist()
        batch = collate(data.val.to("cpu"), picks).to(device)
        recon = model.reconstruct(batch).float().cpu()
        lengths = batch.lengths.tolist()
        fig = figures.reconstructions([data.val[i] for i in picks],
                                      [recon[j, : lengths[j]] for j in range(n)],
                                      [data.val.ids[i] for i in picks], data.spec.image_shape)
        tracker.log_figure(fig, "figures/reconstructions.png")
        figures.close(fig)
    if hasattr(model, "sample"):  # generative models (vrae): series drawn from the prior
        length = data.spec.fixed_length or int(data.val.lengths.float().median())
        with torch.no_grad():
            samples = model.sample(min(6, max(n, 1)), length).float().cpu()
        fig = figures.reconstructions(list(samples), list(samples), [f"prior {i}" for i in range(len(samples))],
                                      data.spec.image_shape, title="samples from the prior")
        tracker.log_figure(fig, "figures/prior_samples.png")
        figures.close(fig)


def _wants_figures(cfg: DictConfig, improves: Callable[[Any], bool] | None, value: Any) -> bool:
    """`tracking.figures`: all, none, or improving (every single run; a sweep's trial when
    `improves(value)`, i.e. it beats every trial that finished before it)."""
    policy = str(cfg.tracking.get("figures", "all"))
    if policy != "improving" or improves is None:
        return policy != "none"
    try:
        return bool(improves(value))
    except Exception as exc:  # the study could not be read (storage busy or down): draw them anyway
        log.warning("could not compare with the study's finished trials (%s): drawing this trial's figures",
                    str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__)
        return True


def _log_label_free(tracker: Tracker, cfg: DictConfig, **context: Any) -> None:
    """Each label-free candidate score (`label_free.<name>`) beside the objective, for autoencoders:
    what a user compares in MLflow to see how the sweep would choose without labels."""
    task = cfg.get("task")
    if not tracker.enabled or (task is not None and task.get("name", "reconstruct") != "reconstruct"):
        return
    try:
        tracker.log_metrics(label_free_metrics(**context))
    except DataError as exc:  # e.g. too few series to cluster: the run itself is fine
        log.warning("label-free scores skipped: %s", exc)


def _log_missing_epochs(tracker: Tracker, history: Sequence[dict]) -> None:
    """Write the checkpointed epochs the MLflow run lacks: the one whose metrics a crash cut off
    between the checkpoint and the tracker, or all of them in a new run (the old one is gone), so
    the run's per-epoch history is whole and has each epoch once."""
    if not tracker.enabled:
        return
    logged = tracker.metric_steps("val_loss")
    for entry in history:
        if entry["epoch"] not in logged:
            tracker.log_metrics({k: v for k, v in entry.items() if k != "epoch"}, step=entry["epoch"])


class BackgroundRun:
    """The run's MLflow tracker, opened in a thread while the first epoch trains.

    Importing MLflow and opening its store take seconds that the first training step does not
    need (issue 21), and the first epoch's torch ops leave the interpreter free for them. The loop
    waits for the tracker at the end of the first epoch (its checkpoint records the run id, its
    metrics go to the run), so a store that cannot be opened stops the run there, with the same
    one-line error and before anything of the run is written.
    """

    def __init__(self, open_run: Callable[[], Tracker]):
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(1, thread_name_prefix="mlflow-open")
        self._future = pool.submit(open_run)
        pool.shutdown(wait=False)  # the thread ends with open_run; nothing else is submitted

    def tracker(self) -> Tracker:
        """The tracker, once open; raises what opening it raised."""
        return self._future.result()

    def tracker_or_none(self) -> Tracker | None:
        """The tracker, or None when it could not be opened."""
        return None if self._future.exception() is not None else self._future.result()


def out_of_memory_error(cfg: DictConfig, device: torch.device, exc: BaseException) -> ResourceError:
    """A one-line reason naming memory and the sizes that drive it; the sweep records it as FAIL."""
    sizes = ", ".join(f"model.{k}={cfg.model[k]}" for k in ("hidden_size", "d_model", "latent_dim", "num_layers")
                      if k in cfg.model)
    err = ResourceError(f"out of GPU memory on {device} with data.batch_size={cfg.data.batch_size}, {sizes} — "
                        "lower these sizes or run fewer trials per GPU (sweep.trials_per_gpu)")
    err.__cause__ = exc
    return err


def train(cfg: DictConfig, callbacks: Sequence[Callable[[int, dict], None]] = (),
          improves: Callable[[Any], bool] | None = None) -> float:
    """Train one model as `cfg` says; return the objective (best validation loss by default).

    `callbacks(epoch, metrics)` run after each epoch; a resumed run first replays the checkpointed
    epochs to them, so a callback must ignore an epoch it has seen (the Optuna reporter does).
    `improves(objective value)`: whether a sweep's trial beats the finished ones, for
    `tracking.figures=improving` (None: a single run, which always draws them)."""
    clock = PhaseClock()  # where the run's time goes: logged as one `timing:` line at the end
    validate(cfg)
    objective_names(cfg.objective)  # an unknown objective fails before any work
    seed_everything(cfg.seed)
    device = resolve_device(cfg.trainer.device)
    set_deterministic(bool(cfg.trainer.get("deterministic", False)))
    if device.type == "cuda":
        configure_cuda(deterministic=bool(cfg.trainer.get("deterministic", False)))
    with RunLease() as lease:  # counted by every run on this machine while it trains
        threads = ThreadPolicy(cfg.model._target_.rsplit(".", 1)[-1], device.type, cfg.trainer.num_threads,
                               launcher_runs=cfg.sweep.parallel_trials or 1, lease=lease)
        log.info("%d torch thread(s) for %s on %s (trainer.num_threads overrides)", threads.apply(),
                 threads.model_class, device)
        try:
            return _train(cfg, [threads, *callbacks], device, clock, improves)
        except torch.cuda.OutOfMemoryError as exc:  # before the run started: the model or data set itself
            raise out_of_memory_error(cfg, device, exc) from exc


def _fail_run(tracker: Tracker, run_id: str | None, exc: BaseException, cfg: DictConfig,
              device: torch.device) -> BaseException:
    """Tag and end the MLflow run for `exc` and return what to raise (running out of GPU memory
    becomes a one-line ResourceError). A pruned trial or Ctrl-C ends KILLED, the rest FAILED."""
    if isinstance(exc, torch.cuda.OutOfMemoryError):
        exc = out_of_memory_error(cfg, device, exc)
    pruned = type(exc).__name__ == "TrialPruned"
    try:  # the store may be what failed (server down): never hide the original error
        if pruned:
            tracker.set_tags({"pruned": "true"})
        else:
            tracker.set_tags({"failure": f"{type(exc).__name__}: {str(exc)[:400]}"})
    except Exception as tag_exc:
        log.warning("could not tag MLflow run %s: %s", run_id, str(tag_exc).splitlines()[0][:200])
    tracker.end("KILLED" if pruned or isinstance(exc, KeyboardInterrupt) else "FAILED")
    return exc


def _open_checkpoint(cfg: DictConfig) -> tuple[Checkpointer | None, dict | None]:
    """(checkpointer, state to resume from): `trainer.resume` loads one (failing fast on a corrupt or
    mismatched checkpoint), `trainer.checkpoint_dir` starts one, neither means no checkpoints."""
    timing = {"sync_s": cfg.trainer.checkpoint_sync_s, "every_s": cfg.trainer.checkpoint_every_s}
    if cfg.trainer.resume:
        checkpointer = Checkpointer(_find_checkpoint_dir(cfg.trainer), fingerprint(cfg), **timing)
        return checkpointer, checkpointer.load()
    if cfg.trainer.checkpoint_dir:
        checkpointer = Checkpointer(cfg.trainer.checkpoint_dir, fingerprint(cfg), **timing)
        checkpointer.clear_stale()
        return checkpointer, None
    return None, None


def _run_record(cfg: DictConfig, data: PreparedData, model: torch.nn.Module, objective: Any, task_tags: dict,
                device: torch.device, resume_state: dict | None) -> tuple[dict, dict]:
    """The MLflow run's params (the whole config, sizes, objective) and tags (model, device, task)."""
    params = {k: OmegaConf.to_container(cfg[k], resolve=True)
              for k in ("model", "data", "optimizer", "trainer", "task") if cfg.get(k) is not None}
    params.update(seed=cfg.seed, objective=cfg.objective, objective_used=objective,
                  n_train=len(data.train), n_val=len(data.val), n_test=data.report["n_test"],
                  dropped_short=data.report["dropped_short"], n_parameters=sum(p.numel() for p in model.parameters()))
    tags = {"model": cfg.model._target_.rsplit(".", 1)[-1], "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "precision": str(cfg.trainer.precision), **task_tags, **cfg.extra_tags}
    if resume_state:
        tags["resumed_from_epoch"] = resume_state["epoch"]
    return params, tags


def _background_run(cfg: DictConfig, params: dict, tags: dict, resume_state: dict | None) -> BackgroundRun:
    """The MLflow run, opened in a thread while the first epoch trains (a resumed run is continued)."""
    trial = cfg.extra_tags.get("optuna_trial")
    run_name = cfg.tracking.run_name or (f"trial {trial}" if trial is not None else None)
    resume_run_id = resume_state["loop"].get("mlflow_run_id") if resume_state else None
    # a copy taken now: fit() appends to the checkpoint's history list while open_run() runs in its
    # thread, and an epoch appended there would be logged twice (here and by log_epoch)
    checkpointed_history = list(resume_state["loop"]["history"]) if resume_state else []

    def open_run() -> Tracker:
        tracker = Tracker.from_config(cfg.tracking)
        # params are logged only when a new run starts: also when the resumed run is gone or finished
        run_id = tracker.start(run_name=run_name, params=params, tags=tags, resume_run_id=resume_run_id,
                               parent_run_id=cfg.extra_tags.get("parent_run_id"))
        if resume_state:
            _log_missing_epochs(tracker, checkpointed_history)
        if run_id:
            log.info("MLflow run %s in %s", run_id, tracker.uri)
        return tracker

    return BackgroundRun(open_run)


def _raise_failed(tracker: Tracker, exc: BaseException, cfg: DictConfig, device: torch.device) -> NoReturn:
    """End the run for `exc`, then raise it (or the one-line error it becomes)."""
    reason = _fail_run(tracker, tracker.run_id, exc, cfg, device)
    if reason is exc:
        raise exc
    raise reason from exc


def _train(cfg: DictConfig, callbacks: Sequence[Callable[[int, dict], None]], device: torch.device,
           clock: PhaseClock, improves: Callable[[Any], bool] | None = None) -> float:
    data = load_data(cfg.data, cfg.seed)
    objective = resolve(cfg.objective, data.spec)  # 'a|b': a with labels, else b
    check_objective(objective, data.spec)  # e.g. probe_accuracy without labels
    task = setup_task(cfg, data)  # task=classify: head, pre-trained encoder (replaces cfg.model), weights
    cfg, model = task.cfg, task.model.to(device)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    train_loader, val_loader = make_loaders(data, cfg.data, cfg.seed, device)
    checkpointer, resume_state = _open_checkpoint(cfg)
    params, tags = _run_record(cfg, data, model, objective, task.tags, device, resume_state)
    run = _background_run(cfg, params, tags, resume_state)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    log.info("training: %d train / %d val series, %s parameters, %s", len(data.train), len(data.val),
             f"{params['n_parameters']:,}", device)
    clock.mark_startup()
    log_epoch = clock.timed("logging", lambda epoch, metrics: run.tracker().log_epoch(metrics, step=epoch))
    try:
        if resume_state:  # callbacks see the checkpointed epochs too (e.g. the one a crash cut off)
            for entry in resume_state["loop"]["history"]:
                for callback in callbacks:
                    callback(entry["epoch"], {k: v for k, v in entry.items() if k != "epoch"})
        loop_start, epochs_before = time.perf_counter(), len(resume_state["loop"]["history"]) if resume_state else 0
        result = fit(model, optimizer, train_loader, val_loader, max_epochs=cfg.trainer.max_epochs,
                     device=device, patience=cfg.trainer.patience, grad_clip=cfg.trainer.grad_clip,
                     precision=str(cfg.trainer.precision), checkpointer=checkpointer, resume_from=resume_state,
                     callbacks=[log_epoch, *callbacks],
                     progress=cfg.trainer.progress, loop_extras=lambda: {"mlflow_run_id": run.tracker().run_id},
                     input_noise=cfg.trainer.input_noise, ema_decay=cfg.trainer.ema_decay)
    except BaseException as exc:
        tracker = run.tracker_or_none()
        if tracker is None:  # the MLflow run never opened: `exc` is that error, or came before it
            raise
        _raise_failed(tracker, exc, cfg, device)
    clock.split_loop(time.perf_counter() - loop_start, sum(e["epoch_time_s"] for e in result.history[epochs_before:]))
    return _finish_run(run.tracker(), cfg, model, data, result, objective, device, checkpointer, clock, improves)


def _finish_run(tracker: Tracker, cfg: DictConfig, model: torch.nn.Module, data: PreparedData, result: Any,
                objective: Any, device: torch.device, checkpointer: Checkpointer | None, clock: PhaseClock,
                improves: Callable[[Any], bool] | None = None) -> Any:
    """The best weights' objective, figures and saved model; the run ends FINISHED (or FAILED)."""
    if not math.isfinite(result.best_val_loss):
        tracker.end("FAILED")
        raise DataError("no finite validation loss was recorded — check the data")
    try:  # figures, the saved model and a latent-based objective run on the GPU too
        model.load_state_dict(result.best_state)
        if device.type == "cuda":
            tracker.log_metrics({"peak_gpu_memory_mb": torch.cuda.max_memory_allocated(device) / 2**20})
        latents: dict = {}  # encoded once for the objective and the label-free scores
        with clock.phase("objective"):
            value = objective_value(objective, model=model, data=data, result=result, device=device, _cache=latents)
        with clock.phase("label_free"):
            _log_label_free(tracker, cfg, model=model, data=data, device=device, _cache=latents)
        with clock.phase("logging"):
            _log_results(tracker, model, data, result, cfg, device,
                         draw_figures=tracker.enabled and _wants_figures(cfg, improves, value))
    except BaseException as exc:
        _raise_failed(tracker, exc, cfg, device)
    with clock.phase("logging"):
        tracker.log_metrics({**objective_metrics(objective, value), **clock.metrics()})
        tracker.flush()  # every metric in one write; a store that went away fails the run here, in one line
        tracker.end("FINISHED")
    if checkpointer is not None:
        checkpointer.mark_finished()  # trainer.resume=true picks an unfinished run, never this one
    log.info("best val_loss %.5g at epoch %d of %d | MLflow run %s | store %s",
             result.best_val_loss, result.best_epoch + 1, result.epochs_run, tracker.run_id, tracker.uri)
    log.info(clock.line())
    return value
