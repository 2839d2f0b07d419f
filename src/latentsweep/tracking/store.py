"""The MLflow store: where it is, opening it, and its errors in one line.

Every other tracking module asks `client_for` for an `MlflowClient` with explicit run ids (never
MLflow's global "active run"), so many trials in one worker process never leak a run into each other.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import TrackingError

DEFAULT_STORE_DIR = "mlruns"
# Loading a model downloads its artifacts: no per-file progress bar in our logs.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
MODEL_DIR = "model"  # a run's saved model: model/weights.safetensors + model/config.yaml


def default_tracking_uri(store_dir: str | os.PathLike = DEFAULT_STORE_DIR) -> str:
    path = Path(store_dir).resolve()
    return f"sqlite:///{path / 'mlflow.db'}"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """`tracking.uri`, else $MLFLOW_TRACKING_URI, else a SQLite database inside `mlruns/`."""
    return uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def _artifact_location(uri: str) -> str | None:
    """Artifacts beside a local SQLite store (`<dir>/artifacts`); servers choose their own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri[len("sqlite:///"):]).parent / "artifacts").resolve().as_uri()
    return None


def _prepare_local_store(uri: str) -> None:
    if not uri.startswith("sqlite:///"):
        return
    folder = Path(uri[len("sqlite:///"):]).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrackingError(f"cannot create the MLflow store folder {folder} ({exc.strerror}) — "
                            "make it writable or set tracking.uri / MLFLOW_TRACKING_URI") from exc
    if not os.access(folder, os.W_OK):
        raise TrackingError(f"the MLflow store folder {folder} is not writable — fix its permissions "
                            "or set tracking.uri / MLFLOW_TRACKING_URI to another store")


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


# MLflow's own HTTP defaults (7 retries, backoff factor 2, 120 s timeout) make an unreachable
# server look like a hang of several minutes. Fail within seconds instead; Tracker._retry still
# rides out short blips mid-run. Values the user exported win (setdefault).
HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
                 "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def _unreachable(exc: BaseException) -> str | None:
    """'connection refused' / 'timed out' when `exc` is a failed connection to a server, else None."""
    text = str(exc)
    if "refused" in text.lower():
        return "connection refused"
    if "Max retries exceeded" in text or "timed out" in text.lower() or "Failed to establish" in text:
        return "no answer"
    return None


def client_for(uri: str | None = None):
    from mlflow.tracking import MlflowClient

    uri = resolve_tracking_uri(uri)
    if uri.startswith(("http://", "https://")):
        for key, value in HTTP_DEFAULTS.items():
            os.environ.setdefault(key, value)
    _prepare_local_store(uri)
    try:  # the store is opened (and a SQLite schema migrated) right here
        # the Model Registry lives in the same store unless MLFLOW_REGISTRY_URI says otherwise; named
        # explicitly because mlflow.set_registry_uri elsewhere in the process would otherwise win
        return MlflowClient(tracking_uri=uri, registry_uri=os.environ.get("MLFLOW_REGISTRY_URI", uri)), uri
    except Exception as exc:  # a corrupt mlflow.db, an unsupported scheme, the retired file store
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrackingError(f"cannot open the MLflow store {uri}: {first[:300]} — set tracking.uri / "
                            "MLFLOW_TRACKING_URI to a working store (sqlite:///<dir>/mlflow.db or "
                            "http://host:port); move a damaged mlflow.db aside") from exc


def get_or_create_experiment(client, name: str, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    try:
        exp = client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        return client.create_experiment(name, artifact_location=_artifact_location(uri))
    except MlflowException as exc:
        if "already exists" in str(exc) or "UNIQUE constraint" in str(exc):  # a parallel worker won
            return client.get_experiment_by_name(name).experiment_id
        if _unreachable(exc):
            raise TrackingError(f"cannot reach the MLflow tracking server {uri} ({_unreachable(exc)}) — start "
                                "it (mlflow server --host 127.0.0.1 --port <port>) or set tracking.uri / "
                                "MLFLOW_TRACKING_URI") from exc
        raise TrackingError(f"MLflow store {uri} refused the experiment: {str(exc).splitlines()[0]} — "
                            "check tracking.uri") from exc
    except Exception as exc:  # connection errors from a remote server, sqlite errors, ...
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise TrackingError(f"cannot reach the MLflow store {uri}: {first} — start the server or set "
                            "tracking.uri / MLFLOW_TRACKING_URI") from exc


def open_store(uri: str | None = None) -> str:
    """Open the store once (creating a local one, migrating its schema) and return its resolved URI.

    Raises TrackingError, in one line, when it cannot be opened — the same check `client_for` makes.
    """
    return client_for(uri)[1]
