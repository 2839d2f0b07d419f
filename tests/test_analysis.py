"""Latent-space analysis (`analyze.py`) and the latent-quality sweep objectives, on real runs."""

from __future__ import annotations

import logging

import mlflow
import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from latentsweep import objectives
from latentsweep.analysis.latents import latent_columns, read_latents
from latentsweep.analysis.metrics import choose_k, clustering_scores, probe, raw_features
from latentsweep.analysis.run import analyze, rebuild_data
from latentsweep.analysis.svm import SVM_CS
from latentsweep.data import collate
from latentsweep.data.synthetic import make_synthetic
from latentsweep.errors import ConfigError, TrackingError
from latentsweep.pipeline import train
from latentsweep.tracking import client_for, load_model

# rnn_ae on one-channel synthetic series (4 well-separated event classes): a few seconds of CPU.
SEPARABLE = [
    "model=rnn_ae", "data.n_series=160", "data.shortest=16", "data.longest=48", "data.n_channels=1", "data.noise=0.05",
    "data.batch_size=16", "model.hidden_size=48", "model.latent_dim=8", "trainer.max_epochs=5",
    "trainer.patience=null", "trainer.progress=false", "trainer.num_threads=1", "optimizer.lr=0.01", "tracking.n_reconstructions=0",
]


def _last_run_id(uri: str) -> str:
    client, _ = client_for(uri)
    exp = client.get_experiment_by_name("latentsweep")
    runs = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)
    return runs[0].info.run_id


def _analyze_cfg(make_cfg, mlflow_uri, *overrides):
    return make_cfg([f"tracking.uri={mlflow_uri}", *overrides], tiny=False, config_name="analyze")


