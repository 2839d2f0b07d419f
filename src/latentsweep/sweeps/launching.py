"""How the sweeper hands trials to Hydra's launcher: as workers free up, or in batches.

A Hydra launcher runs a list of jobs and returns when all of them are done. Launching `n_jobs`
trials at a time therefore waits for the slowest of each batch (the biggest model, the trial the
pruner did not stop) while the other workers idle; on a GPU box with 16 trials per batch that is
most of a batch's time. With the joblib launcher (`make sweep`'s `trials`) we keep its worker
processes (loky's reusable executor, which joblib itself uses) and its job runner, but submit one
job per free worker: the next trial is asked only when a worker can take it, and each result is
told to Optuna as soon as it is done, so a pruned trial frees its worker at once. The submitit
launchers (SLURM) get the same, one job per trial (`sweeps.submitit_jobs`). Any other launcher
(basic, ...) keeps the batches. A worker that dies (killed for memory)
breaks loky's pool: the trials running in it fail, and the next job gets a fresh pool.

`warm_workers` starts that pool while the sweeper opens its study and parent run: each worker
imports what a trial needs once, before its first trial (a loky initializer, and the task function
unpickled), instead of inside it.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from pathlib import Path
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, configure_log, setup_globals

from .failures import WorkerDied

Job = tuple[int, int, Sequence[str]]  # (trial id, job index, overrides)
NOTHING_NOW = None  # what `jobs` yields when it has no job to start until a running one ends
_END = object()


def failed_return(overrides: Sequence[str], exc: BaseException, what: str = "launch failed",
                  error_type: type[Exception] = RuntimeError) -> JobReturn:
    """A job that could not run (its overrides did not compose, its worker died) as a failed
    JobReturn, so that one trial fails and not the whole sweep."""
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED)
    ret._return_value = error_type(f"{what}: {type(exc).__name__}: {first}"[:1000])
    return ret


def _import_for_trials() -> None:
    """loky initializer: import in the new worker what a trial imports on its way (lazily: after the
    first step, or only when a run ends). Third-party modules only: the task function brings
    latentsweep's own."""
    import mlflow.tracking  # noqa: F401
    import sklearn.cluster  # noqa: F401
    import sklearn.manifold  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import torch._dynamo  # noqa: F401


def _executor(n_workers: int):
    """loky's reusable executor, the same one for every call with the same workers."""
    from joblib.externals.loky import get_reusable_executor

    return get_reusable_executor(max_workers=n_workers, timeout=300, initializer=_import_for_trials)


def _loaded(task_function: Any) -> None:
    """In a worker: nothing; receiving `task_function` imported its module (train.py: the pipeline)."""


def warm_workers(launcher: Any) -> None:
    """Start the joblib launcher's workers now (one do-nothing job each, carrying the task function):
    their imports overlap the sweeper's own set-up instead of delaying their first trials."""
    from joblib import effective_n_jobs

    n_workers = effective_n_jobs(dict(launcher.joblib).get("n_jobs") or 1)
    executor = _executor(n_workers)
    for _ in range(n_workers):
        executor.submit(_loaded, launcher.task_function)


def runs_as_ready(launcher: Any) -> bool:
    """True for the joblib launcher on its default loky backend (without inner_max_num_threads)."""
    if type(launcher).__name__ != "JoblibLauncher":
        return False
    cfg = dict(launcher.joblib)
    return (cfg.get("backend") or "loky") == "loky" and cfg.get("inner_max_num_threads") is None


def _run_job(trial_id: int, idx: int, overrides: Sequence[str], hydra_context: Any, config: Any,
             task_function: Any, singleton_state: Any) -> tuple[int, JobReturn]:
    """In the worker: the joblib launcher's own job runner, tagged with its trial."""
    from hydra_plugins.hydra_joblib_launcher._core import execute_job

    try:
        ret = execute_job(idx, overrides, hydra_context, config, task_function, 0, singleton_state, False)
    except Exception as exc:  # composing the job's config failed: the trial fails, the sweep goes on
        ret = failed_return(overrides, exc)
    return trial_id, ret


def launch_as_ready(launcher: Any, jobs: Iterable[Job | None]) -> Iterator[tuple[int, JobReturn]]:
    """(trial id, JobReturn) of each job as it finishes. `jobs` is drawn lazily, one job per free
    worker, so a trial is asked only when it can start. `jobs` yields None for "nothing to start
    now" (a trial still running may need to run again: a killed one continues); it is asked
    again when the next job ends."""
    from joblib import effective_n_jobs

    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose,
                  execution_whitelist=getattr(launcher.hydra_context, "execution_whitelist", None))
    Path(str(launcher.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
    n_workers = effective_n_jobs(dict(launcher.joblib).get("n_jobs") or 1)
    state = Singleton.get_state()
    jobs = iter(jobs)
    running: dict[Future, tuple[int, Sequence[str]]] = {}
    executor = None
    exhausted = False
    try:
        while True:
            while not exhausted and len(running) < n_workers:
                job = next(jobs, _END)
                if job is _END or job is NOTHING_NOW:
                    exhausted = job is _END
                    break
                trial_id, idx, overrides = job
                # asked again for every job: loky replaces an executor that a crashed worker broke
                executor = _executor(n_workers)
                future = executor.submit(_run_job, trial_id, idx, overrides, launcher.hydra_context,
                                         launcher.config, launcher.task_function, state)
                running[future] = (trial_id, overrides)
            if not running:
                return
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                trial_id, overrides = running.pop(future)
                try:
                    _, ret = future.result()
                except Exception as exc:  # the worker died (killed for memory, a crash in C code)
                    ret = failed_return(overrides, exc, "its worker process died", WorkerDied)
                yield trial_id, ret
    finally:
        if running and executor is not None:  # interrupted (Ctrl-C, ...): stop the trials still training
            executor.shutdown(wait=False, kill_workers=True)


def launch_in_batches(launcher: Any, jobs: Iterable[Job | None], batch: int) -> Iterator[tuple[int, JobReturn]]:
    """Any launcher: `batch` jobs at a time, each batch's results once all of it is done (a
    `NOTHING_NOW` from `jobs` ends a batch early)."""
    jobs = iter(jobs)
    while chunk := list(itertools.takewhile(lambda job: job is not NOTHING_NOW,
                                            itertools.islice(jobs, max(1, batch)))):
        overrides = [list(o) for _, _, o in chunk]
        try:
            returns = launcher.launch(overrides, initial_job_idx=chunk[0][1])
        except Exception as exc:  # the launcher could not even compose a job (bad override, ...)
            returns = [failed_return(o, exc) for o in overrides]
        for (trial_id, _, _), ret in zip(chunk, returns):
            yield trial_id, ret
