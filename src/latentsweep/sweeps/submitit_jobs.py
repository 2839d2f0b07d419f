"""Trials as submitit jobs (`hydra/launcher=submitit_slurm`, `submitit_local`), one per free slot.

The upstream submitit launcher submits a batch as one job array and waits for all of it; one job
that dies (preempted, over its time limit, `scancel`) makes it raise for the whole batch, so every
trial of the batch would fail with one launch error. Here each trial is its own job, submitted
through the launcher's own executor settings (`hydra.launcher.*`) when one of `hydra.sweeper.n_jobs`
slots is free, and its result is told as soon as it is done. A job that ends without a result is
a `WorkerDied`: its trial continues from its checkpoint in a new job (`sweeps.continuation`), as a
joblib worker killed for memory does.

Preemption: submitit calls the job's `checkpoint()` on SLURM's signal; ours returns None, so
submitit does not requeue the same command line (which would start the trial from scratch). The
job ends, and the sweeper continues the trial from its own checkpoint, counted against
`hydra.sweeper.max_retries`. When the sweeper itself is gone, the next sweep command takes the
trial over once its heartbeat is stale.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals
from omegaconf import OmegaConf

from .failures import WorkerDied
from .launching import NOTHING_NOW, failed_return

log = logging.getLogger("latentsweep.sweeps")

POLL_S = 1.0  # how often finished jobs are looked for (SLURM's state comes from a cached sacct)
LOCAL_RESULT_WAIT_S = 2  # a local job's result file is on this disk: no NFS lag to wait out
_END = object()


def is_submitit(launcher: Any) -> bool:
    return type(launcher).__module__.startswith("hydra_plugins.hydra_submitit_launcher")


class TrialJob:
    """What each job runs: the launcher's own job body (compose the trial's config, run the task)."""

    def __init__(self, launcher: Any) -> None:
        self.launcher = launcher

    def __call__(self, *args: Any) -> JobReturn:
        try:
            return self.launcher(*args)
        except Exception as exc:  # composing the trial's config failed: the trial fails, the sweep goes on
            return failed_return(args[0], exc)

    def checkpoint(self, *args: Any) -> None:
        """Preempted or timed out: no requeue; the sweeper continues the trial from its checkpoint."""
        return None


def make_executor(launcher: Any) -> Any:
    """A submitit executor set up as the upstream launcher's `launch` sets it up."""
    import submitit
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    kind = launcher._EXECUTOR
    init_keys = {"max_num_timeout", "python"}
    init = {"folder": launcher.params["submitit_folder"],
            **{f"{kind}_{k}": v for k, v in launcher.params.items() if k in init_keys}}
    executor = submitit.AutoExecutor(cluster=kind, **init)
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{k if k in base else f"{kind}_{k}": v for k, v in launcher.params.items()
                                  if k not in init_keys | {"submitit_folder"}})
    return executor


def _prepare(launcher: Any) -> None:
    setup_globals()
    config = launcher.config
    configure_log(config.hydra.hydra_logging, config.hydra.verbose,
                  execution_whitelist=getattr(launcher.hydra_context, "execution_whitelist", None))
    sweep_dir = Path(str(config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    if "mode" in config.hydra.sweep:
        os.chmod(sweep_dir, mode=int(str(config.hydra.sweep.mode), 8))
    log.info("submitit '%s' sweep output dir: %s", launcher._EXECUTOR, sweep_dir)


def outcome(job: Any, overrides: Sequence[str]) -> JobReturn:
    """A finished job's JobReturn; a job that ended without one (killed, preempted, timed out) is a
    `WorkerDied`, so its trial continues."""
    from submitit.core.utils import FailedJobError, UncompletedJobError

    try:
        return job.result()
    except FailedJobError as exc:  # raised outside our TrialJob: submitit's own preemption exit
        died = "UncompletedJobError" in str(exc)
        return failed_return(overrides, exc, f"job {job.job_id} " + ("was stopped" if died else "failed"),
                             WorkerDied if died else RuntimeError)
    except UncompletedJobError as exc:  # no result at all: the process was killed
        return failed_return(overrides, exc, f"job {job.job_id} died (state {job.state})", WorkerDied)


def launch(launcher: Any, jobs: Iterable[Any], slots: int) -> Iterator[tuple[int, JobReturn]]:
    """(trial id, JobReturn) of each job as it finishes; at most `slots` jobs at once. `jobs` as in
    `launching.launch_as_ready` (None: nothing to start until a running job ends)."""
    _prepare(launcher)
    executor = make_executor(launcher)
    state = Singleton.get_state()
    jobs = iter(jobs)
    running: dict[Any, tuple[int, Sequence[str]]] = {}
    exhausted = False
    try:
        while True:
            while not exhausted and len(running) < max(1, slots):
                job = next(jobs, _END)
                if job is _END or job is NOTHING_NOW:
                    exhausted = job is _END
                    break
                trial_id, idx, overrides = job
                log.info("\t#%d : %s", idx, " ".join(filter_overrides(overrides)))
                submitted = executor.submit(TrialJob(launcher), list(overrides), "hydra.sweep.dir", idx,
                                            f"job_id_for_{idx}", state)
                if launcher._EXECUTOR == "local":
                    submitted._results_timeout_s = LOCAL_RESULT_WAIT_S
                running[submitted] = (trial_id, overrides)
            if not running:
                return
            finished = [job for job in running if job.done()]
            if not finished:
                time.sleep(POLL_S)
            for job in finished:
                trial_id, overrides = running.pop(job)
                yield trial_id, outcome(job, overrides)
    finally:
        for job in running:  # interrupted (Ctrl-C, the sweep stopped): cancel what still runs
            try:
                job.cancel(check=False)
            except Exception as exc:  # the scheduler is unreachable: the job's heartbeat goes stale
                log.warning("could not cancel job %s: %s", job.job_id, exc)