@pytest.mark.slow  # end to end: train, then analyze or load through the MLflow registry
def test_trained_latents_beat_chance_and_everything_is_logged(make_cfg, mlflow_uri):
    train(make_cfg(SEPARABLE, tiny=False))
    trained = _last_run_id(mlflow_uri)
    result = analyze(_analyze_cfg(make_cfg, mlflow_uri, f"run={trained}"))

    # Clusters of the latents share information with the classes; a permutation of the labels does not.
    m = result["metrics"]
    client, _ = client_for(mlflow_uri)
    assert result["k"] == 4 and result["has_labels"]
    assert m["latent.kmeans.nmi"] > 0.12 and m["latent.spectral.nmi"] > 0.12
    assert m["latent.probe_accuracy"] > m["majority_accuracy"] + 0.1
    for key in ("raw.kmeans.nmi", "raw.spectral.ari", "raw.probe_accuracy", "latent.kmeans.silhouette",
                "raw.svm_accuracy", "raw.svm_C"):
        assert key in m
    assert m["latent.svm_accuracy"] > m["majority_accuracy"] + 0.1 and m["latent.svm_C"] in SVM_CS
    metric_rows = {line.split("|")[1].strip() for line in result["table"].splitlines()[2:]}
    assert {"k-means NMI", "probe accuracy (val)", "RBF-SVM accuracy (val)"} <= metric_rows

    # A run nested under the analysed one, holding the figures and the parquet.
    run = client.get_run(result["analysis_run_id"])
    assert run.data.tags["mlflow.parentRunId"] == trained and run.info.status == "FINISHED"
    sizes = {a.path: a.file_size for a in client.list_artifacts(run.info.run_id, "figures")}
    for name in ("latent_map", "probe_confusion", "worst_reconstructions", "recon_errors"):
        assert sizes.get(f"figures/{name}.png", 0) > 1000
    assert "figures/prior_samples.png" not in sizes  # rnn_ae has no prior

    # The parquet round-trips: ids, splits, labels and latent dims match the model and its data.
    path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="analysis/latents.parquet",
                                               tracking_uri=mlflow_uri)
    frame = read_latents(path)
    model, config = load_model(trained, mlflow_uri)
    data = rebuild_data(config)
    assert list(frame["series_id"]) == data.train.ids + data.val.ids
    assert (frame["split"] == "train").sum() == len(data.train) and (frame["split"] == "val").sum() == len(data.val)
    names = data.spec.class_names
    assert list(frame["label"]) == [names[i] for i in np.concatenate([data.train.labels, data.val.labels])]
    assert latent_columns(frame) == [f"z{i}" for i in range(8)]
    with torch.no_grad():  # one series at a time, no batching or reordering: independent of encode_series
        expected = np.stack([model.get_latent(collate(data.val, [i]))[0].numpy() for i in range(len(data.val))])
    np.testing.assert_allclose(frame.loc[frame["split"] == "val", latent_columns(frame)].to_numpy(), expected,
                               rtol=1e-4, atol=1e-5)
    # recon_error, recomputed by hand for a few validation series, one at a time (no padding):
    # the mean squared difference between the series and the decoding of its own latent.
    assert model.loss_kind == "mse"
    val_rows = frame[frame["split"] == "val"].reset_index(drop=True)
    for i in (0, len(data.val) // 2, len(data.val) - 1):
        x = data.val.series_list()[i].numpy().astype(np.float64)
        with torch.no_grad():
            one = collate(data.val, [i])
            recon = model.decode(model.get_latent(one), one.lengths)[0, : len(x)].numpy().astype(np.float64)
        assert val_rows.loc[i, "recon_error"] == pytest.approx(((recon - x) ** 2).mean(), rel=1e-4)


def _unlabelled_parquet(path) -> None:
    series = make_synthetic(n_series=120, shortest=16, longest=40, n_channels=1, seed=3)
    rows = [pd.DataFrame({"series_id": sid, "step": np.arange(len(s)), "value": s[:, 0].numpy()})
            for sid, s in zip(series.ids, series.series_list())]
    pd.concat(rows).to_parquet(path, index=False)


@pytest.mark.slow  # end to end: train, then analyze or load through the MLflow registry
def test_unlabelled_data_skips_label_metrics_and_default_pick(make_cfg, mlflow_uri, tmp_path, caplog):
    path = tmp_path / "unlabelled.parquet"
    _unlabelled_parquet(path)
    data = ["data=parquet", f"data.path={path}", "data.time_column=step", "data.batch_size=16", "model=rnn_ae",
            "model.hidden_size=16", "model.latent_dim=4", "trainer.max_epochs=2", "trainer.progress=false",
            "tracking.n_reconstructions=0"]
    # Label-based objectives fail in one line before any training; silhouette needs k here.
    with pytest.raises(ConfigError, match="needs labelled series"):
        train(make_cfg([*data, "objective=probe_accuracy"], tiny=False))
    with pytest.raises(ConfigError, match="silhouette@<k>"):
        train(make_cfg([*data, "objective=silhouette"], tiny=False))
    value = train(make_cfg([*data, "objective=silhouette@3"], tiny=False))
    assert -1.0 <= value <= 1.0
    trained = _last_run_id(mlflow_uri)

    with caplog.at_level(logging.INFO, logger="latentsweep"):
        result = analyze(_analyze_cfg(make_cfg, mlflow_uri))  # run=null: no registry yet -> best run
    assert "autoencoder run (task=reconstruct) with the lowest best_val_loss" in caplog.text
    assert "no labels" in caplog.text
    assert result["analyzed_run_id"] == trained
    assert not result["has_labels"] and 2 <= result["k"] <= 10
    assert not any(k.endswith((".nmi", ".ari", "probe_accuracy")) for k in result["metrics"])
    assert "latent.kmeans.silhouette" in result["metrics"] and "NMI" not in result["table"]
    # k chosen from the data, the label-free scores of latent vs raw side by side, what it cannot tell
    assert f"k={result['k']} (chosen from the data" in result["summary"] and "cannot tell" in result["summary"]
    assert "| trustworthiness (label-free, train) |" in result["table"]
    assert all(f"{name}.label_free.{score}" in result["metrics"]
               for name in ("latent", "raw") for score in ("rankme", "trustworthiness", "stability", "silhouette"))
    client, _ = client_for(mlflow_uri)
    figures = {a.path for a in client.list_artifacts(result["analysis_run_id"], "figures")}
    assert "figures/latent_map.png" in figures and "figures/probe_confusion.png" not in figures

    with pytest.raises(TrackingError, match="no saved model"):
        analyze(_analyze_cfg(make_cfg, mlflow_uri, "run=0123456789abcdef0123456789abcdef"))



@pytest.mark.slow  # end to end: train, then analyze or load through the MLflow registry
def test_without_run_analyze_takes_the_best_autoencoder_never_a_classifier(make_cfg, mlflow_uri, caplog):
    """A task=classify run with a lower best_val_loss (a cross-entropy) is skipped, and the log says so."""
    # loud noise in raw units: a squared error (~9) far above the classifier's cross-entropy (<= ~1.4)
    train(make_cfg([*SEPARABLE, "trainer.max_epochs=1", "data.normalize=none", "data.noise=3.0"], tiny=False))
    autoencoder = _last_run_id(mlflow_uri)
    train(make_cfg([*SEPARABLE, "task=classify"], tiny=False))
    classifier = _last_run_id(mlflow_uri)
    client, _ = client_for(mlflow_uri)
    losses = {r: client.get_run(r).data.metrics["best_val_loss"] for r in (autoencoder, classifier)}
    assert client.get_run(classifier).data.params["task.name"] == "classify"
    assert losses[classifier] < losses[autoencoder]  # the old choice would have been the classifier

    with caplog.at_level(logging.INFO, logger="latentsweep"):
        result = analyze(_analyze_cfg(make_cfg, mlflow_uri, "max_points=200"))
    assert result["analyzed_run_id"] == autoencoder
    assert f"analysing run {autoencoder}" in caplog.text and "task=reconstruct" in caplog.text
    assert "1 supervised (task=classify) run(s) skipped" in caplog.text

@pytest.mark.slow  # end to end: train, then analyze or load through the MLflow registry
def test_without_run_analyze_takes_the_newest_registered_best(make_cfg, mlflow_uri):
    """After a single-model sweep (e.g. experiment=latent), plain `python analyze.py` analyses its best model."""
    from latentsweep.tracking import register_best_model

    quick = [*SEPARABLE, "trainer.max_epochs=1"]
    train(make_cfg(quick, tiny=False))
    rnn = _last_run_id(mlflow_uri)
    train(make_cfg(["model=conv_ae", "model.length=16", "model.latent_dim=4", "model.base_channels=4",
                    *[o for o in quick if not o.startswith(("model=", "model.hidden_size", "model.latent_dim"))]], tiny=False))
    conv = _last_run_id(mlflow_uri)
    register_best_model(mlflow_uri, rnn, "latentsweep-rnn_ae")
    register_best_model(mlflow_uri, conv, "latentsweep-conv_ae")  # registered last: the newest sweep's best
    result = analyze(_analyze_cfg(make_cfg, mlflow_uri, "max_points=200", "n_worst=0"))
    assert result["analyzed_run_id"] == conv and "latentsweep-conv_ae@best" in result["source"]
    register_best_model(mlflow_uri, rnn, "latentsweep-rnn_ae")  # a newer version moves the alias: rnn_ae is newest
    assert analyze(_analyze_cfg(make_cfg, mlflow_uri, "max_points=200", "n_worst=0"))["analyzed_run_id"] == rnn


def test_objective_switch_changes_what_train_returns(make_cfg, mlflow_uri):
    both = train(make_cfg(["objective=[val_loss,probe_accuracy,silhouette]"]))
    assert isinstance(both, list) and len(both) == 3
    val_loss, accuracy, sil = both
    assert val_loss > 0 and 0.0 <= accuracy <= 1.0 and -1.0 <= sil <= 1.0
    assert len({round(v, 6) for v in both}) == 3
    # A single objective returns the same number as in the list (same seed, same training).
    assert train(make_cfg(["objective=probe_accuracy"])) == pytest.approx(accuracy)
    assert train(make_cfg(["objective=silhouette"])) == pytest.approx(sil, abs=1e-4)
    client, _ = client_for(mlflow_uri)
    metrics = client.get_run(_last_run_id(mlflow_uri)).data.metrics
    assert metrics["objective"] == pytest.approx(metrics["objective.silhouette"])


def test_metrics_on_separated_blobs_and_objective_parsing():
    rng = np.random.default_rng(0)
    centres = rng.normal(scale=8.0, size=(3, 5))
    labels = np.repeat(np.arange(3), 40)
    x = centres[labels] + rng.normal(size=(120, 5))
    for scores in clustering_scores(x, 3, labels).values():
        assert scores.nmi > 0.9 and scores.ari > 0.9 and scores.silhouette > 0.5
    assert choose_k(x) == 3
    train_idx = np.arange(120) % 4 != 0
    result = probe(x[train_idx], labels[train_idx], x[~train_idx], labels[~train_idx], n_classes=3)
    assert result.accuracy == 1.0 and result.majority_accuracy < 0.5 and result.confusion.trace() == 30

    series = make_synthetic(n_series=5, shortest=10, longest=30, n_channels=2)
    feats = raw_features(series, 16)
    assert feats.shape == (5, 32)
    np.testing.assert_allclose(feats.reshape(5, 16, 2).mean(1), 0.0, atol=1e-5)

    assert objectives.objective_names("val_loss+latent_dim") == ["val_loss", "latent_dim"]
    listed = OmegaConf.create({"o": ["val_loss", "silhouette@4"]}).o
    assert objectives.directions(listed) == ["minimize", "maximize"]
    assert objectives.direction("probe_accuracy") == "maximize"
    assert objectives.metric_name("silhouette@4") == "objective.silhouette_k4"
    for bad in ("accuracy", "val_loss@3", "silhouette@1", "val_loss+val_loss"):
        with pytest.raises(ConfigError):
            objectives.objective_names(bad)
    with pytest.raises(ConfigError, match="directions"):
        objectives.direction(listed)


def _four_blobs(seed: int = 0):
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(4), 30)
    centres = rng.normal(scale=5.0, size=(4, 2))
    return centres, labels, centres[labels] + rng.normal(scale=0.3, size=(120, 2))


