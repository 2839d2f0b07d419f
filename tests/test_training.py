"""The training spine end to end: MLflow contents, model round trip, checkpoint/resume (issue 2)."""

from __future__ import annotations

from pathlib import Path

import torch

from latentsweep.data import collate
from latentsweep.pipeline import load_data, train
from latentsweep.tracking import client_for, load_model
from latentsweep.training.checkpoint import model_weights


def _only_run(uri):
    client, _ = client_for(uri)
    exp = client.get_experiment_by_name("latentsweep")
    runs = client.search_runs([exp.experiment_id])
    assert len(runs) == 1
    return client, runs[0]


def test_mlflow_run_holds_metrics_figures_and_a_loadable_model(make_cfg, mlflow_uri):
    cfg = make_cfg(["trainer.max_epochs=3", "trainer.patience=null"])
    best = train(cfg)
    client, run = _only_run(mlflow_uri)
    assert run.info.status == "FINISHED"
    assert run.data.params["model.hidden_size"] == "32"
    assert abs(run.data.metrics["best_val_loss"] - best) < 1e-9
    for key in ("train_loss", "val_loss"):
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in history) == [0, 1, 2]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "figures")}
    assert {"figures/loss_curve.png", "figures/reconstructions.png"} <= artifacts
    model_files = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert model_files == {"model/weights.safetensors", "model/config.yaml"}

    model, config = load_model(run.info.run_id, tracking_uri=mlflow_uri)
    data = load_data(cfg.data, cfg.seed)
    batch = collate(data.val, list(range(8)))
    recon = model.reconstruct(batch)
    # the loaded model reproduces the validation loss the run logged
    from latentsweep.data import BatchLoader, BucketBatchSampler

    loader = BatchLoader(data.val, BucketBatchSampler(data.val.lengths, 16, shuffle=False), torch.device("cpu"))
    total, weight = 0.0, 0.0
    with torch.no_grad():
        for b in loader:
            total += float(model.loss(b, model(b))["loss"]) * float(b.lengths.sum())
            weight += float(b.lengths.sum())
    assert abs(total / weight - best) < 1e-5
    assert recon.shape == batch.values.shape
    assert config["spec"]["n_channels"] == 3


def _final_weights(folder: Path) -> dict[str, torch.Tensor]:
    return model_weights(folder)


def test_resume_reaches_the_same_weights_as_an_uninterrupted_run(make_cfg, tmp_path, mlflow_uri):
    # dropout: the RNG must resume too. One thread: bit-identical weights need the same thread count
    # in every run, and the thread rule would change it when another run (a test worker) starts
    common = ["trainer.patience=null", "model.dropout=0.2", "model.num_layers=2", "trainer.num_threads=1"]
    full_dir, part_dir = tmp_path / "full", tmp_path / "part"
    train(make_cfg([*common, "trainer.max_epochs=4", f"trainer.checkpoint_dir={full_dir}"]))
    train(make_cfg([*common, "trainer.max_epochs=2", f"trainer.checkpoint_dir={part_dir}"]))
    train(make_cfg([*common, "trainer.max_epochs=4", "trainer.resume=true", f"trainer.resume_from={part_dir}"]))
    full, resumed = _final_weights(full_dir), _final_weights(part_dir)
    assert full.keys() == resumed.keys()
    for key in full:
        torch.testing.assert_close(full[key], resumed[key], atol=0, rtol=0)
    # the 2-epoch run had finished, so its MLflow run is left as it was and the resumed training
    # gets a new run with the whole history: 4 epochs of val_loss, each once
    client, _ = client_for(mlflow_uri)
    runs = client.search_runs([client.get_experiment_by_name("latentsweep").experiment_id],
                              order_by=["attributes.start_time ASC"])
    assert len(runs) == 3
    assert len(client.get_metric_history(runs[1].info.run_id, "val_loss")) == 2
    assert sorted(m.step for m in client.get_metric_history(runs[2].info.run_id, "val_loss")) == [0, 1, 2, 3]


