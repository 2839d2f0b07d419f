"""8. Runs sharing the machine: where the thread rule's numbers come from, and whether it holds.

- `threads_table`: seconds per training epoch of each model family with 1 torch thread and with
  one per core, back to back in one process. A family whose epochs a second thread speeds up by
  >= 5% "splits well" and may take more than one (latentsweep.threads.MAX_THREADS caps the
  others at 1); the table says where the rule and this machine disagree.
- `sharing`: `python train.py` with every default (conv_ae on the synthetic data, its 20 epochs), and
  rnn_ae and conv_ae on 8000 series, one run alone vs two at once: epoch times after the first
  epoch. Target (issue 29): two default runs at once <= 1.1x the epoch time of one alone, per run.
  The runs get no OMP_NUM_THREADS/MKL_NUM_THREADS from this process, so they see what a user
  gets. The defaults' epochs are short (~0.1 s), so the median of 19 is taken; conv_ae on 8000
  series has ~1 s epochs, two runs training side by side for longer. Each case is also run alone at
  1 thread (see `sharing`).
  `python -m benchmarks.bench_sharing --before` adds the same pair with
  `trainer.num_threads=<cores>`: torch's own default, what every run used before the rule.
"""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

import torch

from latentsweep.build import build_model, build_optimizer
from latentsweep.data import BatchLoader, BucketBatchSampler
from latentsweep.parallel import available_cores
from latentsweep.pipeline import load_data
from latentsweep.tables import markdown_table
from latentsweep.threads import threads_for_run
from latentsweep.training.device import seed_everything
from latentsweep.training.loop import _run_epoch

from .common import ROOT, compose_train, save_results

FAMILIES = {"rnn_ae": [], "vrae": [], "transformer_ae": [], "conv_ae": ["data.fixed_length=128"],
            "mlp_ae": ["data.fixed_length=128"], "highway_ae": ["data.fixed_length=128"]}
SPLITS_WELL_GAIN = 1.05  # a second thread must buy at least 5% to be worth a core
TARGET = 1.1  # issue 29: two default runs at once, per run, against one alone


def threads_table(n_series: int = 400, repeats: int = 2) -> dict:
    cores, previous = available_cores(), torch.get_num_threads()
    rows, raw = [], {}
    try:
        for name, extra in FAMILIES.items():
            cfg = compose_train([f"model={name}", f"data.n_series={n_series}", "tracking.enabled=false", *extra])
            seed_everything(0)
            data = load_data(cfg.data, cfg.seed)
            model = build_model(cfg.model, data.spec)
            opt = build_optimizer(cfg.optimizer, model.parameters())
            loader = BatchLoader(data.train, BucketBatchSampler(data.train.lengths, cfg.data.batch_size, seed=0),
                                 torch.device("cpu"))
            times: dict[int, list[float]] = {1: [], cores: []}
            for epoch in range(1 + repeats):
                for n in times:  # alternating, so a burst of load elsewhere hits both
                    torch.set_num_threads(n)
                    t0 = time.perf_counter()
                    _run_epoch(model, loader, opt, train=True, device=torch.device("cpu"), precision="32",
                               grad_clip=1.0, epoch=epoch)
                    if epoch > 0:  # the first is a warm-up
                        times[n].append(time.perf_counter() - t0)
            one, many = statistics.median(times[1]), statistics.median(times[cores])
            cls = cfg.model._target_.rsplit(".", 1)[-1]
            alone = threads_for_run(cls, "cpu", cores, 1)  # what the rule gives a run alone here
            raw[name] = {"class": cls, "s_per_epoch_1": one, f"s_per_epoch_{cores}": many, "gain": one / many,
                         "measured_splits_well": one / many >= SPLITS_WELL_GAIN, "rule_splits_well": alone > 1,
                         "rule_threads_alone": alone}
            rows.append([name, one, many, one / many, f"{alone} alone, fewer when runs share" if alone > 1 else "1"])
    finally:
        torch.set_num_threads(previous)
    print(f"\n### 8a. Torch threads per model family ({n_series} series, CPU, {cores} cores)\n")
    print(markdown_table(["model", "s/epoch, 1 thread", f"s/epoch, {cores} threads", "speed-up", "the rule gives"], rows))
    disagree = [n for n, r in raw.items() if r["measured_splits_well"] != r["rule_splits_well"]]
    print(f"\nsplits well = speed-up >= {SPLITS_WELL_GAIN}; the rule (latentsweep.threads.threads_for_run) "
          + (f"DISAGREES for {', '.join(disagree)} on this machine" if disagree else "agrees on this machine"))
    return {"cores": cores, "families": raw, "rule_disagrees": disagree}


EPOCH_LINE = re.compile(r"epoch (\d+)/\d+ train_loss \S+ val_loss \S+ \(([\d.]+)s\)")


