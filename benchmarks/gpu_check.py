"""`make gpu-check`, part 2: trials sharing one GPU (issue 12). Needs CUDA; < 5 minutes on an H100.

- padded vs packed epoch times of one trial on CUDA (bench_batching);
- one trial's epoch with PyTorch's CUDA defaults vs `configure_cuda` (TF32 + cudnn.benchmark) vs
  bf16 autocast: the settings every CUDA run uses are measured here, not assumed;
- a profiler table of one trial's epoch (kernel-busy share of the wall time, launches per batch);
- the same 16-trial sweep on `make sweep`'s defaults (the `trials` launcher) with 1, 8 and 16 (the
  default) trials per GPU: trials/hour, aggregate epochs/s, peak GPU memory per trial and how busy
  the GPU was (nvidia-smi every 200 ms).
Where a target does not hold, the last three say whether the GPU, the CPU launching kernels or the
per-trial start-up is the limit.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import optuna
import torch

from latentsweep.tables import markdown_table

from .bench_sweep import sweep
from .common import RESULTS_DIR, save_results, set_run

N_TRIALS = 16
EPOCHS = 10  # long enough that training, not per-trial start-up, dominates a trial
# The CPU side of the "vs CPU" ratios: the same sweep, measured by `make gpu-baseline` on a CPU box
# and committed; the ratios name this file (its machine, date and commit) or are not printed.
BASELINE_FILE = RESULTS_DIR / "gpu-baseline" / "cpu-sharing.json"


def _peak_memory_mb(cwd: Path) -> float:
    """The largest peak_gpu_memory_mb any trial of the sweep in `cwd` logged (NaN if none did)."""
    from latentsweep import tracking

    peak = tracking.max_metric(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}", "peak_gpu_memory_mb")
    return float("nan") if peak is None else peak


class GpuBusy:
    """Mean GPU utilisation (%) while the block runs, from `nvidia-smi -lms`; NaN without it."""

    def __enter__(self) -> GpuBusy:
        self.samples: list[float] = []
        self._proc = None
        if shutil.which("nvidia-smi"):
            self._proc = subprocess.Popen(
                ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-lms", "200", "-i", "0"],
                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            self._reader = threading.Thread(target=self._read, daemon=True)
            self._reader.start()
        return self

    def _read(self) -> None:
        for line in self._proc.stdout:
            try:
                self.samples.append(float(line.strip()))
            except ValueError:
                pass

    def __exit__(self, *exc) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=5)
            self._reader.join(timeout=5)

    @property
    def mean(self) -> float:
        return sum(self.samples) / len(self.samples) if self.samples else float("nan")


PROTOTYPE_DATA = ["data.n_series=2000", "data.shortest=25", "data.longest=400", "tracking.enabled=false"]


def _one_trial(overrides: list[str]):
    """(model, optimizer, train loader, device) of one trial on the GPU, as the pipeline builds them."""
    from latentsweep.build import build_model, build_optimizer
    from latentsweep.data import BatchLoader, BucketBatchSampler
    from latentsweep.pipeline import load_data

    from .common import compose_train

    cfg = compose_train(PROTOTYPE_DATA + overrides)
    device = torch.device("cuda")
    data = load_data(cfg.data, cfg.seed)
    torch.manual_seed(0)
    model = build_model(cfg.model, data.spec).to(device)
    optimizer = build_optimizer(cfg.optimizer, model.parameters())
    loader = BatchLoader(data.train, BucketBatchSampler(data.train.lengths, int(cfg.data.batch_size), seed=0), device)
    return model, optimizer, loader, device


def _epoch(model, optimizer, loader, device, epoch: int, precision: str = "32") -> float:
    from latentsweep.training.loop import _run_epoch

    torch.cuda.synchronize()
    t0 = time.perf_counter()
    _run_epoch(model, loader, optimizer, train=True, device=device, precision=precision, grad_clip=1.0, epoch=epoch)
    torch.cuda.synchronize()
    return time.perf_counter() - t0


def cuda_settings_table() -> dict:
    """Epoch time with PyTorch's defaults vs `configure_cuda` (TF32 + cudnn.benchmark) vs + bf16.

    `trainer` turns these on for every CUDA run; this is where that choice is measured (issue 12).
    """
    from latentsweep.training.device import configure_cuda

    settings = {"torch defaults": ("32", False), "TF32 + cudnn.benchmark": ("32", True), "+ bf16 autocast": ("bf16", True)}
    models = {"rnn_ae": ["model=rnn_ae"], "conv_ae": ["model=conv_ae", "data.fixed_length=128"]}
    rows, raw = [], {}
    for name, overrides in models.items():
        base = None
        for label, (precision, tuned) in settings.items():
            torch.backends.cudnn.benchmark = torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
            if tuned:
                configure_cuda()
            model, optimizer, loader, device = _one_trial(overrides)
            _epoch(model, optimizer, loader, device, 0, precision)  # warm-up: cuDNN plans, allocator
            t = statistics.median(_epoch(model, optimizer, loader, device, e, precision) for e in (1, 2, 3))
            base = base or t
            raw[f"{name}/{label}"] = {"epoch_s": t, "ratio": t / base}
            rows.append([name, label, t, t / base])
    configure_cuda()
    print(markdown_table(["model", "CUDA settings", "epoch s (median of 3)", "vs torch defaults"], rows))
    return raw


def profile_one_epoch() -> str:
    """torch.profiler over one training epoch of the default model, alone on the GPU."""
    from torch.profiler import ProfilerActivity, profile

    from latentsweep.training.device import configure_cuda

    configure_cuda()
    model, optimizer, loader, device = _one_trial([])
    _epoch(model, optimizer, loader, device, 0)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        wall = _epoch(model, optimizer, loader, device, 1)
    events = prof.key_averages()
    gpu_us = sum(e.self_device_time_total for e in events)
    launches = sum(e.count for e in events if e.key in ("cudaLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"))
    return (f"one epoch ({len(loader)} batches, profiled): wall {wall * 1e3:.0f} ms, GPU kernels busy "
            f"{gpu_us / 1e3:.0f} ms ({100 * gpu_us / 1e6 / wall:.0f}% of wall), {launches} kernel launches "
            f"({launches / max(len(loader), 1):.0f} per batch)\n\n"
            + events.table(sort_by="self_device_time_total", row_limit=12))


def _sharing_sweep(*launcher: str) -> dict:
    """The same 16-trial sweep on `make sweep`'s defaults plus `launcher` args: wall, rates, memory."""
    cuda = torch.cuda.is_available()
    with tempfile.TemporaryDirectory() as tmp, GpuBusy() as busy:
        cwd = Path(tmp)
        t0 = time.perf_counter()
        sweep(cwd, "~search", "model=rnn_ae", "model.dropout=choice(0.0)", f"hydra.sweeper.n_trials={N_TRIALS}",
              "hydra.sweeper.pruner.name=none", f"trainer.max_epochs={EPOCHS}", "trainer.patience=null",
              "hydra/launcher=trials", *launcher, "data.n_series=2000", "data.shortest=25", "data.longest=400")
        wall = time.perf_counter() - t0
        s = optuna.load_study(study_name="rnn_ae-synthetic", storage=f"sqlite:///{cwd / 'sweeps' / 'optuna.db'}")
        epochs = sum(len(t.intermediate_values) for t in s.trials)
        failed = sum(t.state == optuna.trial.TrialState.FAIL for t in s.trials)
        peak = _peak_memory_mb(cwd) if cuda else float("nan")
    return {"wall_s": wall, "trials_per_hour": 3600 * N_TRIALS / wall, "epochs_per_s": epochs / wall,
            "epochs": epochs, "peak_mb_per_trial": peak, "gpu_busy_pct": busy.mean if cuda else float("nan"),
            "failed_trials": failed}


