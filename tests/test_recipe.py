"""`experiment=latent`: the recipe composes over any data source, and its sweep runs end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import compose_config
from hydra.core.hydra_config import HydraConfig

from latentsweep.pipeline import train
from latentsweep.tracking import client_for


def _recipe(*overrides: str, hydra: bool = False):
    cfg = compose_config(["hydra/sweeper=optuna", "experiment=latent", *overrides], return_hydra_config=hydra)
    if hydra:
        HydraConfig.instance().set_config(cfg)  # resolves ${hydra:runtime.choices...} as in a real run
    return cfg


def test_recipe_sets_model_data_training_and_search_space():
    cfg = _recipe("data=ucr", "data.name=ArrowHead", hydra=True)
    assert cfg.model._target_.endswith("ConvAutoencoder") and cfg.objective == "svm_cv_accuracy|label_free"
    assert cfg.data.normalize == "zscore" and cfg.data.fixed_length is None and cfg.model.length == 128
    sweeper = cfg.hydra.sweeper
    assert sweeper.study_name == "latent-ucr-ArrowHead"  # one study per data set
    assert set(sweeper.params) >= {"model.latent_dim", "model.n_blocks", "optimizer.lr"}
    assert sweeper.params["data.fixed_length_if_variable"] == "null"  # the search file's resampling is off
    # one override scales the budget; the command line still wins over the recipe
    scaled = _recipe("hydra.sweeper.n_trials=3", "trainer.max_epochs=7", "model.latent_dim=8", hydra=True)
    assert (scaled.hydra.sweeper.n_trials, scaled.trainer.max_epochs, scaled.model.latent_dim) == (3, 7, 8)
    HydraConfig.instance().cfg = None  # leave no run config behind for other tests


def _parquet(path) -> None:
    """Variable-length two-channel series with labels, in long format."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(24):
        n = int(rng.integers(20, 60))
        t = np.linspace(0, 1, n)
        freq = 2 + 3 * (i % 2)
        rows += [{"series_id": f"s{i}", "x": np.sin(2 * np.pi * freq * tt), "y": rng.normal(), "label": i % 2}
                 for tt in t]
    pd.DataFrame(rows).to_parquet(path)


def test_recipe_trains_on_variable_length_multichannel_series(tmp_path, mlflow_uri):
    _parquet(tmp_path / "s.parquet")
    budget = ["trainer.max_epochs=2", "trainer.progress=false", "trainer.num_threads=1",
              f"tracking.uri={mlflow_uri}", f"trainer.checkpoint_dir={tmp_path / 'ckpt'}", "tracking.n_reconstructions=0"]
    # the recipe's objective, svm_cv_accuracy, well above chance: the parquet's two classes differ in
    # frequency (chance 0.5), the synthetic set's four event classes in shape (chance 0.25)
    for data, chance, bar in ((["data=parquet", f"data.path={tmp_path / 's.parquet'}", "data.label_column=label",
                                "data.value_columns=[x,y]"], 0.5, 0.8),
                              (["data.n_series=60", "data.shortest=12", "data.longest=40"], 0.25, 0.3)):
        accuracy = train(_recipe(*data, *budget))
        assert accuracy >= bar > chance, (data[0], accuracy)
    # the user's own unlabelled series: the recipe selects without labels (objective svm_cv_accuracy|label_free)
    unlabelled = ["data=parquet", f"data.path={tmp_path / 's.parquet'}", "data.value_columns=[x,y]"]
    client, _ = client_for(mlflow_uri)

    def last_run():
        return client.search_runs([client.get_experiment_by_name("latentsweep").experiment_id],
                                  order_by=["attributes.start_time DESC"], max_results=1)[0]

    # trustworthiness: 0.5 is what latents unrelated to the series' raw neighbours score
    trustworthiness = train(_recipe(*unlabelled, *budget))
    assert 0.5 < trustworthiness <= 1.0
    assert last_run().data.params["objective_used"] == "label_free"
    assert last_run().data.metrics["objective.label_free"] == pytest.approx(trustworthiness)
    # a labelled set seen as unlabelled (data.hide_labels) selects the same way
    hidden = train(_recipe("data=parquet", f"data.path={tmp_path / 's.parquet'}", "data.label_column=label",
                           "data.value_columns=[x,y]", "data.hide_labels=true", *budget))
    assert 0.5 < hidden <= 1.0 and last_run().data.params["objective_used"] == "label_free"
