"""Sequences per second (training) for rnn_ae, conv_ae and transformer_ae at two batch sizes."""

from __future__ import annotations

import time

import torch

from latentsweep.build import build_model, build_optimizer
from latentsweep.data import BatchLoader, BucketBatchSampler
from latentsweep.pipeline import load_data
from latentsweep.tables import markdown_table
from latentsweep.training.device import resolve_device, seed_everything
from latentsweep.training.loop import _run_epoch

from .common import compose_train, save_results

MODELS = {"rnn_ae": [], "conv_ae": ["data.fixed_length=128"], "transformer_ae": []}


def run(n_series: int = 600, batch_sizes: tuple[int, ...] = (32, 128), device: str = "auto") -> dict:
    dev = resolve_device(device)
    rows, raw = [], {}
    for name, extra in MODELS.items():
        cfg = compose_train([f"model={name}", f"data.n_series={n_series}", "tracking.enabled=false", *extra])
        seed_everything(0)
        data = load_data(cfg.data, cfg.seed)
        for bs in batch_sizes:
            model = build_model(cfg.model, data.spec).to(dev)
            opt = build_optimizer(cfg.optimizer, model.parameters())
            loader = BatchLoader(data.train, BucketBatchSampler(data.train.lengths, bs, seed=0), dev)
            _run_epoch(model, loader, opt, train=True, device=dev, precision="32", grad_clip=1.0, epoch=0)  # warm-up
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            _run_epoch(model, loader, opt, train=True, device=dev, precision="32", grad_clip=1.0, epoch=1)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            rate = len(data.train) / (time.perf_counter() - t0)
            raw[f"{name}-bs{bs}"] = rate
            rows.append([name, bs, rate])
    print(f"\n### 1b. Training throughput ({dev}, synthetic data, {n_series} series of 24-480 steps)\n")
    print(markdown_table(["model", "batch size", "sequences/s"], rows))
    save_results(f"throughput-{dev.type}", {"sequences_per_s": raw})
    return raw


if __name__ == "__main__":
    run()
