"""How trials share a machine: parallel trials per sweep, and the GPU each trial trains on.

Small autoencoders leave a modern GPU idle, waiting on kernel launches; several trial processes
on one GPU fill it (`make gpu-check` measures by how much: benchmarks/results/gpu-check/
sharing.json). So on a CUDA box a sweep runs `trials_per_gpu` trial processes per visible GPU,
each new trial on the least-loaded GPU (`GpuSlots`); on a CPU box as many trials as there are
cores. Each trial's CPU threads follow `latentsweep.threads`.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

# Trials sharing one GPU by default: 16 was the best of 1/8/16 in the issue 12 prototype, with memory
# to spare for these model sizes (our own run: `make gpu-check`); override with trials_per_gpu.
DEFAULT_TRIALS_PER_GPU = 16


@dataclass(frozen=True)
class JobPlan:
    n_jobs: int
    n_gpus: int


def visible_gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count() if torch.cuda.is_available() else 0
    except (ImportError, RuntimeError) as exc:  # a broken CUDA install: say so, then count none
        logging.getLogger("latentsweep").warning("CUDA could not be initialised (%s): counting 0 GPUs", exc)
        return 0


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def plan_jobs(n_gpus: int | None = None, cores: int | None = None,
              trials_per_gpu: int = DEFAULT_TRIALS_PER_GPU) -> JobPlan:
    """Parallel trials for this machine."""
    n_gpus = visible_gpus() if n_gpus is None else n_gpus
    cores = available_cores() if cores is None else cores
    if trials_per_gpu < 1:
        raise ValueError(f"sweep.trials_per_gpu must be >= 1, got {trials_per_gpu}")
    n_jobs = n_gpus * trials_per_gpu if n_gpus > 0 else max(1, cores)
    return JobPlan(n_jobs=n_jobs, n_gpus=n_gpus)


def register_resolvers() -> None:
    """Config resolvers: `${ls_n_jobs:<trials per GPU>}` sizes `hydra/launcher=trials`, and
    `${ls_parallel:<launcher n_jobs>}` turns joblib's -1 ("all cores") into a count."""
    from omegaconf import OmegaConf

    _register_resolver = getattr(OmegaConf, "register_resolver", None) or OmegaConf.register_new_resolver
    if not OmegaConf.has_resolver("ls_n_jobs"):
        _register_resolver("ls_n_jobs", lambda tpg=DEFAULT_TRIALS_PER_GPU: plan_jobs(
            trials_per_gpu=int(tpg)).n_jobs)
    if not OmegaConf.has_resolver("ls_parallel"):
        _register_resolver("ls_parallel", lambda n=1: int(n) if int(n) > 0 else available_cores())


def least_loaded_gpu(trials_on: list[int]) -> int:
    """The GPU the next trial should train on: the one running the fewest trials (lowest index on a
    tie). With every worker busy, that is exactly the GPU of the trial that just ended."""
    return min(range(len(trials_on)), key=lambda gpu: (trials_on[gpu], gpu))


class GpuSlots:
    """Where each running trial trains, for trials handed out as workers free up.

    `job number mod GPUs` only balances batches that start and end together:
    once trials end in any order, a new job can land on a GPU that is already full while another
    idles. Placing each new trial on the least-loaded GPU keeps at most ceil(running / GPUs)
    trials on any GPU, so never more than `trials_per_gpu` with `trials_per_gpu` x GPUs workers.
    """

    def __init__(self, n_gpus: int) -> None:
        self.trials_on = [0] * n_gpus
        self.gpu_of: dict[object, int] = {}

    def take(self, trial: object) -> str:
        gpu = least_loaded_gpu(self.trials_on)
        self.trials_on[gpu] += 1
        self.gpu_of[trial] = gpu
        return f"cuda:{gpu}"

    def release(self, trial: object) -> None:
        gpu = self.gpu_of.pop(trial, None)
        if gpu is not None:
            self.trials_on[gpu] -= 1
