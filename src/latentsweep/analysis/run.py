"""`analyze(cfg) -> dict`: latent-space analysis of one trained model, logged as a nested MLflow run.

Steps: find the model (run id, else the registry's `latentsweep-<model>@best`, else the finished
run with the lowest best_val_loss) -> rebuild its data from the stored config (same split and
normalisation) -> encode every series -> cluster and probe the latents and, as the baseline, the
raw series -> figures, parquet, metrics and a markdown table on a run nested under the analysed one.

Scores are honest: when the data holds a TEST split out (UCR/UEA, MNIST, `data.test_fraction`),
the probe (and its C) is fitted on the train + validation latents and scored on TEST, and the
clustering scores are computed on TEST. Without one, the probe is fitted on train and scored on
validation (which early stopping saw), and clustering uses every series.
"""

from __future__ import annotations

import logging
import math
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from .. import figures, tracking
from ..data import PreparedData, SeriesSet
from ..errors import ConfigError, DataError, TrackingError
from ..loading import load_data
from ..training import resolve_device
from . import report
from .labelfree import label_free_scores
from .latents import (
    encode_series,
    latent_columns,
    latents_frame,
    reconstruct_series,
    splits_of,
    write_latents,
)
from .metrics import (
    MAX_DEFAULT_RAW_LENGTH,
    choose_k,
    clustering_scores,
    limited_threads,
    probe,
    raw_features,
    subsample,
)
from .svm import svm_accuracy

log = logging.getLogger("latentsweep")

REGISTRY_PREFIX = "latentsweep-"
ANALYSIS_TAG = "latentsweep.analysis"  # on analysis runs, so searches for training runs skip them


@dataclass
class ModelSource:
    run_id: str | None  # the training run the model came from (the analysis run nests under it)
    model: Any
    config: dict
    description: str


# --- which model ----------------------------------------------------------------------------
def _model_target(model: str) -> str | None:
    """`_target_` of conf/model/<model>.yaml's schema, to recognise that model's runs."""
    from ..config.registry import all_schemas

    schema = all_schemas().get("model", {}).get(model)
    return getattr(schema, "_target_", None) if schema is not None else None


def _from_registry(uri: str, model: str, alias: str) -> ModelSource | None:
    name = f"{REGISTRY_PREFIX}{model}"
    version = tracking.registered_version(uri, name, alias)
    if version is None:
        log.info("no registered model %s@%s in %s: falling back to the finished run with the lowest "
                 "best_val_loss", name, alias, uri)
        return None
    loaded, config = tracking.load_registered_model(name, alias=alias, tracking_uri=uri)
    return ModelSource(version.run_id, loaded, config,
                       f"registered model {name}@{alias} (version {version.version}, run {version.run_id})")


def _best_finished_run(uri: str, experiment: str, model: str | None) -> ModelSource:
    runs = tracking.finished_runs(uri, experiment, sort_metric="best_val_loss")
    if runs is None:
        raise TrackingError(f"no experiment {experiment!r} in {uri} — train a model first (python train.py), "
                            "set tracking.experiment, or pass run=<id>")
    runs = [r for r in runs if math.isfinite(r.metrics.get("best_val_loss", math.nan))
            and ANALYSIS_TAG not in r.tags]
    target = _model_target(model) if model else None
    if model:
        runs = [r for r in runs if (r.params.get("model._target_") == target if target
                                    else f".{model}." in r.params.get("model._target_", ""))]
    # Only autoencoders: a task=classify run's encoder was trained on the labels, so "latents beat
    # raw" would say nothing about unsupervised latents, and its best_val_loss is a cross-entropy.
    supervised = [r for r in runs if _task_of(r) != "reconstruct"]
    runs = [r for r in runs if _task_of(r) == "reconstruct"]
    skipped = f"; {len(supervised)} supervised (task=classify) run(s) skipped" if supervised else ""
    runs.sort(key=lambda r: r.metrics["best_val_loss"])
    for run in runs:
        if tracking.has_saved_model(uri, run.run_id):
            loaded, config = tracking.load_model(run.run_id, uri)
            loss = run.metrics["best_val_loss"]
            log.info("analysing run %s: the finished %sautoencoder run (task=reconstruct) with the lowest "
                     "best_val_loss (%.5g) in experiment %r%s", run.run_id, f"{model} " if model else "", loss,
                     experiment, skipped)
            return ModelSource(run.run_id, loaded, config,
                               f"run {run.run_id} (autoencoder with the lowest best_val_loss {loss:.5g}{skipped})")
    which = f"{model} " if model else ""
    raise TrackingError(f"no finished {which}autoencoder run (task=reconstruct) with a saved model in experiment "
                        f"{experiment!r} at {uri}{skipped} — train one (python train.py"
                        f"{f' model={model}' if model else ''}) or pass run=<id>")


