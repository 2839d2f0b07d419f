"""A saved model prepares new RAW series exactly like its training data (normalisation, resampling).

Unit tests compare `preprocess_series` with `prepare`; the end-to-end tests train a tiny model,
register it as a pyfunc in a tmp MLflow store and feed it the raw validation series.
"""

from __future__ import annotations

import importlib
import logging

import mlflow
import numpy as np
import pytest
import torch
from mlflow.tracking._model_registry import utils as registry_utils
from omegaconf import OmegaConf

from latentsweep.build import load_source
from latentsweep.config import COMMON_DATA_FIELDS
from latentsweep.data import SeriesSet, collate, prepare, prepare_inputs, preprocess_series
from latentsweep.errors import DataError
from latentsweep.pipeline import load_data, train
from latentsweep.tracking import client_for, load_model, register_best_model

FAST = ["data.n_series=40", "data.shortest=10", "data.longest=24", "data.batch_size=16",
        "model=rnn_ae", "model.hidden_size=16", "model.latent_dim=4", "trainer.max_epochs=1", "trainer.progress=false",
        "trainer.num_threads=1", "tracking.n_reconstructions=0"]


def _raw_set(n: int = 30, channels: int = 2, seed: int = 0) -> SeriesSet:
    """Variable-length series far from zero mean / unit scale, so a missed normalisation shows."""
    rng = np.random.default_rng(seed)
    series = [rng.normal(5.0, 3.0, size=(int(rng.integers(6, 20)), channels)) * [1.0, 10.0][:channels]
              for _ in range(n)]
    return SeriesSet.from_arrays(series, ids=[f"s{i}" for i in range(n)])


def _raw_by_id(raw: SeriesSet, ids: list[str]) -> list[torch.Tensor]:
    index = {sid: i for i, sid in enumerate(raw.ids)}
    return [raw[index[sid]] for sid in ids]


@pytest.mark.parametrize("fixed_length", [None, 16])
@pytest.mark.parametrize("how", ["global", "minmax", "zscore", "none"])
def test_preprocess_series_reproduces_prepare_on_the_validation_split(how, fixed_length):
    raw = _raw_set()
    prepared = prepare(raw, normalize=how, fixed_length=fixed_length, seed=3)
    settings = prepared.report["preprocess"]
    assert settings["normalize"] == how and settings["fixed_length"] == fixed_length
    assert (settings["shift"] is None) == (how in ("none", "zscore"))
    again = preprocess_series(_raw_by_id(raw, prepared.val.ids), settings, n_channels=2)
    assert torch.equal(again.offsets, prepared.val.offsets)
    assert torch.allclose(again.values, prepared.val.values, atol=1e-6)


def test_bad_input_is_a_one_line_data_error():
    settings = prepare(_raw_set(), normalize="global").report["preprocess"]
    good = np.ones((5, 2))
    with pytest.raises(DataError, match="3 channels but the model was trained on 2"):
        preprocess_series([good, np.ones((5, 3))], settings, n_channels=2)
    with pytest.raises(DataError, match="series 1 is empty"):
        preprocess_series([good, np.ones((0, 2))], settings, n_channels=2)
    with pytest.raises(DataError, match="series 0 has 1 NaN/inf"):
        preprocess_series([np.array([[1.0, np.nan], [2.0, 3.0]])], settings, n_channels=2)


def test_models_saved_without_preprocess_get_their_input_as_given(caplog, monkeypatch):
    # the module (latentsweep.data.prepare is also the name of the function)
    monkeypatch.setattr(importlib.import_module("latentsweep.data.prepare"), "_warned_legacy", False)
    config = {"spec": {"n_channels": 2}}  # a config.yaml written before the "preprocess" section
    x = [np.arange(8, dtype=np.float32).reshape(4, 2)]
    with caplog.at_level(logging.WARNING, logger="latentsweep.data.prepare"):
        first = prepare_inputs(config, x)
        prepare_inputs(config, x)
    assert torch.equal(first.values, torch.as_tensor(x[0]))
    warned = [r for r in caplog.records if "predates saved normalisation" in r.message]
    assert len(warned) == 1


