"""`make gpu-check`, part 2: trials sharing one GPU (issue 12). Needs CUDA; < 5 minutes on an H100.

The same 16-trial sweep on the defaults with 1, 8 and 16 trials per GPU (joblib launcher, one CPU
thread per trial), printing trials/hour, aggregate epochs/s and peak GPU memory per trial, next to
the padded vs packed and fp32 vs bf16 epoch times of one trial.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import optuna
import torch

from .bench_sweep import sweep
from .common import save_results, table

N_TRIALS = 16
EPOCHS = 3
CPU_EPOCHS_PER_S = 0.56  # the 2-core CPU figure for the same model (prototype)


def _peak_memory_mb(cwd: Path) -> float:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    peaks = [r.data.metrics["peak_gpu_memory_mb"] for r in runs if "peak_gpu_memory_mb" in r.data.metrics]
    return max(peaks) if peaks else float("nan")


def sharing_table() -> dict:
    rows, raw = [], {}
    for per_gpu in (1, 8, 16):
        with tempfile.TemporaryDirectory() as tmp:
            cwd = Path(tmp)
            t0 = time.perf_counter()
            sweep(cwd, "~search", "model.dropout=choice(0.0)", f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.pruner.name=none",
                  f"trainer.max_epochs={EPOCHS}", "trainer.patience=null", "hydra/launcher=joblib",
                  f"hydra.launcher.n_jobs={per_gpu}", f"hydra.sweeper.n_jobs={per_gpu}", "trainer.num_threads=1",
                  "data.n_series=2000", "data.shortest=25", "data.longest=400")
            wall = time.perf_counter() - t0
            s = optuna.load_study(study_name="rnn_ae-synthetic", storage=f"sqlite:///{cwd / 'sweeps' / 'optuna.db'}")
            epochs = sum(len(t.intermediate_values) for t in s.trials)
            peak = _peak_memory_mb(cwd)
        raw[per_gpu] = {"wall_s": wall, "trials_per_hour": 3600 * N_TRIALS / wall, "epochs_per_s": epochs / wall,
                        "peak_mb_per_trial": peak}
        rows.append([per_gpu, wall, raw[per_gpu]["trials_per_hour"], raw[per_gpu]["epochs_per_s"], peak])
    base = raw[1]["epochs_per_s"]
    print(f"\n### 6. Trials sharing one GPU ({torch.cuda.get_device_name(0)}, {N_TRIALS} trials x {EPOCHS} epochs)\n")
    print(table(["trials per GPU", "wall s", "trials/hour", "epochs/s (all)", "peak MB per trial"], rows))
    best = max(raw.values(), key=lambda r: r["epochs_per_s"])
    print(f"\nsharing: {best['epochs_per_s'] / base:.1f}x one trial at a time (target >= 8x); "
          f"vs 2-core CPU ({CPU_EPOCHS_PER_S} epochs/s): {best['epochs_per_s'] / CPU_EPOCHS_PER_S:.0f}x (target >= 100x)")
    return raw


def main() -> None:
    if not torch.cuda.is_available():
        print("gpu-check: no CUDA device visible — nothing to measure (run it on a GPU box)")
        sys.exit(0)
    from .bench_batching import run as batching

    results = {"batching_cuda": batching(epochs=2, device="cuda"), "sharing": sharing_table()}
    save_results("gpu-check", results)


if __name__ == "__main__":
    main()
