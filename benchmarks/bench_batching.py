"""1. Batching pays: epoch time of rnn_ae for random vs length-bucketed batches, packed vs padded.

All four combinations train the same model from the same initial weights on the same data in
one process, interleaved, so a noisy machine slows them alike; the figure is the median epoch.
Target (issue 9): bucketed + padded (the default) <= 0.30x random + packed on CPU, with the
final validation loss after the same epochs within 2%.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from latentsweep.build import build_model, build_optimizer
from latentsweep.data import BatchLoader, BucketBatchSampler
from latentsweep.pipeline import load_data
from latentsweep.tables import markdown_table
from latentsweep.training.device import resolve_device, seed_everything
from latentsweep.training.loop import _run_epoch

from .common import compose_train, save_results

COMBOS = [("random", "packed"), ("random", "padded"), ("bucket", "packed"), ("bucket", "padded")]


def run(epochs: int = 3, n_series: int = 2000, device: str = "auto", hidden: int = 64, batch_size: int = 64) -> dict:
    cfg = compose_train(["model=rnn_ae", f"data.n_series={n_series}",
                         f"model.hidden_size={hidden}", f"data.batch_size={batch_size}", "tracking.enabled=false"])
    dev = resolve_device(device)
    seed_everything(0)
    data = load_data(cfg.data, cfg.seed)
    lengths = torch.cat([data.train.lengths, data.val.lengths]).float()
    template = build_model(cfg.model, data.spec).to(dev)
    state = copy.deepcopy(template.state_dict())
    runs = {}
    for batching, path in COMBOS:
        torch.manual_seed(0)
        model = build_model({**dict(cfg.model), "sequence_path": path}, data.spec).to(dev)
        model.load_state_dict(state)
        opt = build_optimizer(cfg.optimizer, model.parameters())
        train = BatchLoader(data.train, BucketBatchSampler(data.train.lengths, batch_size, seed=0, mode=batching), dev)
        val = BatchLoader(data.val, BucketBatchSampler(data.val.lengths, batch_size, shuffle=False), dev)
        runs[(batching, path)] = {"model": model, "opt": opt, "train": train, "val": val, "times": [], "wait": 0.0}
    for epoch in range(epochs):  # interleave the combinations epoch by epoch
        for r in runs.values():
            r["train"].set_epoch(epoch)
            r["train"].data_wait_s = 0.0
            if dev.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            _run_epoch(r["model"], r["train"], r["opt"], train=True, device=dev, precision="32", grad_clip=1.0,
                       epoch=epoch)
            if dev.type == "cuda":
                torch.cuda.synchronize()
            r["times"].append(time.perf_counter() - t0)
            r["wait"] += r["train"].data_wait_s
    rows, raw = [], {}
    base = statistics.median(runs[("random", "packed")]["times"])
    for (batching, path), r in runs.items():
        val_loss = _run_epoch(r["model"], r["val"], None, train=False, device=dev, precision="32", grad_clip=None,
                              epoch=epochs)["loss"]
        t = statistics.median(r["times"])
        wait_share = r["wait"] / sum(r["times"])
        raw[f"{batching}-{path}"] = {"epoch_s": t, "ratio": t / base, "val_loss": val_loss, "data_wait_share": wait_share}
        rows.append([batching, path, t, t / base, val_loss, f"{100 * wait_share:.1f}%"])
    ref_loss = raw["random-packed"]["val_loss"]
    default = raw["bucket-padded"]
    summary = {
        "device": str(dev), "n_series": n_series, "epochs": epochs,
        "longest_over_median": float(lengths.max() / lengths.median()),
        "default_ratio": default["ratio"], "loss_diff": abs(default["val_loss"] - ref_loss) / ref_loss,
    }
    print(f"\n### 1. Batching pays ({dev}, {n_series} series, longest/median "
          f"{summary['longest_over_median']:.1f}, hidden {hidden}, batch {batch_size}, median of {epochs} epochs)\n")
    print(markdown_table(["batching", "path", "epoch s", "vs random+packed", f"val loss after {epochs} ep", "data wait"], rows))
    ok = summary["default_ratio"] <= 0.30 and summary["loss_diff"] <= 0.02
    print(f"\ntarget: bucket+padded <= 0.30x random+packed with val loss within 2% -> "
          f"{summary['default_ratio']:.2f}x, loss diff {100 * summary['loss_diff']:.1f}% -> {'HOLDS' if ok else 'MISSED'}")
    result = {"table": raw, "summary": summary, "target_holds": ok}
    save_results(f"batching-{dev.type}", result)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--n-series", type=int, default=2000)
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    run(args.epochs, args.n_series, args.device)
