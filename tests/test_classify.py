"""Supervised mode (issue 11): encoders trained as classifiers, class weights, focal loss, pre-training.

Real Hydra composition, real MLflow stores in tmp folders, real training on tiny synthetic data.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient
from omegaconf import OmegaConf
from sklearn.metrics import f1_score

from latentsweep import objectives
from latentsweep.data import collate, prepare
from latentsweep.data.synthetic import make_synthetic
from latentsweep.errors import ConfigError, DataError, TrackingError
from latentsweep.models import RNNAutoencoder
from latentsweep.pipeline import load_data, make_loaders, train
from latentsweep.tasks.classifier import Classifier, balanced_class_weights, focal_loss
from latentsweep.tasks.metrics import ConfusionTally, confusion_matrix, per_class_scores
from latentsweep.tasks.report import predict
from latentsweep.tasks.setup import setup_task
from latentsweep.tracking import load_model
from latentsweep.training import fit, seed_everything
from tests.conftest import TINY, compose_config
from tests.hardening_kit import empty_store

ROOT = Path(__file__).resolve().parents[1]
CLASSIFY = ["task=classify", "trainer.patience=null", "tracking.n_reconstructions=0"]
# TINY without its model sizes: with task.pretrained the sizes come from the pre-trained run
TINY_DATA = [o for o in TINY if not o.startswith("model.")]


def _run_id(uri: str, **tags: str) -> str:
    client = MlflowClient(uri)
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              order_by=["attributes.start_time DESC"])
    runs = [r for r in runs if all(r.data.tags.get(k) == v for k, v in tags.items())]
    return runs[0].info.run_id


# -- losses and scores ---------------------------------------------------------------------------
def test_focal_loss_with_gamma_zero_is_weighted_cross_entropy():
    gen = torch.Generator().manual_seed(0)
    logits, targets = torch.randn(64, 4, generator=gen) * 3, torch.randint(0, 4, (64,), generator=gen)
    weight = torch.tensor([0.5, 1.0, 3.0, 2.0])
    assert torch.allclose(focal_loss(logits, targets, gamma=0.0, weight=weight),
                          F.cross_entropy(logits, targets, weight=weight), atol=1e-6)
    assert torch.allclose(focal_loss(logits, targets, gamma=0.0, label_smoothing=0.1),
                          F.cross_entropy(logits, targets, label_smoothing=0.1), atol=1e-6)
    # gamma > 0 down-weights every series (p_true > 0), most of all the well-classified ones
    assert focal_loss(logits, targets, gamma=2.0) < F.cross_entropy(logits, targets)


def test_epoch_scores_match_scikit_learn():
    gen = torch.Generator().manual_seed(1)
    labels, logits = torch.randint(0, 3, (50,), generator=gen), torch.randn(50, 4, generator=gen)
    labels[:5] = 3  # a class that is never predicted... or is
    tally = ConfusionTally(4)
    for part in (slice(0, 20), slice(20, 50)):
        tally.update(type("B", (), {"labels": labels[part]})(), {"logits": logits[part]})
    preds = logits.argmax(-1).numpy()
    scores = tally.compute()
    assert scores["accuracy"] == pytest.approx(float((preds == labels.numpy()).mean()))
    assert scores["macro_f1"] == pytest.approx(f1_score(labels.numpy(), preds, average="macro"))


def test_balanced_weights_raise_minority_recall_on_imbalanced_data():
    """Same seed and model; only the class weights differ. The minority class is 10%."""
    raw = make_synthetic(n_series=600, shortest=12, longest=40, noise=0.6, seed=1, classes=("burst", "chirp"))
    labels = raw.labels.numpy()
    keep = np.sort(np.concatenate([np.flatnonzero(labels == 0)[:270], np.flatnonzero(labels == 1)[:30]]))
    data = prepare(raw.subset(keep), val_fraction=0.3, seed=0)
    weights = balanced_class_weights(data.train.labels, 2)
    counts = torch.bincount(data.train.labels).float()
    assert torch.allclose(weights, counts.sum() / (2 * counts))
    loader_cfg = OmegaConf.create({"batch_size": 32, "batching": "bucket", "bucket_pool": 16})
    recall = {}
    for weighted in (False, True):
        seed_everything(0)
        model = Classifier(RNNAutoencoder(data.spec, hidden_size=16, latent_dim=4), data.spec, head_sizes=[],
                           dropout=0.0)
        if weighted:
            model.set_class_weights(weights)
        train_loader, val_loader = make_loaders(data, loader_cfg, 0, torch.device("cpu"))
        result = fit(model, torch.optim.Adam(model.parameters(), lr=0.01), train_loader, val_loader,
                     max_epochs=4, device=torch.device("cpu"), progress=False)
        model.load_state_dict(result.best_state)
        both = [(data.train, predict(model, data.train, "cpu")), (data.val, predict(model, data.val, "cpu"))]
        cm = sum(confusion_matrix(s.labels, p, 2) for s, p in both)
        recall[weighted] = per_class_scores(cm)["recall"][1]
    assert recall[True] > recall[False] + 0.2, recall


# -- end to end through compose + pipeline.train -------------------------------------------------
def test_classifier_beats_the_majority_class_and_logs_its_scores(make_cfg, mlflow_uri):
    cfg = make_cfg([*CLASSIFY, "trainer.max_epochs=10", "objective=val_macro_f1", "task.class_weights=balanced",
                    "data.n_series=400", "data.longest=40", "model.hidden_size=64", "model.latent_dim=8",
                    "optimizer.lr=0.02", "trainer.num_threads=1"])
    value = train(cfg)
    run = MlflowClient(mlflow_uri).get_run(_run_id(mlflow_uri, task="classify"))
    metrics = run.data.metrics
    data = load_data(cfg.data, cfg.seed)
    majority = float(torch.bincount(data.val.labels).max()) / len(data.val)
    assert metrics["best_val_accuracy"] > majority + 0.2, (metrics["best_val_accuracy"], majority)
    assert value == pytest.approx(metrics["best_val_macro_f1"]) and value > 0.4  # objective = kept epoch's F1
    assert metrics["objective"] == pytest.approx(value)
    for name in ("train_accuracy", "val_accuracy", "train_macro_f1", "val_macro_f1", "val_recall.chirp",
                 "val_precision.burst"):
        assert name in metrics
    client = MlflowClient(mlflow_uri)
    artifacts = {a.path for folder in ("figures", "tables") for a in client.list_artifacts(run.info.run_id, folder)}
    assert {"figures/confusion_matrix.png", "tables/per_class_val.parquet"} <= artifacts
    # the saved config has `task`: load_model rebuilds the classifier, with its balanced weights
    model, config = load_model(run.info.run_id, mlflow_uri)
    assert isinstance(model, Classifier) and config["task"]["name"] == "classify"
    counts = torch.bincount(data.train.labels, minlength=4).float()
    assert torch.allclose(model.class_weights, counts.sum() / (4 * counts))
    table = pd.read_parquet(client.download_artifacts(run.info.run_id, "tables/per_class_val.parquet"))
    assert table["support"].sum() == len(data.val)
    preds = predict(model, data.val, "cpu")
    assert f1_score(data.val.labels.numpy(), preds, average="macro") == pytest.approx(value, abs=1e-6)


@pytest.fixture(scope="module")
def autoencoder_run(tmp_path_factory):
    """One rnn_ae run (hidden 24, latent 6) in its own store; classifiers start from it."""
    folder = tmp_path_factory.mktemp("pretrain")
    uri = empty_store(folder / "mlruns")
    cfg = compose_config([*TINY, f"tracking.uri={uri}", "trainer.checkpoint_dir=null", "model.hidden_size=24",
                          "model.latent_dim=6", "trainer.max_epochs=1", "tracking.n_reconstructions=0"])
    train(cfg)
    return uri, _run_id(uri)


def test_pretrained_encoder_reproduces_its_latents_exactly(make_cfg, autoencoder_run):
    uri, run_id = autoencoder_run
    cfg = make_cfg([*CLASSIFY, f"tracking.uri={uri}", f"task.pretrained={run_id}", *TINY_DATA], tiny=False)
    data = load_data(cfg.data, cfg.seed)
    setup = setup_task(cfg, data)
    assert setup.cfg.model.hidden_size == 24 and setup.cfg.model.latent_dim == 6  # sizes from the run
    assert setup.tags["pretrained"] == run_id
    autoencoder, _ = load_model(run_id, uri)
    batch = collate(data.val, list(range(24)))
    assert torch.equal(setup.model.get_latent(batch), autoencoder.get_latent(batch))
    assert torch.equal(setup.model.get_latent(batch), autoencoder.get_latent(batch))


def test_frozen_encoder_keeps_its_weights_and_fine_tuning_moves_them(make_cfg, autoencoder_run):
    uri, run_id = autoencoder_run
    autoencoder, _ = load_model(run_id, uri)
    encoders = {}
    for frozen in (True, False):
        cfg = make_cfg([*CLASSIFY, f"tracking.uri={uri}", f"task.pretrained={run_id}",
                        f"task.freeze_encoder={str(frozen).lower()}", "trainer.max_epochs=2",
                        f"tracking.run_name=frozen-{frozen}", *TINY_DATA], tiny=False)
        train(cfg)
        classifier, config = load_model(_run_id(uri, **{"mlflow.runName": f"frozen-{frozen}"}), uri)
        assert config["model"]["hidden_size"] == 24  # the saved config rebuilds the pre-trained sizes
        encoders[frozen] = classifier.autoencoder.state_dict()
    reference = autoencoder.state_dict()
    assert all(torch.equal(encoders[True][k], v) for k, v in reference.items())
    assert not torch.equal(encoders[False]["encoder.weight_ih_l0"], reference["encoder.weight_ih_l0"])


def test_pretrained_sizes_that_contradict_the_command_line_fail_in_one_line(make_cfg, autoencoder_run):
    uri, run_id = autoencoder_run
    cfg = make_cfg([*CLASSIFY, f"tracking.uri={uri}", f"task.pretrained={run_id}"])  # TINY sets hidden 32
    with pytest.raises(ConfigError, match=r"model\.hidden_size=32 .*pretrained: 24.*model\.latent_dim=4") as err:
        setup_task(cfg, load_data(cfg.data, cfg.seed))
    assert "\n" not in str(err.value)
    cfg = make_cfg([*CLASSIFY, f"tracking.uri={uri}", "task.pretrained=best"])
    with pytest.raises(TrackingError, match="no registered model latentsweep-rnn_ae@best"):
        setup_task(cfg, load_data(cfg.data, cfg.seed))


# -- bad input ------------------------------------------------------------------------------------
def test_unlabelled_data_fails_with_one_line_data_error(make_cfg, tmp_path):
    rng = np.random.default_rng(0)
    rows = [{"series_id": f"s{i}", "x": float(v)} for i in range(30) for v in rng.normal(size=20)]
    pd.DataFrame(rows).to_parquet(tmp_path / "plain.parquet")
    cfg = make_cfg([*CLASSIFY, "data=parquet", f"data.path={tmp_path / 'plain.parquet'}", "data.batch_size=8",
                    "model=rnn_ae", "model.hidden_size=8", "model.latent_dim=2", "trainer.max_epochs=1"], tiny=False)
    with pytest.raises(DataError, match="task=classify needs labelled series") as err:
        train(cfg)
    assert "\n" not in str(err.value)


def test_class_seen_only_in_validation_is_reported(make_cfg, caplog):
    raw = make_synthetic(n_series=60, shortest=12, longest=30, seed=0)
    raw.split = ["val" if int(y) == 3 or i % 4 == 0 else "train" for i, y in enumerate(raw.labels)]
    data = prepare(raw, seed=0)
    cfg = make_cfg(CLASSIFY)
    with caplog.at_level(logging.WARNING, logger="latentsweep"):
        setup = setup_task(cfg, data)
    assert setup.tags["classes_missing_in_train"] == "pulse_train"
    assert "pulse_train" in caplog.text


def test_classification_objectives_need_the_classify_task(make_cfg):
    assert objectives.direction("val_macro_f1") == "maximize"
    assert objectives.direction("val_accuracy") == "maximize"
    cfg = make_cfg(["objective=val_macro_f1"])
    with pytest.raises(ConfigError, match="objective=val_macro_f1 scores a classifier"):
        train(cfg)
    with pytest.raises(ConfigError, match="task.class_weights has 2 entries but the data has 4 classes"):
        train(make_cfg([*CLASSIFY, "task.class_weights=[1,2]"]))
    with pytest.raises(ConfigError, match="unknown task.loss"):
        train(make_cfg([*CLASSIFY, "task.loss=hinge"]))


# -- sweeps --------------------------------------------------------------------------------------
@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_classification_sweep_maximises_macro_f1(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(MPLBACKEND="Agg", GIT_PYTHON_REFRESH="quiet", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "hydra/sweeper=optuna", "~search", "task=classify",
           "objective=val_macro_f1", "hydra.sweeper.n_trials=2", "hydra.sweeper.register_best=false",
           "'optimizer.lr=choice(0.01,0.02)'", "data.n_series=48", "data.shortest=10", "data.longest=20",
           "data.batch_size=16", "model=rnn_ae", "model.hidden_size=16", "model.latent_dim=4", "trainer.max_epochs=2",
           "trainer.progress=false", "trainer.num_threads=1", "tracking.n_reconstructions=0",
           f"tracking.uri={empty_store(tmp_path / 'mlruns')}"]
    proc = subprocess.run(" ".join(cmd), shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="rnn_ae-synthetic-classify", storage=f"sqlite:///{tmp_path / 'sweeps' / 'optuna.db'}")
    assert study.direction == optuna.study.StudyDirection.MAXIMIZE
    values = [t.value for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert len(values) == 2 and study.best_value == max(values) and all(0.0 <= v <= 1.0 for v in values)
