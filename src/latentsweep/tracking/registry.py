"""The Model Registry: the best trial's model registered as a pyfunc (no pickle), and loaded back."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import TrackingError
from ..model_files import load_model_paths
from .store import MODEL_DIR, client_for

# MLflow's error codes for "no such registered model" and "no such alias": what absent means
ABSENT = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")

REGISTERED_MODEL_DIR = "registered_model"
PYFUNC_CODE = Path(__file__).resolve().with_name("pyfunc_model.py")  # logged as code, not pickled
PACKAGE_DIR = Path(__file__).resolve().parents[1]  # latentsweep/, shipped with the pyfunc


@dataclass(frozen=True)
class RegisteredVersion:
    """One version of a registered model: its version number and the run it was registered from."""

    version: str
    run_id: str
    registered_ms: int | None = None  # when this version was registered (ms since the epoch)


def register_best_model(uri: str | None, run_id: str, model_name: str, alias: str = "best",
                        tags: Mapping[str, Any] | None = None) -> str:
    """Register the model `run_id` saved as a models-from-code pyfunc (no pickle); move `alias` to it.

    The pyfunc (code: `tracking/pyfunc_model.py`, artifacts: weights.safetensors + config.yaml, the
    latentsweep package as code) is logged under the run's `registered_model/`. Returns the version.
    """
    import warnings

    import mlflow
    import torch

    client, uri = client_for(uri)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            local = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=MODEL_DIR,
                                                        dst_path=str(Path(tmp) / "src"), tracking_uri=uri)
        except Exception as exc:
            raise TrackingError(f"run {run_id} has no saved model in {uri} — keep tracking.log_model=true "
                                "to register the best trial") from exc
        target = Path(tmp) / "pyfunc"
        with warnings.catch_warnings():  # type-hint notes about predict(): we log no signature on purpose
            warnings.simplefilter("ignore", UserWarning)
            mlflow.pyfunc.save_model(
                path=str(target), python_model=str(PYFUNC_CODE),
                artifacts={"weights": str(Path(local) / "weights.safetensors"),
                           "config": str(Path(local) / "config.yaml")},
                code_paths=[str(PACKAGE_DIR)],
                pip_requirements=[f"torch=={torch.__version__.split('+')[0]}", "safetensors", "pyyaml", "numpy",
                                  f"mlflow=={mlflow.__version__}"])
        client.log_artifacts(run_id, str(target), REGISTERED_MODEL_DIR)
    source = f"{client.get_run(run_id).info.artifact_uri}/{REGISTERED_MODEL_DIR}"
    try:
        client.create_registered_model(model_name, description="latentsweep: best trial of Optuna sweeps")
    except Exception as exc:
        if "already exists" not in str(exc) and "RESOURCE_ALREADY_EXISTS" not in str(exc):
            raise TrackingError(f"cannot create registered model {model_name} in {uri}: "
                                f"{str(exc).splitlines()[0]} — check tracking.uri") from exc
    version = client.create_model_version(model_name, source=source, run_id=run_id,
                                          tags={k: str(v) for k, v in (tags or {}).items()})
    client.set_registered_model_alias(model_name, alias, version.version)
    return str(version.version)


def load_registered_model(model_name: str, alias: str = "best", tracking_uri: str | None = None):
    """(torch model in eval mode, config dict) of `models:/<model_name>@<alias>`, without pickle."""
    import mlflow

    client, uri = client_for(tracking_uri)
    try:
        version = client.get_model_version_by_alias(model_name, alias)
    except Exception as exc:
        raise TrackingError(f"no registered model {model_name}@{alias} in {uri} — run a sweep with "
                            "hydra.sweeper.register_best=true, or check tracking.uri") from exc
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=version.source, dst_path=tmp,
                                                         tracking_uri=uri))
        return load_model_paths(local / "artifacts" / "weights.safetensors", local / "artifacts" / "config.yaml")


def registered_version(uri: str | None, name: str, alias: str) -> RegisteredVersion | None:
    """The version `name@alias` points at, or None when the model or the alias does not exist.

    A store that cannot be opened still raises TrackingError: only the look-up itself means "absent".
    """
    from mlflow.exceptions import MlflowException

    client, where = client_for(uri)
    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as exc:
        if exc.error_code in ABSENT:
            return None
        raise TrackingError(f"cannot look up {name}@{alias} in {where}: {str(exc).splitlines()[0]} "
                            "— check tracking.uri") from exc
    return RegisteredVersion(str(version.version), version.run_id, version.creation_timestamp)
