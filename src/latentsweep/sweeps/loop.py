"""The sweep loop: a `SweepState` that says where this sweeper stands, and a `Scheduler` that
hands trials to the launcher and records each result.

Read it top to bottom:

1. `Scheduler.jobs()` is drawn by the launcher, one job per free worker (`sweeps.launching`).
   Each draw first continues a killed trial, if this sweeper claimed one; else, under the study's
   ask lock, it claims stale trials of a killed sweeper (each gets this sweeper's heartbeat from
   that moment, so no other sweeper can claim it too), counts the study's trials against
   `n_trials`, asks a new trial and samples its space. A sampled point a constraint refuses is
   recorded as infeasible and the next one is asked.
2. `Scheduler.on_result()` records each finished job: a killed trial is queued to continue from
   its checkpoint; any other outcome is told to the study (`sweeps.outcomes`), then the stop rules
   are checked: a failure every trial will hit stops at once (`fatal`), too many failures stop
   asking (`stop`). Infeasible trials count for neither.
3. `Scheduler.release()` runs whatever happens: a trial this sweeper still holds is failed, so
   none stays RUNNING.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from optuna.trial import FrozenTrial, TrialState

from ..errors import InfeasibleError, LatentSweepError
from . import continuation, failures, launching, outcomes
from .storage import ask_lock

log = logging.getLogger("latentsweep.sweeps")


class SweepError(LatentSweepError):
    """The sweep stopped: too many trials failed, or a failure every trial will hit."""


def quote(value: Any) -> str:
    """A Hydra override value that stays one string whatever it contains (URLs, JSON)."""
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


@dataclass
class SweepState:
    """Where one sweeper stands; only the `Scheduler` changes it."""

    done: list[TrialState] = field(default_factory=list)  # this run's told trials (infeasible: PRUNED)
    n_infeasible: int = 0  # of `done`: infeasible, so outside the failure rate
    first_failures: list[str | None] = field(default_factory=list)  # signatures of the first trials to end
    infeasible: failures.InfeasibleStreak = field(default_factory=failures.InfeasibleStreak)  # refused samples
    built_infeasible: failures.InfeasibleStreak = field(default_factory=failures.InfeasibleStreak)  # at start
    in_flight: dict[int, optuna.Trial] = field(default_factory=dict)  # asked or claimed, not yet told
    beating: list[int] = field(default_factory=list)  # ids whose heartbeat this sweeper keeps (live list)
    to_continue: collections.deque = field(default_factory=collections.deque)  # claimed killed trials
    fatal: SweepError | None = None  # a failure every trial would hit: stop at once
    stop: bool = False  # ask no more trials (the failure rate was exceeded); those running finish
    status: str = "FINISHED"  # how this sweeper ends: FINISHED / FAILED / KILLED

    def hold(self, trial: optuna.Trial) -> None:
        self.in_flight[trial._trial_id] = trial
        if trial._trial_id not in self.beating:
            self.beating.append(trial._trial_id)

    def let_go(self, trial_id: int) -> optuna.Trial:
        if trial_id in self.beating:
            self.beating.remove(trial_id)
        return self.in_flight.pop(trial_id)

    def failure_rate(self, min_trials: int) -> float | None:
        """Share of this run's feasible trials that failed, once `min_trials` of them ended."""
        judged = len(self.done) - self.n_infeasible
        return self.done.count(TrialState.FAIL) / judged if judged >= min_trials else None


@dataclass
class Plan:
    """What the scheduler needs from the sweeper's set-up (`sweeps.impl`)."""

    study: optuna.Study
    url: str
    n_trials: int
    max_retries: int
    max_failure_rate: float
    min_trials_for_failure_rate: int
    ask: Callable[[optuna.Study], optuna.Trial]  # reseed + study.ask()
    configure: Callable[[optuna.Trial], list[str]]  # sample a trial's space: its overrides
    overrides_of: Callable[[FrozenTrial], list[str]]  # a claimed trial's overrides, to continue it
    per_job: list[str]  # overrides every job gets (storage, study, pruner, tracking, ...)
    checkpoint_root: str | None  # the sweep folder whose checkpoints/trial-<n> each trial uses
    slots: Any = None  # GpuSlots when several GPUs share the trials
    end_first_attempt: Callable[[int], None] = lambda number: None  # MLflow: end a killed first run
    find_run: Callable[[int], str | None] | None = None  # MLflow: a trial's run id (tracking on)


