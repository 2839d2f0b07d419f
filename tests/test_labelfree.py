"""Label-free selection: the scores read no label, `objective=label_free` and 'a|b' objectives on real runs."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from latentsweep import objectives
from latentsweep.analysis.labelfree import CANDIDATES, label_free_scores, neighbour_trust, rankme
from latentsweep.analysis.run import rebuild_data
from latentsweep.data import DataSpec
from latentsweep.errors import ConfigError
from latentsweep.pipeline import train
from latentsweep.tracking import client_for, load_model

# rnn_ae on labelled one-channel synthetic series: a few seconds of CPU per run
SMALL = ["model=rnn_ae", "data.n_series=80", "data.shortest=16", "data.longest=40", "data.n_channels=1", "data.batch_size=16",
         "model.hidden_size=16", "model.latent_dim=4", "trainer.max_epochs=2", "trainer.progress=false",
         "trainer.num_threads=1", "tracking.n_reconstructions=0"]


def test_scores_follow_their_definitions():
    rng = np.random.default_rng(0)
    spread = rng.normal(size=(60, 6))
    assert rankme(spread) > 5.0  # isotropic: close to the 6 dimensions
    assert rankme(np.outer(rng.normal(size=60), rng.normal(size=6))) == pytest.approx(1.0, abs=0.05)
    assert neighbour_trust(spread, spread) == pytest.approx(1.0)  # an embedding of itself
    assert neighbour_trust(spread, rng.normal(size=(60, 6))) < 0.7  # unrelated neighbourhoods
    scores = label_free_scores(spread, spread)
    assert set(scores) == {*CANDIDATES, "k"} and 2 <= scores["k"] <= 10
    collapsed = label_free_scores(np.ones((60, 6)) + 1e-9 * rng.normal(size=(60, 6)), spread)
    assert collapsed["rankme"] == 0.0 and collapsed["silhouette"] == -1.0  # every score at its worst


def test_alternatives_resolve_from_the_data():
    labelled, unlabelled = DataSpec(n_channels=1, max_length=9, n_classes=3), DataSpec(n_channels=1, max_length=9)
    assert objectives.resolve("svm_cv_accuracy|label_free", labelled) == "svm_cv_accuracy"
    assert objectives.resolve("svm_cv_accuracy|label_free", unlabelled) == "label_free"
    assert objectives.resolve(["svm_cv_accuracy|label_free", "latent_dim"], unlabelled) == ["label_free", "latent_dim"]
    assert objectives.directions("svm_cv_accuracy|label_free") == ["maximize"]
    objectives.check_objective("svm_cv_accuracy|label_free", unlabelled)  # an alternative fits: no error
    with pytest.raises(ConfigError, match="needs labelled series"):
        objectives.check_objective("svm_cv_accuracy|probe_accuracy", unlabelled)
    with pytest.raises(ConfigError, match="different directions"):
        objectives.objective_names("val_loss|label_free")


def _relabelled(data, how: str):
    """`data` with its training and validation labels shuffled across series, or removed."""
    if how == "as they are":
        return data
    rng = np.random.default_rng(1)

    def change(subset):
        labels = None if how == "removed" else subset.labels[torch.as_tensor(rng.permutation(len(subset)))]
        return dataclasses.replace(subset, labels=labels, class_names=None if how == "removed" else subset.class_names)

    spec = dataclasses.replace(data.spec, n_classes=None) if how == "removed" else data.spec
    return dataclasses.replace(data, train=change(data.train), val=change(data.val), spec=spec)


def test_label_free_objective_never_reads_labels(make_cfg, mlflow_uri):
    """Every trial's objective, recomputed with the labels shuffled or removed, is the value it logged."""
    for lr in ("0.01", "0.003"):  # two trials of a sweep, as the sweeper would launch them
        train(make_cfg([*SMALL, "objective=label_free", f"optimizer.lr={lr}"], tiny=False))
    client, _ = client_for(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("latentsweep").experiment_id])
    assert len(runs) == 2
    for run in runs:
        logged = run.data.metrics
        assert logged["objective"] == pytest.approx(logged["label_free.trustworthiness"])
        assert all(f"label_free.{name}" in logged for name in CANDIDATES)
        model, config = load_model(run.info.run_id, mlflow_uri)
        data = rebuild_data(config)
        assert data.train.labels is not None  # the run had labels and did not use them
        for how in ("as they are", "shuffled", "removed"):
            value = objectives.objective_value("label_free", model=model, data=_relabelled(data, how), result=None)
            assert value == pytest.approx(logged["objective"], abs=1e-9), how


def test_large_sets_encode_only_the_rows_the_scores_keep_and_score_the_same(make_cfg, monkeypatch):
    """Beyond MAX_ROWS series only the scored rows are encoded (issue 29): same scores as encoding all."""
    from latentsweep.analysis import labelfree
    from latentsweep.build import build_model
    from latentsweep.pipeline import load_data

    monkeypatch.setattr(labelfree, "MAX_ROWS", 25)
    cfg = make_cfg(["data.n_series=60", "tracking.enabled=false"])
    data = load_data(cfg.data, cfg.seed)
    model = build_model(cfg.model, data.spec)
    context = {"model": model, "data": data, "device": torch.device("cpu")}
    encoded: list[int] = []
    real = objectives._encode
    monkeypatch.setattr(objectives, "_encode", lambda ctx, part: (encoded.append(len(part)), real(ctx, part))[1])
    only_rows = objectives.label_free_metrics(**context)
    assert sum(encoded) == 25  # not the 60 - test rows of train + val
    cache: dict = {}
    objectives._latents({**context, "_cache": cache}, "train")
    objectives._latents({**context, "_cache": cache}, "val")
    assert objectives.label_free_metrics(**context, _cache=cache) == pytest.approx(only_rows, abs=1e-9)