def _task_of(run: Any) -> str:
    """The task a training run was trained for; runs from before tasks existed were autoencoders."""
    return str(run.params.get("task.name", "reconstruct"))


FAMILY_WINNER = "families"  # a family sweep registers its overall winner as latentsweep-families@best


def _newest_registered(uri: str, alias: str) -> str | None:
    """The zoo model whose `latentsweep-<model>@<alias>` was registered last, or None."""
    from ..config.registry import all_schemas

    found = {}
    for model in all_schemas().get("model", {}):
        version = tracking.registered_version(uri, f"{REGISTRY_PREFIX}{model}", alias)
        if version is not None:
            found[model] = version.registered_ms or 0
    return max(found, key=found.get) if found else None


def resolve_model(cfg: DictConfig, uri: str) -> ModelSource:
    """`run=<id>`, else the registry's `latentsweep-<model>@<alias>`, else the best finished run.

    `model_name=auto` (the default): a family sweep's winner (`latentsweep-families@<alias>`), else
    the most recently registered `latentsweep-<model>@<alias>` of the zoo (the last single-model
    sweep's best, e.g. `experiment=latent`'s conv_ae), else the best finished run of any model (as
    `model_name=null`: after a first `python train.py`, its run, whichever model trained it).
    """
    if cfg.run:
        loaded, config = tracking.load_model(str(cfg.run), uri)
        return ModelSource(str(cfg.run), loaded, config, f"run {cfg.run}")
    if cfg.model_name == "auto":
        if tracking.registered_version(uri, f"{REGISTRY_PREFIX}{FAMILY_WINNER}", str(cfg.alias)) is not None:
            return _from_registry(uri, FAMILY_WINNER, str(cfg.alias))
        cfg = OmegaConf.merge(cfg, {"model_name": _newest_registered(uri, str(cfg.alias))})
    if cfg.model_name:
        found = _from_registry(uri, str(cfg.model_name), str(cfg.alias))
        if found is not None:
            return found
    return _best_finished_run(uri, str(cfg.tracking.experiment), cfg.model_name)


# --- data -----------------------------------------------------------------------------------
def rebuild_data(config: dict) -> PreparedData:
    """The run's data with its own split and normalisation (same source config, same seed)."""
    if not config.get("data"):
        raise TrackingError("the model's config.yaml has no data section — retrain with the current code")
    data = load_data(OmegaConf.create(config["data"]), int(config.get("seed", 0)))
    stored = config.get("spec") or {}
    for key in ("n_channels", "n_classes"):
        if key in stored and stored[key] != getattr(data.spec, key):
            raise DataError(f"the data rebuilt from the run's config has {key}={getattr(data.spec, key)}, "
                            f"but the model was trained with {stored[key]} — the source data changed; "
                            "restore it or retrain")
    return data


AFFINE_NORMALISATIONS = ("none", "zscore", "global")  # undone exactly by the raw baseline's z-normalisation