class Scheduler:
    """Hands trials to the launcher (`jobs`) and records their results (`on_result`)."""

    def __init__(self, plan: Plan, state: SweepState | None = None) -> None:
        self.plan, self.state = plan, state or SweepState()
        self.job_idx = 0
        self.ask_s = 0.0  # the last ask + sampling, in the launch line (benchmarks read it)

    # --- 1. jobs ---------------------------------------------------------------------------------
    def jobs(self) -> Iterator[launching.Job | None]:
        """The next job, asked only when the launcher can take it; `NOTHING_NOW` while the study is
        full but a trial still runs (it may be killed and continue)."""
        state = self.state
        while not state.stop and state.fatal is None:
            if state.to_continue:
                yield self._continuation(state.to_continue.popleft())
                continue
            asked = self._ask_next()
            if asked is _FULL:
                if not state.in_flight:
                    return
                yield launching.NOTHING_NOW
            elif asked is not None:
                trial, line = asked
                yield self._launch(trial, line)

    def _ask_next(self) -> tuple[optuna.Trial, list[str]] | object | None:
        """Under the ask lock: claim stale trials, then ask and sample one. None: nothing to launch
        from this draw (a claimed trial to continue, an infeasible sample, a stop)."""
        plan, state = self.plan, self.state
        with ask_lock(plan.url):  # count, then ask: sweepers sharing the study never overshoot n_trials
            self._claim_stale()
            if state.to_continue:
                return None
            if plan.n_trials - len(plan.study.get_trials(deepcopy=False)) <= 0:
                return _FULL
            start = time.perf_counter()
            trial = plan.ask(plan.study)
            state.hold(trial)
            try:
                line = plan.configure(trial)
                self.ask_s = time.perf_counter() - start
                return trial, line
            except InfeasibleError as exc:
                self._record(trial._trial_id, outcomes.infeasible(exc))
                state.infeasible.infeasible(str(exc))
                self._check_streak(state.infeasible, "every sampled point broke the search space's constraint",
                                   "widen the space or loosen the constraint")
                return None

    def _claim_stale(self) -> None:
        """Trials of a killed sweep: claimed ones are beaten from now on (no other sweeper takes
        them while they wait for a worker); the others were failed by `take_over_stale`."""
        for frozen in continuation.take_over_stale(self.plan.study, self.plan.max_retries):
            self.state.hold(optuna.Trial(self.plan.study, frozen._trial_id))
            self.state.to_continue.append(frozen)

    def _check_streak(self, streak: failures.InfeasibleStreak, what: str, fix: str) -> None:
        """A space with no feasible point stops the sweep (one line naming the last reason)."""
        if streak.hopeless(self.plan.n_trials):
            self.state.fatal = SweepError(f"{what} ({streak.count} in a row, last: {streak.last}) — {fix}")

    def _continuation(self, frozen: FrozenTrial) -> launching.Job:
        epoch = continuation.last_epoch(frozen)
        if epoch is None:
            self.plan.end_first_attempt(frozen.number)
        log.info("continuing trial %d (attempt %d) from %s", frozen.number,
                 frozen.user_attrs.get(continuation.CONTINUED, 0) + 1,
                 f"epoch {epoch}" if epoch is not None else "scratch (no checkpoint yet)")
        line = self.plan.overrides_of(frozen) + continuation.resume_overrides(frozen)
        return self._job(frozen._trial_id, frozen.number, line)

    def _launch(self, trial: optuna.Trial, line: list[str]) -> launching.Job:
        self.state.infeasible.feasible()
        log.info("launching trial %d: %s (asked in %.3f s)", trial.number, " ".join(line), self.ask_s)
        checkpoint = continuation.checkpoint_dir(self.plan.checkpoint_root, trial.number) \
            if self.plan.checkpoint_root else None
        continuation.record_launch(trial, checkpoint)
        extra = [f"++trainer.checkpoint_dir={quote(checkpoint)}"] if checkpoint else []
        return self._job(trial._trial_id, trial.number, line + extra)

    def _job(self, trial_id: int, number: int, line: Sequence[str]) -> launching.Job:
        idx, self.job_idx = self.job_idx, self.job_idx + 1
        placement = [f"++trainer.device={self.plan.slots.take(trial_id)}"] if self.plan.slots else []
        ids = [f"++sweep.trial_id={trial_id}", f"++sweep.trial_number={number}"]
        if self.plan.find_run is not None:  # the child run's tag, how `find_run` finds it
            ids.append(f"++extra_tags.optuna_trial={quote(number)}")
        return trial_id, idx, [*line, *self.plan.per_job, *ids, *placement]

    # --- 2. results --------------------------------------------------------------------------------
    def on_result(self, trial_id: int, ret: JobReturn) -> None:
        """Record one finished job, then apply the stop rules."""
        if self.plan.slots:
            self.plan.slots.release(trial_id)
        if self._continues(trial_id, ret):
            frozen = continuation.count_continuation(self.plan.study, trial_id)
            self.state.to_continue.append(frozen)  # still RUNNING and beaten: it runs again
            return
        outcome = outcomes.classify(ret, len(self.plan.study.directions))
        self._link_run(self.state.in_flight[trial_id])
        trial = self._record(trial_id, outcome)
        if outcome.infeasible:  # the model refused its sizes for this data
            self.state.built_infeasible.infeasible(outcome.reason or "")
            self._check_streak(self.state.built_infeasible, "every trial's sizes were infeasible for the data",
                               "widen the space, or change the value fixed on the command line")
        else:
            self.state.built_infeasible.feasible()
            self._judge(trial.number, outcome)

    def _continues(self, trial_id: int, ret: JobReturn) -> bool:
        """A trial whose process died runs again from its checkpoint, up to max_retries times."""
        if ret.status == JobStatus.COMPLETED or failures.cause_of(ret._return_value) != failures.KILLED:
            return False
        frozen = self.plan.study._storage.get_trial(trial_id)
        if not continuation.may_continue(frozen, self.plan.max_retries):
            return False
        epoch = continuation.last_epoch(frozen)
        log.warning("trial %d: %s — it continues from %s", frozen.number, failures.signature(ret._return_value),
                    f"epoch {epoch}" if epoch is not None else "scratch (no checkpoint yet)")
        return True

    def _link_run(self, trial: optuna.Trial) -> None:
        """The trial's MLflow child run, as its `mlflow_run_id` (a flaky store: logged, not linked)."""
        if self.plan.find_run is None:
            return
        try:
            run_id = self.plan.find_run(trial.number)
            if run_id:
                trial.set_user_attr("mlflow_run_id", run_id)
        except Exception as exc:  # noqa: BLE001 - logged: the result is told without the link
            log.warning("trial %d: its MLflow run could not be linked: %s: %s", trial.number,
                        type(exc).__name__, exc)

    def _record(self, trial_id: int, outcome: outcomes.Outcome) -> optuna.Trial:
        trial = self.state.let_go(trial_id)
        outcomes.tell(self.plan.study, trial, outcome)
        self.state.done.append(outcome.state)
        self.state.n_infeasible += outcome.infeasible
        return trial

    def _judge(self, number: int, outcome: outcomes.Outcome) -> None:
        """Stop at once on a failure every trial will hit; stop asking past max_failure_rate."""
        state, plan = self.state, self.plan
        error = outcome.error if outcome.state == TrialState.FAIL else None
        state.first_failures.append(failures.signature(error) if outcome.cause == failures.ERROR else None)
        if outcome.cause == failures.FATAL or failures.same_failure_everywhere(state.first_failures):
            state.fatal = SweepError(f"trial {number} failed with {failures.signature(error)} — every trial "
                                     "would hit it: fix it, then run the same command again")
            return
        rate = state.failure_rate(plan.min_trials_for_failure_rate)
        if rate is not None and rate > plan.max_failure_rate:
            state.status, state.stop = "FAILED", True  # the jobs in flight finish

    def failure_rate_error(self) -> SweepError:
        state = self.state
        reasons = [t.user_attrs.get("fail_reason") for t in self.plan.study.get_trials(deepcopy=False)
                   if t.state == TrialState.FAIL and t.user_attrs.get("fail_reason")]
        return SweepError(f"{state.done.count(TrialState.FAIL)} of {len(state.done) - state.n_infeasible} "
                          f"feasible trials failed (last: {reasons[-1] if reasons else '?'}) — fix the search "
                          f"space or raise hydra.sweeper.max_failure_rate={self.plan.max_failure_rate}")

    # --- 3. the end --------------------------------------------------------------------------------
    def release(self) -> None:
        """Fail every trial this sweeper still holds: none stays RUNNING after it stops."""
        for trial_id in list(self.state.in_flight):
            waiting = any(f._trial_id == trial_id for f in self.state.to_continue)
            outcomes.fail(self.plan.study, self.state.let_go(trial_id),
                          "sweep stopped before it could continue" if waiting else "sweep interrupted")
        self.state.to_continue.clear()


_FULL = object()  # `_ask_next`: the study has its n_trials
