"""CUDA checks, run by `make gpu-check` on a GPU box; skipped where there is no CUDA device."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from latentsweep.data import SeriesSet, collate
from latentsweep.data.series import DataSpec
from latentsweep.models.rnn_ae import RNNAutoencoder
from latentsweep.pipeline import train
from latentsweep.tracking import client_for

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


def _history(uri, key):
    client, _ = client_for(uri)
    run = client.search_runs([client.get_experiment_by_name("latentsweep").experiment_id])[0]
    return run, [m.value for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]


def test_cuda_training_reduces_the_loss(make_cfg, mlflow_uri):
    train(make_cfg(["trainer.device=cuda", "trainer.max_epochs=5", "trainer.patience=null"]))
    run, losses = _history(mlflow_uri, "train_loss")
    assert losses[-1] < 0.9 * losses[0]
    assert run.data.tags["device"].startswith("cuda")
    assert run.data.metrics["peak_gpu_memory_mb"] > 0


@pytest.fixture
def exact_cuda_math():
    """The training set-up turns TF32 on (it pays for these models); an exactness check needs fp32."""
    saved = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_padded_and_packed_agree_on_cuda(cell, exact_cuda_math):
    rng = np.random.default_rng(0)
    data = SeriesSet.from_arrays([rng.normal(size=(n, 3)) for n in (7, 70, 19, 40)])
    spec = DataSpec(n_channels=3, max_length=70)
    torch.manual_seed(0)
    padded = RNNAutoencoder(spec, hidden_size=32, latent_dim=8, num_layers=2, cell=cell,
                            sequence_path="padded").cuda().eval()
    packed = RNNAutoencoder(spec, hidden_size=32, latent_dim=8, num_layers=2, cell=cell,
                            sequence_path="packed").cuda().eval()
    packed.load_state_dict(padded.state_dict())
    batch = collate(data, [0, 1, 2, 3]).to(torch.device("cuda"))
    with torch.no_grad():
        a, b = padded(batch), packed(batch)
        torch.testing.assert_close(a["latent"], b["latent"], atol=1e-4, rtol=1e-4)
        la, lb = padded.loss(batch, a)["loss"], packed.loss(batch, b)["loss"]
    assert abs(float(la) - float(lb)) < 1e-4


def test_bf16_run_finishes_with_a_finite_loss(make_cfg, mlflow_uri):
    value = train(make_cfg(["trainer.device=cuda", "trainer.precision=bf16", "trainer.max_epochs=3"]))
    assert math.isfinite(value)
    run, _ = _history(mlflow_uri, "val_loss")
    assert run.data.tags["precision"] == "bf16"


@pytest.mark.parametrize("on_device", [True, False], ids=["data-on-gpu", "data-pinned"])
@pytest.mark.parametrize("task", ["reconstruct", "classify"])
def test_a_training_epoch_does_not_wait_on_the_gpu_per_batch(make_cfg, task, on_device):
    """Small models are launch-bound: a host sync per batch stops the CPU queueing ahead."""
    import warnings

    from latentsweep.build import build_model, build_optimizer
    from latentsweep.pipeline import load_data, make_loaders
    from latentsweep.training.loop import _run_epoch

    overrides = ["model=rnn_ae", "data.n_series=256", f"data.on_device={on_device}"]
    cfg = make_cfg(overrides + (["task=classify"] if task == "classify" else []))
    data = load_data(cfg.data, cfg.seed)
    device = torch.device("cuda")
    net = build_model(cfg.model, data.spec, cfg.get("task")).to(device)
    loader, _ = make_loaders(data, cfg.data, cfg.seed, device)
    optimizer = build_optimizer(cfg.optimizer, net.parameters())
    _run_epoch(net, loader, optimizer, train=True, device=device, precision="32", grad_clip=1.0, epoch=0)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("warn")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            _run_epoch(net, loader, optimizer, train=True, device=device, precision="32", grad_clip=1.0,
                       epoch=1)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    syncs = [str(w.message).splitlines()[0] for w in caught if "synchroniz" in str(w.message)]
    assert len(loader) >= 10
    assert len(syncs) < len(loader) / 2, f"{len(syncs)} host syncs in {len(loader)} batches: {syncs[:5]}"


def test_running_out_of_gpu_memory_fails_in_one_line_and_the_next_run_trains(make_cfg, mlflow_uri):
    """A real CUDA OOM: another tenant (here: one tensor) holds nearly all the GPU's memory."""
    from latentsweep.errors import ResourceError

    big = ["trainer.device=cuda", "model.hidden_size=1024", "data.batch_size=64", "trainer.max_epochs=1"]
    train(make_cfg(["trainer.device=cuda", "trainer.max_epochs=1"]))  # cuBLAS/cuDNN handles exist now
    torch.cuda.empty_cache()
    free, _ = torch.cuda.mem_get_info()
    hog = torch.empty(free - 8 * 2**20, dtype=torch.uint8, device="cuda")
    try:
        with pytest.raises(ResourceError) as err:
            train(make_cfg(big))
    finally:
        del hog
        torch.cuda.empty_cache()
    message = str(err.value)
    assert "\n" not in message and "out of GPU memory" in message and "model.hidden_size=1024" in message
    assert math.isfinite(train(make_cfg(big)))  # the GPU is usable again for the next trial