def native_series(data: PreparedData, config: dict) -> list[tuple[str, SeriesSet]]:
    """The splits of `data` as the source gave them, in frame order.

    zscore and global normalisation are affine per channel, which the raw baseline's own
    z-normalisation undoes exactly, so those splits serve as they are. The model's resampling
    (`data.fixed_length`) and minmax's clamp are not undone: the series are then loaded again,
    unresampled and unnormalised, with the same seed, hence the same split."""
    splits = splits_of(data)
    preprocess = data.report.get("preprocess", {})
    if preprocess.get("fixed_length") is None and preprocess.get("normalize") in AFFINE_NORMALISATIONS:
        return splits
    source = {**config["data"], "normalize": "none", "fixed_length": None, "fixed_length_if_variable": None}
    native = splits_of(load_data(OmegaConf.create(source), int(config.get("seed", 0))))
    if [s.ids for _, s in native] != [s.ids for _, s in splits]:
        raise DataError("the series loaded without resampling split differently from the model's — "
                        "the source data changed; restore it or retrain")
    return native


def raw_baseline(data: PreparedData, config: dict, raw_length: int | None = None) -> tuple[np.ndarray, int]:
    """The usual raw-series baseline, whatever preprocessing the model was trained with: each series
    as the source gave it, resampled to the median TRAIN length (at most MAX_DEFAULT_RAW_LENGTH,
    or `raw_length`) and z-normalised per channel (`metrics.raw_features`); rows in frame order."""
    splits = native_series(data, config)
    if raw_length is None:
        train_lengths = torch.cat([s.lengths for name, s in splits if name != "test"]).float()
        raw_length = min(int(train_lengths.median()), MAX_DEFAULT_RAW_LENGTH)
    raw_length = int(raw_length)
    return np.vstack([raw_features(subset, raw_length) for _, subset in splits]), raw_length


def _check(cfg: DictConfig) -> None:
    if cfg.k is not None and int(cfg.k) < 2:
        raise ConfigError(f"k={cfg.k}: need at least 2 clusters — set k>=2 or k=null")
    for key in ("raw_length", "max_points"):
        if cfg.get(key) is not None and int(cfg[key]) < 2:
            raise ConfigError(f"{key}={cfg[key]} is too small — set {key}>=2 or {key}=null")
    if cfg.get("num_threads") is not None and int(cfg.num_threads) < 1:
        raise ConfigError(f"num_threads={cfg.num_threads} must be >= 1 — or null to leave the defaults")
    for key in ("batch_size", "n_worst"):
        if int(cfg[key]) < (1 if key == "batch_size" else 0):
            raise ConfigError(f"{key}={cfg[key]} must be positive — e.g. {key}=256")


# --- the analysis ---------------------------------------------------------------------------
def analyze(cfg: DictConfig) -> dict[str, Any]:
    """Run the whole analysis; returns metrics, the table, run ids and timings (see module doc)."""
    _check(cfg)
    with limited_threads(cfg.get("num_threads")):
        return _analyze(cfg)


NO_LABELS_NOTE = ("no labels, so this cannot tell whether the latents separate the groups you care about "
                  "better than the raw series (NMI, ARI, probe and SVM accuracy need labels): the "
                  "label-free scores only say how much structure each keeps, and k was chosen from the data")


def _score_metrics(clusters, probes, svms, label_free) -> dict[str, float]:
    """The scores of each feature set as flat MLflow metrics (`latent.spectral.nmi`, `raw.svm_accuracy`, ...)."""
    metrics: dict[str, float] = {}
    for name, per_method in clusters.items():
        for method, scores in per_method.items():
            for key in ("nmi", "ari", "silhouette"):
                value = getattr(scores, key)
                if value is not None and math.isfinite(value):
                    metrics[f"{name}.{method}.{key}"] = value
    if probes:
        for name, result in probes.items():
            metrics[f"{name}.probe_accuracy"] = result.accuracy
            metrics[f"{name}.probe_C"] = result.C
        metrics["majority_accuracy"] = probes["latent"].majority_accuracy
    if svms:
        for name, result in svms.items():
            metrics[f"{name}.svm_accuracy"] = result.accuracy
            metrics[f"{name}.svm_C"] = result.C
            if result.cv_accuracy is not None:
                metrics[f"{name}.svm_cv_accuracy"] = result.cv_accuracy
    for name, scores in label_free.items():
        metrics.update({f"{name}.label_free.{score}": float(v) for score, v in scores.items()})
    return metrics