def test_a_collapsed_latent_scores_worse_not_better():
    """Latents at one point up to float noise (a collapsed encoder) must not look perfectly clustered
    once each dimension is scaled to unit variance; nor may collapsed extra dimensions help a score."""
    from latentsweep.analysis.metrics import kmeans_silhouette

    centres, labels, good = _four_blobs()
    collapsed = (1.0 + 1e-9 * good).astype(np.float32)  # the same clusters, shrunk to rounding noise
    healthy = kmeans_silhouette(good, 4)
    assert healthy > 0.7
    assert kmeans_silhouette(collapsed, 4) == -1.0  # the worst silhouette there is

    # Six extra dimensions that each hold the class in a 1e-9 wiggle around 1.0: blown up to unit
    # variance they would be perfectly clustered and lift the score; scaled honestly they add nothing.
    wiggle = 1.0 + 1e-9 * centres[labels][:, :1] * np.ones((1, 6))
    assert kmeans_silhouette(np.hstack([good, wiggle]), 4) == pytest.approx(healthy, abs=1e-6)

    train_idx = np.arange(120) % 2 == 0
    on_good = probe(good[train_idx], labels[train_idx], good[~train_idx], labels[~train_idx], n_classes=4)
    on_collapsed = probe(collapsed[train_idx], labels[train_idx], collapsed[~train_idx], labels[~train_idx],
                         n_classes=4)
    assert on_good.accuracy == 1.0
    assert on_collapsed.accuracy == pytest.approx(on_collapsed.majority_accuracy)  # no better than guessing


