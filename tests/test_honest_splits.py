"""Honest splits: an official TEST split is held out of training and every choice made on validation.

The fixtures write a small UCR-format problem (`<name>_TRAIN.ts`, `<name>_TEST.ts`): the data
pipeline, training and `analyze.py` run on it for real.
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from latentsweep.analysis.latents import read_latents
from latentsweep.analysis.run import analyze
from latentsweep.data.prepare import prepare
from latentsweep.data.synthetic import make_synthetic
from latentsweep.data.ucr import load_ucr
from latentsweep.errors import ConfigError
from latentsweep.pipeline import load_data, train
from latentsweep.tracking import client_for

HEADER = """@problemName Duo
@timeStamps false
@missing false
@univariate true
@equalLength true
@seriesLength 24
@classLabel true a b c
@data"""
LENGTH = 24


def _rows(values: list[np.ndarray], labels: list[str]) -> str:
    return "\n".join(",".join(f"{v:.5f}" for v in x) + f":{y}" for x, y in zip(values, labels))


def write_problem(folder: Path, *, wild_test: bool = False, n_train: int = 30, n_test: int = 12) -> Path:
    """Three shape classes. `wild_test`: TEST holds finite series nothing like TRAIN (same count)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    t = np.linspace(0, 1, LENGTH)
    shapes = {"a": np.sin(2 * np.pi * t), "b": t * 2 - 1, "c": np.cos(6 * np.pi * t)}

    def draw(n: int) -> tuple[list[np.ndarray], list[str]]:
        labels = [("a", "b", "c")[i % 3] for i in range(n)]
        return [shapes[y] + rng.normal(0, 0.1, LENGTH) for y in labels], labels

    train_x, train_y = draw(n_train)
    test_x, test_y = draw(n_test)
    if wild_test:  # huge, spiky, finite: any use of TEST in training or selection changes the numbers
        wild = np.random.default_rng(99)
        test_x = [wild.normal(0, 1, LENGTH) * 1e4 + 5e4 for _ in test_x]
    (folder / "Duo_TRAIN.ts").write_text(HEADER + "\n" + _rows(train_x, train_y) + "\n")
    (folder / "Duo_TEST.ts").write_text(HEADER + "\n" + _rows(test_x, test_y) + "\n")
    return folder


def _overrides(folder: Path) -> list[str]:
    return ["data=ucr", "data.name=Duo", f"data.path={folder}", "data.batch_size=8", "data.val_fraction=0.3",
            "model=rnn_ae", "model.hidden_size=16", "model.latent_dim=4", "trainer.max_epochs=4", "trainer.patience=2",
            "trainer.progress=false", "trainer.num_threads=1", "optimizer.lr=0.01",
            "tracking.n_reconstructions=0"]


def test_validation_is_carved_from_train_stratified_and_seeded(tmp_path):
    raw = load_ucr("Duo", path=str(write_problem(tmp_path / "ucr")))
    train_ids = {i for i, s in zip(raw.ids, raw.split) if s == "train"}
    test_ids = [i for i, s in zip(raw.ids, raw.split) if s == "test"]
    prepared = prepare(raw, val_fraction=0.3, seed=0)
    assert prepared.test.ids == test_ids  # TEST whole and in file order
    assert set(prepared.train.ids) | set(prepared.val.ids) == train_ids
    assert not set(prepared.train.ids) & set(prepared.val.ids)
    assert np.bincount(prepared.val.labels.numpy()).tolist() == [3, 3, 3]  # 30% of each 10-series class
    assert prepare(raw, val_fraction=0.3, seed=0).val.ids == prepared.val.ids  # seeded
    assert prepare(raw, val_fraction=0.3, seed=1).val.ids != prepared.val.ids


def test_sources_without_official_split_offer_a_seeded_test_fraction():
    raw = make_synthetic(n_series=40, shortest=10, longest=20, n_channels=1, seed=0)
    plain = prepare(raw, val_fraction=0.25, seed=3)
    assert plain.test is None and plain.report["n_test"] == 0
    held = prepare(raw, val_fraction=0.25, test_fraction=0.25, seed=3)
    parts = [set(held.train.ids), set(held.val.ids), set(held.test.ids)]
    assert [len(p) for p in parts] == [20, 10, 10] and set().union(*parts) == set(raw.ids)
    assert prepare(raw, val_fraction=0.25, test_fraction=0.25, seed=3).test.ids == held.test.ids


def test_fractions_leaving_no_training_series_are_refused(make_cfg):
    with pytest.raises(ConfigError, match=r"data.val_fraction \+ data.test_fraction = 1 .* — keep"):
        train(make_cfg(["data.val_fraction=0.5", "data.test_fraction=0.5"]))


def _selection_figures(make_cfg, mlflow_uri, folder: Path) -> dict:
    """Everything a sweep or early stopping decides on, from one real run on `folder`."""
    seen: list[float] = []
    value = train(make_cfg([*_overrides(folder), "objective=probe_accuracy"], tiny=False),
                  callbacks=[lambda epoch, metrics: seen.append(metrics["val_loss"])])
    client, _ = client_for(mlflow_uri)
    exp = client.get_experiment_by_name("latentsweep")
    run = client.search_runs([exp.experiment_id], order_by=["attributes.start_time DESC"], max_results=1)[0]
    metrics = run.data.metrics
    stats = load_data(make_cfg(_overrides(folder), tiny=False).data, 0).report["normalize_stats"]
    return {"val_losses": seen, "objective": value, "best_epoch": metrics["best_epoch"],
            "best_val_loss": metrics["best_val_loss"], "epochs_run": metrics["epochs_run"],
            "normalize_stats": stats}


def test_test_series_never_reach_training_or_selection(make_cfg, mlflow_uri, tmp_path):
    honest = _selection_figures(make_cfg, mlflow_uri, write_problem(tmp_path / "honest"))
    wild = _selection_figures(make_cfg, mlflow_uri, write_problem(tmp_path / "wild", wild_test=True))
    assert len(honest["val_losses"]) >= 2
    assert wild == honest  # bit for bit: TEST took no part


@pytest.mark.slow  # end to end: train, then analyze or load through the MLflow registry
def test_analyze_scores_on_official_test_and_latents_say_which_split(make_cfg, mlflow_uri, tmp_path):
    folder = write_problem(tmp_path / "ucr")
    train(make_cfg(_overrides(folder), tiny=False))
    result = analyze(make_cfg([f"tracking.uri={mlflow_uri}"], tiny=False, config_name="analyze"))
    raw = load_ucr("Duo", path=str(folder))
    path = mlflow.artifacts.download_artifacts(run_id=result["analysis_run_id"],
                                               artifact_path="analysis/latents.parquet", tracking_uri=mlflow_uri)
    frame = read_latents(path)
    assert set(frame["split"]) == {"train", "val", "test"}
    assert list(frame.loc[frame["split"] == "test", "series_id"]) == [i for i, s in zip(raw.ids, raw.split)
                                                                      if s == "test"]
    assert sorted(frame.loc[frame["split"] != "test", "series_id"]) == sorted(
        i for i, s in zip(raw.ids, raw.split) if s == "train")
    assert result["scored_split"] == "test" and "probe accuracy (test)" in result["table"]
    assert result["metrics"]["n_scored"] == 12  # the probe's score counts TEST only