class _Laps:
    """Wall time of each step of the analysis (`time.<step>_s` in MLflow)."""

    def __init__(self) -> None:
        self.start = self.last = time.perf_counter()
        self.timings: dict[str, float] = {}

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name], self.last = now - self.last, now


@dataclass
class _Scores:
    """Everything scored: the feature sets, where each score was fitted and scored, and the scores."""
    frame: Any  # the latents frame (series_id, split, label, z0..., recon_error)
    features: dict[str, np.ndarray]  # "latent", "raw": one row per frame row
    raw_length: int
    split: np.ndarray
    held_out: str  # "test" when the data holds one out, else "val"
    idx: np.ndarray  # the rows clustered (subsampled to max_points)
    n_pool: int  # the rows clustering could have used
    k: int
    k_source: str
    has_labels: bool
    clusters: dict
    label_free: dict
    probes: dict | None = None
    svms: dict | None = None


def _pick_k(cfg: DictConfig, data: PreparedData, z: np.ndarray, y: np.ndarray | None, seed: int) -> tuple[int, str]:
    """`k=`, else the number of classes, else (no labels) the best k-means silhouette for k in 2..10."""
    if cfg.k:
        return int(cfg.k), ""
    if y is not None:
        return int(data.spec.n_classes or len(np.unique(y))), ""
    k = choose_k(z, seed)
    log.info("k=%d clusters: the best k-means silhouette of the latents for k in 2..10 (set k= to fix it)", k)
    return k, " (chosen from the data: the best k-means silhouette, k in 2..10)"


def _score(cfg: DictConfig, data: PreparedData, source: ModelSource, frame: Any, laps: _Laps) -> _Scores:
    """Cluster, label-free scores, probe and SVM, for the latents and the raw series alike."""
    seed = int(cfg.seed)
    z = frame[latent_columns(frame)].to_numpy(dtype=np.float64)  # the latent columns only, never recon_error
    raw, raw_length = raw_baseline(data, source.config, cfg.raw_length)
    has_labels = "label_index" in frame
    y = frame["label_index"].to_numpy() if has_labels else None
    split = frame["split"].to_numpy()
    held_out = "test" if (split == "test").any() else "val"
    scored = split == held_out  # the probe is scored here ...
    fitted_on = (split != "test") if held_out == "test" else (split == "train")  # ... and fitted here
    if not has_labels:
        log.info("the data has no labels: NMI, ARI, the probe and the confusion matrix are skipped "
                 "(only silhouettes are reported)")
    # clustering scores: on TEST when held out, else on every series (subsampled to max_points)
    pool = np.flatnonzero(scored) if held_out == "test" else np.arange(len(frame))
    idx = pool[subsample(len(pool), cfg.max_points, seed)]
    k, k_source = _pick_k(cfg, data, z[idx], y, seed)
    features = {"latent": z, "raw": raw}
    clusters = {name: clustering_scores(x[idx], k, y[idx] if has_labels else None, seed)
                for name, x in features.items()}
    laps("cluster")
    label_free = {name: label_free_scores(x[split != "test"], raw[split != "test"], seed)
                  for name, x in features.items()}  # as the sweep's label_free objective reads them
    laps("label_free")
    out = _Scores(frame, features, raw_length, split, held_out, idx, len(pool), k, k_source, has_labels,
                  clusters, label_free)
    if has_labels:
        out.probes = {name: probe(x[fitted_on], y[fitted_on], x[scored], y[scored],
                                  n_classes=data.spec.n_classes, seed=seed) for name, x in features.items()}
        laps("probe")
        out.svms = {name: svm_accuracy(x[fitted_on], y[fitted_on], x[scored], y[scored])
                    for name, x in features.items()}
        laps("svm")
    return out


