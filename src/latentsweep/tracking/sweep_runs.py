"""The parent MLflow run of an Optuna study: created or reused, its trials' runs, its summary."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from .store import client_for, flatten, get_or_create_experiment

log = logging.getLogger("latentsweep.tracking")

SWEEP_STUDY_TAG = "optuna_study"
SWEEP_PARENT_TAG = "sweep_parent"


def sweep_parent_run(uri: str | None, experiment: str, study_name: str, storage_label: str,
                     known_run_id: str | None = None, params: Mapping[str, Any] | None = None,
                     tags: Mapping[str, Any] | None = None) -> str:
    """The study's parent run, reused on resume: `known_run_id` if it is in this store, else the run
    tagged with the study and storage, else a new one. Reopened as RUNNING; `tags` refreshed."""
    client, uri = client_for(uri)
    exp_id = get_or_create_experiment(client, experiment, uri)
    run_id = None
    if known_run_id:
        from mlflow.exceptions import MlflowException

        try:
            run_id = client.get_run(known_run_id).info.run_id
        except MlflowException as exc:  # gone from this store: found again by its tags, or made anew
            log.info("the study's parent run %s is not in %s (%s)", known_run_id, uri, str(exc).splitlines()[0])
            run_id = None
    if run_id is None:
        found = client.search_runs([exp_id], filter_string=f"tags.{SWEEP_PARENT_TAG} = 'true' and "
                                   f"tags.{SWEEP_STUDY_TAG} = '{study_name}'", max_results=50)
        found = [r for r in found if r.data.tags.get("optuna_storage") == storage_label]
        run_id = found[0].info.run_id if found else None
    all_tags = {SWEEP_PARENT_TAG: "true", SWEEP_STUDY_TAG: study_name, "optuna_storage": storage_label,
                **{k: str(v) for k, v in (tags or {}).items()}}
    if run_id is None:
        run_id = client.create_run(exp_id, run_name=f"sweep {study_name}", tags=all_tags).info.run_id
        if params:
            from mlflow.entities import Param

            client.log_batch(run_id, params=[Param(k, str(v)[:6000]) for k, v in flatten(params).items()])
    else:
        client.update_run(run_id, status="RUNNING")
        for k, v in all_tags.items():
            client.set_tag(run_id, k, v)
    return run_id


def find_trial_run(uri: str | None, parent_run_id: str, trial_number: int) -> str | None:
    """The nested run of Optuna trial `trial_number` under `parent_run_id` (None if it logged none)."""
    client, _ = client_for(uri)
    parent = client.get_run(parent_run_id)
    runs = client.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}' and "
                                            f"tags.optuna_trial = '{trial_number}'", max_results=5)
    return runs[0].info.run_id if runs else None


def finish_sweep_run(uri: str | None, run_id: str, metrics: Mapping[str, float], tags: Mapping[str, Any],
                     figures: Mapping[str, Any] = (), texts: Mapping[str, str] = (),
                     status: str | None = "FINISHED") -> None:
    """Best value/params, figures and files on the parent run, then end it with `status`
    (FINISHED / FAILED / KILLED); `status=None` writes the summary and leaves the run RUNNING
    (another sweeper of the study still works in it and ends it)."""
    from mlflow.entities import Metric

    client, _ = client_for(uri)
    now = int(time.time() * 1000)
    if metrics:
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()])
    for k, v in tags.items():
        client.set_tag(run_id, k, str(v)[:5000])
    for name, fig in dict(figures).items():
        client.log_figure(run_id, fig, name)
    for name, text in dict(texts).items():
        client.log_text(run_id, text, name)
    if status is not None:
        client.set_terminated(run_id, status=status)
