"""`Tracker`: one MLflow run of a training job (params, metrics, figures, the saved model)."""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import TrackingError
from ..model_files import save_model_files
from .store import MODEL_DIR, client_for, flatten, get_or_create_experiment

log = logging.getLogger("latentsweep.tracking")

EPOCH_FLUSH_S = 5.0  # metrics reach the store at most this late (MLflow's UI refreshes about as often)
MAX_BATCH = 1000  # metrics per log_batch call: MLflow's limit


class Tracker:
    """One MLflow run. Disabled trackers accept every call and do nothing."""

    def __init__(self, uri: str | None = None, experiment: str = "latentsweep", enabled: bool = True):
        self.enabled = enabled
        self.run_id: str | None = None
        self.resumed = False  # start() continued an existing run
        self.experiment_name = experiment
        self._pending: list[Any] = []  # epochs' metrics not yet written (log_epoch)
        self._last_write = time.monotonic()
        if not enabled:
            self.uri = None
            return
        self.client, self.uri = client_for(uri)
        self.experiment_id = get_or_create_experiment(self.client, experiment, self.uri)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any]) -> Tracker:
        return cls(uri=cfg.get("uri"), experiment=cfg.get("experiment", "latentsweep"),
                   enabled=cfg.get("enabled", True))

    def start(self, run_name: str | None = None, params: Mapping[str, Any] | None = None,
              tags: Mapping[str, str] | None = None, resume_run_id: str | None = None,
              parent_run_id: str | None = None) -> str | None:
        if not self.enabled:
            return None
        tags = dict(tags or {})
        if parent_run_id:
            tags["mlflow.parentRunId"] = parent_run_id
        self.resumed = False
        try:
            if resume_run_id and self._resumable(resume_run_id):
                self.run_id, self.resumed = resume_run_id, True
                self.client.update_run(resume_run_id, status="RUNNING")
                for k, v in tags.items():
                    self.client.set_tag(resume_run_id, k, v)
                return self.run_id
            run = self.client.create_run(self.experiment_id, run_name=run_name, tags=tags)
        except TrackingError:
            raise
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise TrackingError(f"cannot start an MLflow run in {self.uri}: {first} — check tracking.uri") from exc
        self.run_id = run.info.run_id
        if params:
            self.log_params(params)
        return self.run_id

    def _resumable(self, run_id: str) -> bool:
        """The run is in the store, not deleted, and did not finish: a finished run is never
        re-opened (a resumed run then starts a new one, with its parameters)."""
        from mlflow.exceptions import MlflowException

        try:
            run = self.client.get_run(run_id)
        except MlflowException as exc:  # not in this store (another store, deleted for good)
            log.info("MLflow run %s cannot be continued (%s): a new run starts", run_id, str(exc).splitlines()[0])
            return False
        return run.info.lifecycle_stage != "deleted" and run.info.status != "FINISHED"

    def metric_steps(self, key: str) -> set[int]:
        """The steps at which `key` was logged in this run (what a resumed run already has)."""
        if not self.enabled:
            return set()
        self.flush()
        return {m.step for m in self.client.get_metric_history(self.run_id, key)}

    def log_params(self, params: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        """Metrics kept in memory and written in one batch at most every `EPOCH_FLUSH_S` seconds,
        and by `flush` and `end`: each SQLite write commits to the disk, and a small trial's
        separate writes (label-free scores, results, objective, epochs) took longer than its
        objective (issue 29). A store that went away fails the next write with a one-line error; a
        killed run loses at most what was not yet written."""
        if not self.enabled:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self._pending.extend(Metric(k, float(v), now, step or 0) for k, v in metrics.items())
        if time.monotonic() - self._last_write >= EPOCH_FLUSH_S:
            self.flush()

    def log_epoch(self, metrics: Mapping[str, float], step: int) -> None:
        """One epoch's metrics, written like `log_metrics`' (so the loop never waits for the store
        each epoch: a SQLite write took longer than a small model's epoch, and MLflow's asynchronous
        logging waits up to a second for its thread when a run ends). A killed run's unwritten epochs
        are written by its next attempt, from the checkpoint (`pipeline._log_missing_epochs`)."""
        self.log_metrics(metrics, step=step)

    def flush(self) -> None:
        """Write the metrics kept in memory (MLflow takes at most 1000 metrics per batch)."""
        pending, self._pending = self._pending, []
        self._last_write = time.monotonic()
        for i in range(0, len(pending), MAX_BATCH):
            chunk = pending[i : i + MAX_BATCH]
            self._retry(lambda chunk=chunk: self.client.log_batch(self.run_id, metrics=chunk))

    def _retry(self, call, attempts: int = 5) -> None:
        """SQLite stores shared by parallel trials can be briefly locked: retry with backoff."""
        for attempt in range(attempts):
            try:
                call()
                return
            except Exception as exc:
                if attempt == attempts - 1:
                    raise TrackingError(f"MLflow store {self.uri} failed: {str(exc).splitlines()[0]} — "
                                        "the checkpoint is intact; resume with trainer.resume=true") from exc
                time.sleep(0.2 * 2**attempt)

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        if self.enabled:
            for k, v in tags.items():
                self.client.set_tag(self.run_id, k, str(v))

    def log_figure(self, figure, artifact_file: str) -> None:
        if self.enabled:
            self.client.log_figure(self.run_id, figure, artifact_file)

    def log_artifact_dir(self, local_dir: str | Path, artifact_path: str | None = None) -> None:
        if self.enabled:
            self.client.log_artifacts(self.run_id, str(local_dir), artifact_path)

    def log_model(self, state_dict: Mapping[str, Any], config: Mapping[str, Any]) -> None:
        """`model/weights.safetensors` + `model/config.yaml` (model, data spec, data, task)."""
        if not self.enabled:
            return
        with tempfile.TemporaryDirectory() as tmp:
            save_model_files(tmp, state_dict, config)
            self.client.log_artifacts(self.run_id, tmp, MODEL_DIR)

    def end(self, status: str = "FINISHED") -> None:
        if self.enabled and self.run_id is not None:
            try:
                self.flush()
            except TrackingError as exc:  # the run still ends; the epochs it lacks are named here
                log.warning("MLflow run %s misses some epochs' metrics: %s", self.run_id, exc)
            try:
                self.client.set_terminated(self.run_id, status=status)
            except Exception as exc:  # never hide the original error behind a tracking one
                log.warning("could not mark MLflow run %s as %s: %s", self.run_id, status, exc)