def _summary(source: ModelSource, data: PreparedData, s: _Scores, table: str) -> str:
    """The printed report: a header (what was scored where), the table and its caveats."""
    z, raw = s.features["latent"], s.features["raw"]
    counts = ", ".join(f"{int((s.split == name).sum())} {name}" for name, _ in splits_of(data))
    scored_on = ("probe fitted on train + val, scored on the held-out test split; clustering on test"
                 if s.held_out == "test" else "probe fitted on train, scored on val (no held-out test split)")
    header = (f"latent space of {source.description}: {len(s.frame)} series ({counts}), latent {z.shape[1]} "
              f"dims vs raw {raw.shape[1]} ({s.raw_length} steps x {data.spec.n_channels} channels, "
              f"z-normalised), k={s.k}{s.k_source}; {scored_on}"
              + (f", clustering on {len(s.idx)} sampled series" if len(s.idx) < s.n_pool else ""))
    note = "silhouette: in each feature set's own standardised space (compare with care across columns)"
    if not s.has_labels:
        note += f"; {NO_LABELS_NOTE}"
    return f"{header}\n\n{table}\n\n{note}\n"


def _metrics(s: _Scores) -> dict[str, float]:
    metrics = {"k": s.k, "n_series": len(s.frame), "n_scored": int((s.split == s.held_out).sum()),
               "latent_dim": s.features["latent"].shape[1], "raw_dim": s.features["raw"].shape[1],
               **_score_metrics(s.clusters, s.probes, s.svms, s.label_free)}
    if "recon_error" in s.frame:
        errors = s.frame["recon_error"].to_numpy()
        metrics.update({"recon_error.mean": float(np.nanmean(errors)),
                        "recon_error.p99": float(np.nanpercentile(errors, 99))})
    return metrics


def _analyze(cfg: DictConfig) -> dict[str, Any]:
    laps = _Laps()
    uri = tracking.open_store(cfg.tracking.uri)
    source = resolve_model(cfg, uri)
    device = resolve_device(str(cfg.device))
    model = source.model.to(device).eval()
    data = rebuild_data(source.config)
    laps("load")
    encoded = {name: encode_series(model, subset, batch_size=int(cfg.batch_size), device=device)
               for name, subset in splits_of(data)}
    frame = latents_frame(data, encoded)
    laps("encode")
    s = _score(cfg, data, source, frame, laps)
    table = report.markdown_table(report.comparison_rows(s.clusters, s.probes, s.svms, s.held_out, s.label_free),
                                  list(s.features))
    summary = _summary(source, data, s, table)
    metrics = _metrics(s)
    run_id, logged = _log_analysis(cfg, uri, source, model, data, s, summary, metrics, laps, device)
    return {"analysis_run_id": run_id, "analyzed_run_id": source.run_id, "source": source.description,
            "metrics": metrics, "table": table, "summary": summary, "k": s.k, "has_labels": s.has_labels,
            "figures": logged, "latents_artifact": "analysis/latents.parquet", "timings": laps.timings,
            "scored_split": s.held_out, "tracking_uri": uri}