def test_a_collapsed_latent_is_reported_as_such_by_the_analysis():
    """Clustering and the latent map of one point: no clusters (silhouette -1, NMI 0), no t-SNE crash."""
    from latentsweep.analysis.report import embedding_figure

    _, labels, good = _four_blobs()
    collapsed = (1.0 + 1e-9 * good).astype(np.float32)
    for scores in clustering_scores(collapsed, 4, labels).values():
        assert scores.silhouette == -1.0 and scores.nmi == 0.0 and scores.ari == 0.0
        assert len(np.unique(scores.assignments)) == 1
    fig = embedding_figure(collapsed, labels, ["a", "b", "c", "d"], colour_by="label")
    assert "collapsed" in fig._suptitle.get_text()


def test_svm_cv_objective_is_the_yardstick_on_train_latents(make_cfg, mlflow_uri):
    """objective=svm_cv_accuracy: the RBF-SVM's cross-validated accuracy on the train + validation
    latents, C chosen by analyze.py's rules; the test rows are never encoded."""
    from latentsweep.analysis.latents import encode_series
    from latentsweep.analysis.svm import svm_cv_score
    from latentsweep.pipeline import load_data
    from latentsweep.tracking import load_model

    cfg = make_cfg(["objective=svm_cv_accuracy", "data.test_fraction=0.2"])
    value = train(cfg)
    assert 0.0 <= value <= 1.0
    client, _ = client_for(mlflow_uri)
    run_id = _last_run_id(mlflow_uri)
    assert client.get_run(run_id).data.metrics["objective"] == pytest.approx(value)
    model, _ = load_model(run_id, tracking_uri=mlflow_uri)
    data = load_data(cfg.data, cfg.seed)
    latents = np.concatenate([encode_series(model, s, with_errors=False).latents for s in (data.train, data.val)])
    labels = np.concatenate([data.train.labels.numpy(), data.val.labels.numpy()])
    assert value == pytest.approx(svm_cv_score(latents, labels), abs=1e-9)