def load_baseline(path: Path = BASELINE_FILE) -> dict | None:
    """The committed CPU run of the same sweep (`make gpu-baseline`), or None when there is none."""
    import json

    if not path.exists():
        return None
    data = json.loads(path.read_text())
    if data.get("n_trials") != N_TRIALS or data.get("epochs_per_trial") != EPOCHS:
        return None  # another sweep: its rates divide nothing here
    return data


def baseline_line(best: dict, baseline: dict | None, path: Path = BASELINE_FILE) -> str:
    """The "vs CPU" ratios, naming the file, machine, date and commit they divide by; or why there are none."""
    try:
        shown = path.relative_to(RESULTS_DIR.parents[1])
    except ValueError:
        shown = path
    if baseline is None:
        return (f"vs CPU: not compared — no baseline for this sweep in {shown} (measure it on the CPU box "
                "with `make gpu-baseline` and commit the file)")
    m, cpu = baseline["machine"], baseline["sweep"]
    commit = (m.get("git_commit") or "unknown")[:10]
    return (f"vs the same sweep on the CPU ({m.get('cpu')}, {m.get('usable_cores')} cores, {m.get('date')}, "
            f"commit {commit}; {shown}): {best['trials_per_hour'] / cpu['trials_per_hour']:.0f}x trials/hour "
            f"(target >= 100x), {best['epochs_per_s'] / cpu['epochs_per_s']:.0f}x epochs/s")