def _log_analysis(cfg: DictConfig, uri: str, source: ModelSource, model: Any, data: PreparedData, s: _Scores,
                  summary: str, metrics: dict, laps: _Laps, device: torch.device) -> tuple[str | None, list[str]]:
    """A run nested under the analysed one: the latents as parquet, the summary, figures, metrics."""
    seed = int(cfg.seed)
    parent_experiment = (tracking.experiment_name_of_run(uri, source.run_id)
                         if source.run_id else str(cfg.tracking.experiment))
    tracker = tracking.Tracker(uri=uri, experiment=parent_experiment)
    run_id = tracker.start(
        run_name=f"analysis {source.run_id[:8] if source.run_id else cfg.model_name}",
        params={"analyzed_run": source.run_id, "source": source.description, "k": s.k, "raw_length": s.raw_length,
                "scored_split": s.held_out, "max_points": cfg.max_points, "n_clustered": len(s.idx), "seed": seed,
                "device": str(device)},
        tags={ANALYSIS_TAG: "true", "analyzed_run": str(source.run_id)},
        parent_run_id=source.run_id)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            write_latents(s.frame, Path(tmp) / "latents.parquet")
            (Path(tmp) / "summary.md").write_text(summary)
            tracker.log_artifact_dir(tmp, "analysis")
        logged = _log_figures(tracker, model, data, s.frame, s.clusters, s.probes, s.idx, s.features["latent"],
                              seed, int(cfg.n_worst), device)
        laps("figures")
        metrics.update({f"time.{name}_s": value for name, value in laps.timings.items()})
        metrics["time.total_s"] = time.perf_counter() - laps.start
        tracker.log_metrics(metrics)
    except BaseException:
        tracker.end("FAILED")
        raise
    tracker.end("FINISHED")
    log.info("analysis logged to MLflow run %s (parent %s) in %s", run_id, source.run_id, uri)
    return run_id, logged


def _log_figures(tracker, model, data: PreparedData, frame, clusters, probes, idx, z, seed: int,
                 n_worst: int, device) -> list[str]:
    """Every figure of the analysis, logged under `figures/`; returns their artifact paths."""
    logged: list[str] = []

    def log_fig(fig, name: str) -> None:
        tracker.log_figure(fig, f"figures/{name}")
        figures.close(fig)
        logged.append(f"figures/{name}")

    class_names = list(data.spec.class_names or [])
    if probes is not None:
        colour = frame["label_index"].to_numpy()[idx]
        names = class_names or [str(i) for i in range(int(colour.max()) + 1)]
        colour_by = "label"
    else:
        colour = clusters["latent"]["kmeans"].assignments
        names = [f"cluster {i}" for i in range(int(colour.max()) + 1)]
        colour_by = "k-means cluster"
    log_fig(report.embedding_figure(z[idx], colour, names, colour_by=colour_by, seed=seed), "latent_map.png")
    if probes is not None:
        log_fig(report.confusion_figure(probes, names), "probe_confusion.png")

    if "recon_error" in frame and n_worst > 0:
        errors = frame["recon_error"].to_numpy()
        order = [int(i) for i in np.argsort(-np.nan_to_num(errors, nan=-np.inf))[:n_worst]]
        splits = [subset for _, subset in splits_of(data)]
        starts = np.cumsum([0] + [len(subset) for subset in splits])
        originals, recons, titles = [], [], []
        for row in order:
            part = int(np.searchsorted(starts, row, side="right")) - 1
            subset, pos = splits[part], row - int(starts[part])
            originals.append(subset[pos])
            recons.append(reconstruct_series(model, subset, [pos], device)[0])
            titles.append(f"{subset.ids[pos]} [{frame['split'].iat[row]}] err {errors[row]:.3g}")
        log_fig(figures.reconstructions(originals, recons, titles, data.spec.image_shape,
                                        title="worst-reconstructed series (anomaly candidates)"),
                "worst_reconstructions.png")
        threshold = float(errors[order[-1]])
        log_fig(report.error_histogram(errors, frame["split"].to_numpy(), threshold), "recon_errors.png")

    if hasattr(model, "sample"):  # generative models (vrae): series decoded from the prior
        length = data.spec.fixed_length or int(torch.cat([s.lengths for _, s in splits_of(data)]).float().median())
        generator = torch.Generator().manual_seed(seed)
        try:
            samples = model.sample(6, length, generator=generator).float().cpu()
        except TypeError:  # a sample() without a generator argument
            samples = model.sample(6, length).float().cpu()
        log_fig(figures.reconstructions(list(samples), list(samples), [f"prior {i}" for i in range(len(samples))],
                                        data.spec.image_shape, title="series generated from the prior"),
                "prior_samples.png")
    return logged

