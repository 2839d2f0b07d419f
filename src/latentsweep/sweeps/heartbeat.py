"""Optuna trial heartbeats from a daemon thread, for both sides of a sweep.

A trial whose heartbeat is older than the storage's grace period is stale: the next sweeper start
(`optuna.storages.fail_stale_trials`) marks it FAIL, so a killed sweep leaves no trial RUNNING
forever. Two places beat:

- the sweeper, for every trial it holds, from the moment it asks or claims it until it tells it
  (this covers claimed trials waiting for a worker and jobs still starting, before they beat
  themselves);
- the trial process, for its own trial, until the trial leaves RUNNING (`only_running`): worker
  processes are reused across jobs, so the thread must stop by itself once the sweeper told the
  trial's result.

A failing storage call is logged at DEBUG and retried on the next beat: heartbeats never stop
training or the sweep.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from types import TracebackType

import optuna
from optuna.trial import TrialState

log = logging.getLogger(__name__)


class Heartbeat:
    """Record a heartbeat for each of `trial_ids` now and every `interval` s, in a daemon thread,
    until `stop()` (or, with `only_running`, until every one of them has left RUNNING).

    `interval` None or 0: heartbeats are off and start/stop do nothing. Usable as a context manager.
    A list is beaten live: ids the caller adds or removes while it runs are picked up (the
    sweeper's trials in flight); without `only_running` the thread then runs until `stop()`.
    """

    def __init__(self, storage: optuna.storages.RDBStorage, trial_ids: Iterable[int], interval: float | None,
                 *, only_running: bool = False, name: str = "optuna-heartbeat") -> None:
        self.storage = storage
        self.trial_ids = trial_ids if isinstance(trial_ids, list) else list(trial_ids)
        self.interval = interval
        self.only_running = only_running
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> Heartbeat:
        if self.interval and (self.trial_ids or not self.only_running):
            self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=timeout)

    def __enter__(self) -> Heartbeat:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def beat(self) -> bool:
        """One round of heartbeats; False once no trial is left to beat (`only_running` only)."""
        for trial_id in list(self.trial_ids):
            try:
                if self.only_running and self.storage.get_trial(trial_id).state != TrialState.RUNNING:
                    self.trial_ids.remove(trial_id)
                    continue
                self.storage.record_heartbeat(trial_id)
            except Exception as exc:  # a flaky storage must not kill training or the sweep
                log.debug("heartbeat for trial %d failed: %s", trial_id, exc)
        return bool(self.trial_ids) or not self.only_running

    def _run(self) -> None:
        while self.beat() and not self._stop.wait(self.interval):
            pass