@pytest.mark.parametrize("extra", [["data.normalize=global"],
                                   ["data.normalize=minmax", "data.fixed_length=16"]],
                         ids=["global", "minmax-fixed_length"])
@pytest.mark.slow  # end to end: train, then analyze or load through the MLflow registry
def test_registered_pyfunc_takes_raw_series(extra, make_cfg, mlflow_uri, monkeypatch):
    # models:/ URIs resolve against the registry URI; set_registry_uri is process-global (and
    # MlflowClient prefers it over its tracking_uri), so set it here and have monkeypatch undo it
    monkeypatch.setattr(registry_utils, "_registry_uri", mlflow_uri)
    cfg = make_cfg([*FAST, *extra], tiny=False)
    train(cfg)
    client, _ = client_for(mlflow_uri)
    run = client.search_runs([client.get_experiment_by_name("latentsweep").experiment_id])[0]
    register_best_model(mlflow_uri, run.info.run_id, "latentsweep-rnn_ae")

    model, config = load_model(run.info.run_id, mlflow_uri)
    assert config["preprocess"]["normalize"] == cfg.data.normalize
    data_cfg = OmegaConf.create(config["data"])
    data = load_data(data_cfg, config["seed"])  # the prepared (normalised) split, as in training
    raw = _raw_by_id(load_source(data_cfg, COMMON_DATA_FIELDS), data.val.ids)  # the same series, raw
    assert not torch.allclose(raw[0][: len(data.val[0])], data.val[0])  # normalising changes them
    with torch.no_grad():
        expected = model.get_latent(collate(data.val, list(range(len(data.val))))).numpy()

    pyfunc = mlflow.pyfunc.load_model("models:/latentsweep-rnn_ae@best")
    latents = pyfunc.predict([s.numpy().astype(np.float64) for s in raw])
    np.testing.assert_allclose(latents, expected, atol=1e-5)
    # the torch model loaded for users: the same preparation through prepare_inputs
    with torch.no_grad():
        direct = model.get_latent(collate(prepare_inputs(config, raw), list(range(len(raw))))).numpy()
    np.testing.assert_allclose(direct, expected, atol=1e-5)


@pytest.mark.slow  # end to end: train, then analyze or load through the MLflow registry
def test_registered_classifier_predicts_class_names_and_probabilities(make_cfg, mlflow_uri, monkeypatch):
    """A `-classify` model's pyfunc answers the question a classifier is for: which class, how sure."""
    import pandas as pd

    monkeypatch.setattr(registry_utils, "_registry_uri", mlflow_uri)
    train(make_cfg([*FAST, "task=classify", "data.normalize=global"], tiny=False))
    client, _ = client_for(mlflow_uri)
    run = client.search_runs([client.get_experiment_by_name("latentsweep").experiment_id])[0]
    register_best_model(mlflow_uri, run.info.run_id, "latentsweep-rnn_ae-classify")

    model, config = load_model(run.info.run_id, mlflow_uri)
    data_cfg = OmegaConf.create(config["data"])
    data = load_data(data_cfg, config["seed"])
    raw = _raw_by_id(load_source(data_cfg, COMMON_DATA_FIELDS), data.val.ids)
    with torch.no_grad():
        logits = model.predict_logits(collate(data.val, list(range(len(data.val)))))
    names = list(data.spec.class_names)
    expected_probs = torch.softmax(logits, -1).numpy()

    out = mlflow.pyfunc.load_model("models:/latentsweep-rnn_ae-classify@best").predict(
        [s.numpy().astype(np.float64) for s in raw])
    assert isinstance(out, pd.DataFrame) and len(out) == len(data.val)
    assert list(out.columns) == ["label", *[f"prob_{n}" for n in names]]
    assert list(out["label"]) == [names[i] for i in logits.argmax(-1).tolist()]
    np.testing.assert_allclose(out[[f"prob_{n}" for n in names]].to_numpy(), expected_probs, atol=1e-5)
    np.testing.assert_allclose(out.iloc[:, 1:].sum(axis=1), 1.0, atol=1e-6)