def test_weight_average_resumes_exactly_and_is_what_the_run_keeps(make_cfg, tmp_path, mlflow_uri):
    """trainer.ema_decay: the checkpoint keeps the average, so a resumed run ends where an uninterrupted
    one does; resuming it without the average is refused before anything is written."""
    import pytest

    from latentsweep.errors import CheckpointError

    common = ["trainer.patience=null", "trainer.ema_decay=0.9", "trainer.num_threads=1"]  # one thread: as above
    full_dir, part_dir = tmp_path / "full", tmp_path / "part"
    averaged = train(make_cfg([*common, "trainer.max_epochs=4", f"trainer.checkpoint_dir={full_dir}"]))
    train(make_cfg([*common, "trainer.max_epochs=2", f"trainer.checkpoint_dir={part_dir}"]))
    kept = {name: path.read_bytes() for name, path in ((p.name, p) for p in part_dir.iterdir())}
    with pytest.raises(CheckpointError, match="trainer.ema_decay"):
        train(make_cfg(["trainer.patience=null", "trainer.max_epochs=4", "trainer.resume=true",
                        f"trainer.resume_from={part_dir}"]))
    assert {p.name: p.read_bytes() for p in part_dir.iterdir()} == kept  # the refused resume wrote nothing
    train(make_cfg([*common, "trainer.max_epochs=4", "trainer.resume=true", f"trainer.resume_from={part_dir}"]))
    full, resumed = _final_weights(full_dir), _final_weights(part_dir)
    for key in full:
        torch.testing.assert_close(full[key], resumed[key], atol=0, rtol=0)
    client, _ = client_for(mlflow_uri)
    first = client.search_runs([client.get_experiment_by_name("latentsweep").experiment_id],
                               order_by=["attributes.start_time ASC"])[0]
    val = [m.value for m in sorted(client.get_metric_history(first.info.run_id, "val_loss"), key=lambda m: m.step)]
    assert val[-1] < val[0] and abs(min(val) - averaged) < 1e-9  # the average learns; its best is the result
    assert averaged != train(make_cfg(["trainer.patience=null", "trainer.max_epochs=4"]))  # and it is not the last step


def test_diverging_run_is_marked_failed_and_raises(make_cfg, mlflow_uri):
    import pytest

    from latentsweep.errors import DivergedError

    cfg = make_cfg(["optimizer=sgd", "optimizer.lr=9.9", "optimizer.momentum=0.99", "trainer.grad_clip=null",
                    "data.normalize=none", "data.n_channels=1", "trainer.max_epochs=30"])
    # unnormalised data with a huge SGD step diverges quickly; make sure of it with a large scale
    cfg.data.noise = 1e4
    with pytest.raises(DivergedError, match="lower optimizer.lr"):
        train(cfg)
    _, run = _only_run(mlflow_uri)
    assert run.info.status == "FAILED"
    assert "DivergedError" in run.data.tags["failure"]


def test_training_is_reproducible_for_a_seed(make_cfg):
    a = train(make_cfg(["seed=5"]))
    b = train(make_cfg(["seed=5"]))
    c = train(make_cfg(["seed=6"]))
    assert a == b
    assert a != c


def test_denoising_noise_touches_valid_steps_only():
    from latentsweep.data.synthetic import make_synthetic
    from latentsweep.training.loop import with_input_noise

    series = make_synthetic(n_series=8, shortest=5, longest=40, n_channels=2)
    batch = collate(series, list(range(8)))
    torch.manual_seed(0)
    noisy = with_input_noise(batch, 0.5)
    change = noisy.values - batch.values
    assert torch.equal(change[~batch.mask], torch.zeros_like(change[~batch.mask]))  # padding stays zero
    assert 0.4 < float(change[batch.mask].std()) < 0.6  # valid steps get noise of the asked std
    assert torch.equal(noisy.lengths, batch.lengths) and torch.equal(noisy.mask, batch.mask)


def test_denoising_autoencoder_learns_the_clean_series(make_cfg, mlflow_uri):
    """trainer.input_noise: noisy inputs in training; the validation loss (clean inputs, clean
    targets) still falls, and differs from a run without noise."""
    cfg = make_cfg(["trainer.input_noise=0.3", "trainer.max_epochs=4", "trainer.patience=null"])
    noisy = train(cfg)
    client, run = _only_run(mlflow_uri)
    val = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "val_loss"), key=lambda m: m.step)]
    assert val[-1] < val[0]
    assert noisy != train(make_cfg(["trainer.max_epochs=4", "trainer.patience=null"]))
