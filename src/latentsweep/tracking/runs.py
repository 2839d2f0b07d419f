"""Questions other modules ask of the store (analysis, task.pretrained, benchmarks), answered here
so that no other module holds an MLflow client. Plain values in, plain values out.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

from ..errors import TrackingError
from ..model_files import load_model_files
from .store import MODEL_DIR, client_for, resolve_tracking_uri


def load_model(run_id: str, tracking_uri: str | None = None):
    """Load the model a run saved (no pickle): returns (model in eval mode, config dict)."""
    import mlflow

    uri = resolve_tracking_uri(tracking_uri)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=MODEL_DIR,
                                                        dst_path=tmp, tracking_uri=uri)
        except Exception as exc:
            raise TrackingError(f"run {run_id} has no saved model in {uri} ({str(exc).splitlines()[0]}) "
                                "— pick a finished run with tracking.log_model=true") from exc
        return load_model_files(local)


@dataclass(frozen=True)
class RunSummary:
    """What a search returns about one run, as plain dicts (no MLflow entities leak out)."""

    run_id: str
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]


def finished_runs(uri: str | None, experiment: str, sort_metric: str | None = None,
                  max_results: int = 1000) -> list[RunSummary] | None:
    """The FINISHED runs of `experiment` (lowest `sort_metric` first when given; at most
    `max_results`), or None when there is no such experiment."""
    client, _ = client_for(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return None
    order_by = [f"metrics.`{sort_metric}` ASC"] if sort_metric else None
    runs = client.search_runs([exp.experiment_id], filter_string="attributes.status = 'FINISHED'",
                              order_by=order_by, max_results=max_results)
    return [RunSummary(r.info.run_id, dict(r.data.metrics), dict(r.data.params), dict(r.data.tags))
            for r in runs]


def has_saved_model(uri: str | None, run_id: str) -> bool:
    """True when run `run_id` logged a model (`model/weights.safetensors` + `model/config.yaml`)."""
    client, _ = client_for(uri)
    return bool(client.list_artifacts(run_id, MODEL_DIR))


def experiment_name_of_run(uri: str | None, run_id: str) -> str:
    """The name of the experiment that run `run_id` belongs to."""
    client, _ = client_for(uri)
    return client.get_experiment(client.get_run(run_id).info.experiment_id).name


def max_metric(uri: str | None, metric: str) -> float | None:
    """The largest last-logged value of `metric` over every active run of every experiment in the
    store, or None when no run logged it."""
    client, _ = client_for(uri)
    experiment_ids = [e.experiment_id for e in client.search_experiments()]
    if not experiment_ids:
        return None
    values: list[float] = []
    token = None
    while True:
        page = client.search_runs(experiment_ids, max_results=1000, page_token=token)
        values += [r.data.metrics[metric] for r in page if metric in r.data.metrics]
        token = page.token
        if not token:
            break
    return max(values) if values else None