def _epoch_times(output: str) -> list[float]:
    """Seconds of each epoch after the first (the first pays one-off costs: imports, allocations)."""
    return [float(m.group(2)) for m in EPOCH_LINE.finditer(output) if int(m.group(1)) > 1]


def _runs(n_at_once: int, overrides: list[str], epochs: int) -> list[list[float]]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLFLOW_TRACKING_URI", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "LATENTSWEEP_LEASE_DIR")}
    env.update(MPLBACKEND="Agg", PYTHONWARNINGS="ignore")
    with tempfile.TemporaryDirectory() as tmp:
        procs = []
        for i in range(n_at_once):
            cmd = [sys.executable, str(ROOT / "train.py"), *overrides, f"trainer.max_epochs={epochs}",
                   "trainer.patience=null", "trainer.progress=false", f"tracking.uri=sqlite:///{tmp}/mlflow{i}.db",
                   f"hydra.run.dir={tmp}/run{i}"]
            procs.append(subprocess.Popen(cmd, cwd=tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                          text=True))
        outputs = [p.communicate()[0] for p in procs]
    for p, out in zip(procs, outputs):
        if p.returncode != 0:
            raise RuntimeError(f"train.py {' '.join(overrides)} failed:\n{out[-3000:]}")
    return [_epoch_times(out) for out in outputs]


TINY = ["data.n_series=40", "data.shortest=10", "data.longest=20"]  # --tiny: checks the section runs
DEFAULTS = "defaults (conv_ae)"  # `python train.py` as it comes: the case the target is judged on


def sharing(epochs: int = 5, before: bool = False, tiny: bool = False) -> dict:
    """Each case alone, alone at 1 thread, and two at once. Two runs on 2 cores get a core each, so
    `floor` (1 thread alone / alone) is what sharing should cost a model that uses both cores
    alone; it was meant as a bound, but conv_ae's pair once beat it (1.25x vs 1.49x; not explained:
    one difference is that trainer.num_threads=1 also sets 1 inter-op thread, where the rule's runs
    start with 2), so it is shown, not used. The target is judged on the defaults, as the issue states it."""
    extra = TINY if tiny else []
    conv = ["model=conv_ae", "data.fixed_length=128", *(extra or ["data.n_series=8000"])]
    # (overrides, epochs): the defaults' own 20 epochs (2 with --tiny); rnn_ae was the default until issue 25
    cases = {DEFAULTS: (extra, 2 if tiny else 20), "rnn_ae": (["model=rnn_ae", *extra], epochs),
             "conv_ae, 8000 series": (conv, epochs)}
    if before:
        cases[f"defaults, trainer.num_threads={available_cores()} (before)"] = (
            [*extra, f"trainer.num_threads={available_cores()}"], 2 if tiny else 20)
    rows, raw = [], {}
    for label, (overrides, n_epochs) in cases.items():
        (alone,) = _runs(1, overrides, n_epochs)
        (one_thread,) = _runs(1, [*overrides, "trainer.num_threads=1"], n_epochs)
        pair = _runs(2, overrides, n_epochs)
        t_alone, t_one = statistics.median(alone), statistics.median(one_thread)
        t_pair = [statistics.median(times) for times in pair]
        ratio, floor = max(t_pair) / t_alone, t_one / t_alone
        raw[label] = {"alone_s": alone, "alone_1_thread_s": one_thread, "two_at_once_s": pair,
                      "ratio": ratio, "floor": floor}
        rows.append([label, t_alone, t_one, " / ".join(f"{t:.3g}" for t in t_pair), f"{ratio:.2f}x", f"{floor:.2f}x"])
    print(f"\n### 8b. Runs sharing the machine ({available_cores()} cores; s per epoch after the first, "
          f"median over each run's epochs)\n")
    print(markdown_table(["python train.py", "one alone", "one alone, 1 thread", "each of two at once",
                 "two at once / alone", "floor (1 thread / alone)"], rows))
    judged = raw[DEFAULTS]
    holds = judged["ratio"] <= TARGET
    print(f"\ndefaults: {judged['ratio']:.2f}x -> target (two at once <= {TARGET}x one alone, per run) "
          f"{'HOLDS' if holds else 'MISSED'}; rnn_ae {raw['rnn_ae']['ratio']:.2f}x, conv_ae on 8000 series "
          f"{raw['conv_ae, 8000 series']['ratio']:.2f}x (not judged)")
    return {"runs": raw, "target": TARGET, "target_holds": holds}


def run(n_series: int = 400, repeats: int = 2, epochs: int = 5, before: bool = False, tiny: bool = False) -> dict:
    results = {"threads": threads_table(n_series=n_series, repeats=repeats),
               "sharing": sharing(epochs=epochs, before=before, tiny=tiny)}
    save_results("sharing", results)
    return results


if __name__ == "__main__":
    run(before="--before" in sys.argv)