def test_svm_cv_objective_scores_collapsed_latents_worst():
    """Latents at one point up to float noise (the silhouette's collapse rule) score 0, not the
    majority-class accuracy an SVM would give them."""
    from types import SimpleNamespace

    labels = torch.tensor([0, 1] * 10)
    data = SimpleNamespace(train=SimpleNamespace(labels=labels[:16]), val=SimpleNamespace(labels=labels[16:]))
    flat = np.full((16, 4), 3.0) + np.random.default_rng(0).normal(scale=1e-9, size=(16, 4))
    cache = {"train": flat, "val": flat[:4]}
    assert objectives.OBJECTIVES["svm_cv_accuracy"].compute(data=data, _cache=cache) == 0.0
    spread = np.vstack([np.eye(4)[i % 2] * 5 + np.random.default_rng(i).normal(size=4) for i in range(16)])
    cache = {"train": spread, "val": spread[:4]}
    assert objectives.OBJECTIVES["svm_cv_accuracy"].compute(data=data, _cache=cache) > 0.8


def test_raw_baseline_ignores_the_models_preprocessing(make_cfg):
    """The raw baseline is the series as the source gave them, resampled to the median TRAIN length
    and z-normalised per channel, whatever resampling and normalisation the model trained with."""
    from latentsweep.analysis.run import raw_baseline
    from latentsweep.pipeline import load_data

    def baseline(*overrides):
        cfg = make_cfg(["data.n_series=60", "data.test_fraction=0.2", *overrides])
        config = {"data": OmegaConf.to_container(cfg.data, resolve=True), "seed": cfg.seed}
        return raw_baseline(load_data(cfg.data, cfg.seed), config)

    plain, plain_length = baseline("data.normalize=none")
    resampled, length = baseline("data.normalize=minmax", "data.fixed_length=20")
    scaled, _ = baseline("data.normalize=global", "data.fixed_length_if_variable=30")
    np.testing.assert_allclose(resampled, plain, atol=1e-4)
    np.testing.assert_allclose(scaled, plain, atol=1e-4)
    # the median of the TRAIN series' own lengths (train + validation rows), TEST not counted
    data = load_data(make_cfg(["data.n_series=60", "data.test_fraction=0.2", "data.normalize=none"]).data, 0)
    assert length == plain_length == int(torch.cat([data.train.lengths, data.val.lengths]).float().median())
    assert plain.shape == (60, plain_length * data.spec.n_channels)
    rows = plain.reshape(60, plain_length, data.spec.n_channels)
    np.testing.assert_allclose(rows.mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(rows.std(1), 1, atol=1e-3)
