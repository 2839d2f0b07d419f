"""Everything MLflow: the store, runs, metrics, figures and the saved model.

Uses `MlflowClient` with explicit run ids rather than MLflow's global "active run", so many
trials in one worker process (the joblib launcher reuses them) never leak a run into each
other. Models are stored as `model/weights.safetensors` + `model/config.yaml`: no pickle.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import TrackingError

log = logging.getLogger(__name__)

DEFAULT_STORE_DIR = "mlruns"
# Loading a model downloads its artifacts: no per-file progress bar in our logs.
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
MODEL_DIR = "model"


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


class Tracker:
    """One MLflow run. Disabled trackers accept every call and do nothing."""

    def __init__(self, uri: str | None = None, experiment: str = "latentsweep", enabled: bool = True):
        self.enabled = enabled
        self.run_id: str | None = None
        self.resumed = False  # start() continued an existing run
        self.experiment_name = experiment
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
        try:
            run = self.client.get_run(run_id)
        except Exception:
            return False
        return run.info.lifecycle_stage != "deleted" and run.info.status != "FINISHED"

    def metric_steps(self, key: str) -> set[int]:
        """The steps at which `key` was logged in this run (what a resumed run already has)."""
        if not self.enabled:
            return set()
        return {m.step for m in self.client.get_metric_history(self.run_id, key)}

    def log_params(self, params: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in flatten(params).items()]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if not self.enabled:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [Metric(k, float(v), now, step or 0) for k, v in metrics.items()]
        self._retry(lambda: self.client.log_batch(self.run_id, metrics=batch))

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
                self.client.set_terminated(self.run_id, status=status)
            except Exception as exc:  # never hide the original error behind a tracking one
                log.warning("could not mark MLflow run %s as %s: %s", self.run_id, status, exc)


def save_model_files(folder: str | Path, state_dict: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items()}
    save_file(tensors, str(folder / "weights.safetensors"))
    (folder / "config.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=False))


def load_model_files(folder: str | Path):
    """(model in eval mode, config dict) from a folder written by `save_model_files`."""
    folder = Path(folder)
    return load_model_paths(folder / "weights.safetensors", folder / "config.yaml")


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


# =================================================================================================
# Sweeps (issue 4): a parent run per Optuna study, trial lookup, the Model Registry.
# Explicit run ids only (no fluent "active run"), like the rest of this module.
# =================================================================================================

SWEEP_STUDY_TAG = "optuna_study"
SWEEP_PARENT_TAG = "sweep_parent"
REGISTERED_MODEL_DIR = "registered_model"


def load_model_paths(weights: str | Path, config: str | Path):
    """(model in eval mode, config dict) from a safetensors file and its config.yaml.

    The model expects prepared input: `latentsweep.data.prepare_inputs(config, raw_series)` applies
    the training normalisation/resampling saved in `config["preprocess"]`.
    """
    from safetensors.torch import load_file

    from .build import build_model_from_dict

    cfg = yaml.safe_load(Path(config).read_text())
    model = build_model_from_dict(cfg["model"], cfg["spec"], cfg.get("task"))
    model.load_state_dict(load_file(str(weights)))
    model.eval()
    return model, cfg


def sweep_parent_run(uri: str | None, experiment: str, study_name: str, storage_label: str,
                     known_run_id: str | None = None, params: Mapping[str, Any] | None = None,
                     tags: Mapping[str, Any] | None = None) -> str:
    """The study's parent run, reused on resume: `known_run_id` if it is in this store, else the run
    tagged with the study and storage, else a new one. Reopened as RUNNING; `tags` refreshed."""
    client, uri = client_for(uri)
    exp_id = get_or_create_experiment(client, experiment, uri)
    run_id = None
    if known_run_id:
        try:
            run_id = client.get_run(known_run_id).info.run_id
        except Exception:
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


def register_best_model(uri: str | None, run_id: str, model_name: str, alias: str = "best",
                        tags: Mapping[str, Any] | None = None) -> str:
    """Register the model `run_id` saved as a models-from-code pyfunc (no pickle); move `alias` to it.

    The pyfunc (code: `sweeps/pyfunc_model.py`, artifacts: weights.safetensors + config.yaml, the
    latentsweep package as code) is logged under the run's `registered_model/`. Returns the version.
    """
    import warnings

    import mlflow
    import torch

    client, uri = client_for(uri)
    here = Path(__file__).resolve().parent
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
                path=str(target), python_model=str(here / "sweeps" / "pyfunc_model.py"),
                artifacts={"weights": str(Path(local) / "weights.safetensors"),
                           "config": str(Path(local) / "config.yaml")},
                code_paths=[str(here)],
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


# =================================================================================================
# Questions other modules ask of the store (analysis, task.pretrained, benchmarks): answered here
# so that no other module holds an MLflow client. Plain values in, plain values out.
# =================================================================================================


@dataclass(frozen=True)
class RegisteredVersion:
    """One version of a registered model: its version number and the run it was registered from."""

    version: str
    run_id: str


@dataclass(frozen=True)
class RunSummary:
    """What a search returns about one run, as plain dicts (no MLflow entities leak out)."""

    run_id: str
    metrics: dict[str, float]
    params: dict[str, str]
    tags: dict[str, str]


def open_store(uri: str | None = None) -> str:
    """Open the store once (creating a local one, migrating its schema) and return its resolved URI.

    Raises TrackingError, in one line, when it cannot be opened — the same check `client_for` makes.
    """
    return client_for(uri)[1]


def registered_version(uri: str | None, name: str, alias: str) -> RegisteredVersion | None:
    """The version `name@alias` points at, or None when the model or the alias does not exist.

    A store that cannot be opened still raises TrackingError: only the look-up itself means "absent".
    """
    client, _ = client_for(uri)
    try:
        version = client.get_model_version_by_alias(name, alias)
    except Exception:
        return None
    return RegisteredVersion(str(version.version), version.run_id)


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