def cpu_baseline() -> dict:
    """`make gpu-baseline`: the sharing sweep on this machine's CPU (trials = cores), saved for gpu-check."""
    result = {"n_trials": N_TRIALS, "epochs_per_trial": EPOCHS, "sweep": _sharing_sweep("trainer.device=cpu")}
    print(f"CPU baseline ({N_TRIALS} trials x {EPOCHS} epochs, hydra/launcher=trials): {result['sweep']}")
    set_run("gpu-baseline", "python -m benchmarks.gpu_check --cpu-baseline")
    print(f"results: {save_results('cpu-sharing', result)}")
    return result


def sharing_table(save_as: str = "sharing") -> dict:
    """The 1/8/16-trials-per-GPU table; each row is saved to `<save_as>.json` as it finishes."""
    rows, raw = [], {}
    for per_gpu in (1, 8, 16):  # 16 = trials_per_gpu's default: what `make sweep` does
        raw[per_gpu] = r = _sharing_sweep(f"trials_per_gpu={per_gpu}")
        rows.append([per_gpu, r["wall_s"], r["trials_per_hour"], r["epochs_per_s"], r["peak_mb_per_trial"],
                     f"{r['gpu_busy_pct']:.0f}%", r["failed_trials"]])
        print(f"{per_gpu} per GPU: {r}", flush=True)  # partial figures survive a time-out, on screen ...
        save_results(save_as, {"result": raw, "complete": per_gpu == 16})  # ... and in the file
    base = raw[1]["epochs_per_s"]
    print(f"{torch.cuda.get_device_name(0)}, {N_TRIALS} trials x {EPOCHS} epochs per row\n")
    print(markdown_table(["trials per GPU", "wall s", "trials/hour", "epochs/s (all)", "peak MB per trial", "GPU busy",
                 "failed"], rows))
    best = max(raw.values(), key=lambda r: r["epochs_per_s"])
    print(f"\nsharing: {best['epochs_per_s'] / base:.1f}x the epochs/s of one trial at a time (target >= 8x)")
    baseline = load_baseline()
    print(baseline_line(best, baseline))
    raw["cpu_baseline_file"] = str(BASELINE_FILE.relative_to(RESULTS_DIR.parents[1])) if baseline else None
    save_results(save_as, {"result": raw, "complete": True})
    return raw


NO_CUDA = ("error: no CUDA device visible — nothing was measured; run `make gpu-check` on a machine with a "
           "CUDA GPU (or `bash benchmarks/gpu_box.sh` there)")


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--require-cuda", action="store_true", help="only check that a CUDA device is visible")
    parser.add_argument("--cpu-baseline", action="store_true", help="measure the CPU side of the ratios here")
    args = parser.parse_args(argv)
    if args.cpu_baseline:
        cpu_baseline()
        return
    if not torch.cuda.is_available():
        sys.exit(NO_CUDA)  # exit status 1: a check that measured nothing must not pass
    if args.require_cuda:
        return
    set_run("gpu-check", "python -m benchmarks.gpu_check")
    from .bench_batching import run as batching

    sections = [("batching_cuda", "", lambda: batching(epochs=2, device="cuda")),
                ("cuda_settings", "CUDA settings: one trial's epoch", cuda_settings_table),
                ("profile", "Profile: one trial's epoch alone on the GPU", profile_one_epoch),
                ("sharing", "Trials sharing the GPU", sharing_table)]
    results, failed = {}, []
    for key, title, run in sections:  # one section failing (a profiler without CUPTI, say) spares the rest
        if title:  # bench_batching prints its own
            print(f"\n### {title}\n", flush=True)
        try:
            results[key] = run()
        except Exception as exc:
            failed.append(key)
            results[key] = {"error": f"{type(exc).__name__}: {exc}"}
            print(f"gpu-check: section {key} failed: {type(exc).__name__}: {str(exc)[:2000]}", flush=True)
        if isinstance(results[key], str):
            print(results[key])
        if key not in ("batching_cuda", "sharing") or key in failed:  # those two save their own files
            save_results(key.replace("_", "-"), {"result": results[key]})
    print(f"\nresults: {save_results('index', {'sections': list(results), 'failed': failed}).parent}/")
    if failed:
        sys.exit(f"gpu-check: {len(failed)} section(s) failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
