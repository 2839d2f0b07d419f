"""2-4. The sweep machinery: framework overhead and start-up, pruning, parallel trials.

Every sweep here is the real command a user types (`python train.py -m hydra/sweeper=optuna`)
in a scratch folder with its own SQLite study and MLflow store.
"""

from __future__ import annotations

import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import optuna

from latentsweep.tables import markdown_table
from latentsweep.timing import PHASES, parse_line

from . import bench_pruners
from .common import ROOT, compose_train, save_results

optuna.logging.set_verbosity(optuna.logging.WARNING)
RNN = "model=rnn_ae"  # the sweep figures are rnn_ae's (study rnn_ae-synthetic); conv_ae is the default model


def sweep(cwd: Path, *args: str, output: list[str] | None = None) -> float:
    """Run one sweep command in `cwd`; returns its wall time (its stdout + stderr appended to `output`)."""
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(MPLBACKEND="Agg", PYTHONWARNINGS="ignore")
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "hydra/sweeper=optuna", "trainer.progress=false",
           f"tracking.uri=sqlite:///{cwd / 'mlruns' / 'mlflow.db'}", *args]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"sweep failed: {' '.join(args)}\n{proc.stderr[-3000:]}")
    if output is not None:
        output.append(proc.stdout + proc.stderr)
    return time.perf_counter() - t0


def trial_breakdown(text: str) -> dict[str, list[float]]:
    """Each trial's seconds per phase, from a sweep's output: `ask` and `tell` from the sweeper's
    lines (`asked in`, `told in`), the rest from each run's `timing:` line (`latentsweep.timing`)."""
    out: dict[str, list[float]] = {name: [] for name in ("ask", *PHASES, "tell")}
    for line in text.splitlines():
        if (m := re.search(r"launching trial \d+: .*\(asked in ([\d.]+) s\)", line)):
            out["ask"].append(float(m.group(1)))
        elif (m := re.search(r"trial \d+ .*\(told in ([\d.]+) s\)", line)):
            out["tell"].append(float(m.group(1)))
        elif (phases := parse_line(line)) is not None:
            for name, value in phases.items():
                out.setdefault(name, []).append(value)
    return out


def breakdown_medians(text: str, per_trial_s: float | None = None) -> dict[str, float]:
    """Median seconds per phase over a sweep's trials; with the measured `per_trial_s`, `other` is
    what no phase holds (Hydra's job set-up: composing the trial's config, its output folder)."""
    medians = {name: statistics.median(values) for name, values in trial_breakdown(text).items() if values}
    if per_trial_s is not None:
        medians["other"] = per_trial_s - sum(medians.values())
    return medians


def study(cwd: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{cwd / 'sweeps' / 'optuna.db'}")


def _startup_once(cwd: Path, fixed: list[str]) -> float:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    start = time.time()
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), *fixed, "trainer.max_epochs=1",
                           f"tracking.uri=sqlite:///{cwd / 'mlflow.db'}"],
                          cwd=cwd, env=env, capture_output=True, text=True, check=True)
    for line in (proc.stdout + proc.stderr).splitlines():
        m = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]\[latentsweep\]\[INFO\] - training:", line)
        if m:
            return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp() - start
    raise RuntimeError("no 'training:' log line found")


def startup_seconds(fixed: list[str], repeats: int = 1) -> dict[str, float]:
    """From the command to the first training step (the timestamp of the 'training:' log line):
    the first run in a new MLflow store, then the median of `repeats` runs in that store (every run
    after the first)."""
    with tempfile.TemporaryDirectory() as tmp:
        first = _startup_once(Path(tmp), fixed)
        later = [_startup_once(Path(tmp), fixed) for _ in range(repeats)]
        return {"new_store": first, "existing_store": statistics.median(later), "existing_store_runs": later}


MEDIAN_KEYS = ("bare_per_trial_s", "cli_per_trial_s", "overhead_per_trial_s", "overhead_share", "sweep_fixed_cost_s",
               "bare_epochs_per_trial_s", "cli_epochs_per_trial_s", "outside_epochs_overhead_per_trial_s",
               "outside_epochs_overhead_share")


class _TimingLines(logging.Handler):
    """The `timing:` line of each run of the bare loop (the same line a sweep's trials print)."""

    def __init__(self) -> None:
        super().__init__()
        self.phases: list[dict[str, float]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if (phases := parse_line(record.getMessage())) is not None:
            self.phases.append(phases)


def _bare_loop(cfg, n_trials: int) -> tuple[float, float]:
    """(seconds per trial, seconds of epochs per trial) of `train(cfg)` in a bare Optuna loop."""
    from latentsweep.pipeline import train

    lines = _TimingLines()
    logger = logging.getLogger("latentsweep")
    logger.addHandler(lines)
    level, propagate = logger.level, logger.propagate
    logger.setLevel(logging.INFO)
    logger.propagate = False  # INFO for the timing lines only: the epochs' lines stay out of the output
    try:
        bare_study = optuna.create_study()
        t0 = time.perf_counter()
        bare_study.optimize(lambda trial: train(cfg), n_trials=n_trials)
        wall = (time.perf_counter() - t0) / n_trials
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
        logger.propagate = propagate
    return wall, sum(p["epochs"] for p in lines.phases) / n_trials


def _overhead_once(n_small: int, n_large: int, fixed: list[str]) -> dict:
    """One measurement: the command at `n_small` and `n_large` trials, the bare loop at `n_small`;
    the per-trial breakdown from the larger sweep's output.

    Two estimates of the machinery's cost per trial: the wall-clock slope against the bare loop,
    and the same outside the epochs (each side's own epoch seconds subtracted). The epochs are the
    same work on both sides, but this shared machine ran them up to 4 s per trial faster or slower
    from one minute to the next (benchmarks/results/bench-quick/sweep.json of 4f1da6f): that drift,
    not the machinery, decided the wall-clock figure."""
    walls, epochs, outputs = {}, {}, []
    for n in (n_small, n_large):
        with tempfile.TemporaryDirectory() as tmp:
            walls[n] = sweep(Path(tmp), "~search", "model.dropout=choice(0.0)", *fixed, f"hydra.sweeper.n_trials={n}",
                             "hydra.sweeper.pruner.name=none", output=outputs)
            epochs[n] = sum(trial_breakdown(outputs[-1])["epochs"])
    cfg = compose_train([*fixed, "tracking.enabled=false", "trainer.checkpoint_dir=null"])
    bare, bare_epochs = _bare_loop(cfg, n_small)
    per_trial = (walls[n_large] - walls[n_small]) / (n_large - n_small)
    cli_epochs = (epochs[n_large] - epochs[n_small]) / (n_large - n_small)
    outside = (per_trial - cli_epochs) - (bare - bare_epochs)
    return {"cli_s": walls, "bare_per_trial_s": bare, "cli_per_trial_s": per_trial,
            "overhead_per_trial_s": per_trial - bare, "overhead_share": (per_trial - bare) / bare,
            "bare_epochs_per_trial_s": bare_epochs, "cli_epochs_per_trial_s": cli_epochs,
            "outside_epochs_overhead_per_trial_s": outside, "outside_epochs_overhead_share": outside / bare,
            "sweep_fixed_cost_s": walls[n_small] - n_small * per_trial,
            "breakdown_s": breakdown_medians(outputs[-1], per_trial), "load_avg_1min_after": os.getloadavg()[0]}


def overhead(n_small: int, n_large: int, fixed: list[str], repeats: int = 1) -> dict:
    """Identical trials through the full command (MLflow on) vs a bare optuna loop in-process.

    The command runs twice, with `n_small` and `n_large` trials: the slope is the cost per trial,
    the intercept the one-off cost of a sweep (start-up, study, parent run, end figures, registry).
    Measured `repeats` times: each figure is the median, the breakdown the median run's.
    """
    fixed = [RNN, *fixed]
    runs = [_overhead_once(n_small, n_large, fixed) for _ in range(repeats)]
    result = {key: statistics.median(r[key] for r in runs) for key in MEDIAN_KEYS}
    middle = sorted(runs, key=lambda r: r["outside_epochs_overhead_share"])[len(runs) // 2]
    result.update(cli_s=middle["cli_s"], breakdown_s=middle["breakdown_s"], runs=runs)
    startup = startup_seconds(fixed, repeats)
    result.update(startup_s=startup["existing_store"], startup_new_store_s=startup["new_store"],
                  startup_runs_s=startup["existing_store_runs"])
    bare, per_trial, fixed_cost = result["bare_per_trial_s"], result["cli_per_trial_s"], result["sweep_fixed_cost_s"]
    print(f"\n### 2. Sweep machinery overhead (identical trials of ~{bare:.1f} s, median of {repeats})\n")
    print(markdown_table(["", "per trial s", "one-off per sweep s"], [
        [f"python train.py -m hydra/sweeper=optuna, MLflow on ({n_small} and {n_large} trials)", per_trial, fixed_cost],
        ["bare optuna loop, same train(), no tracking", bare, 0.0]]))
    print("\nwhere a trial's time goes (median trial of the larger sweep, s): "
          + ", ".join(f"{k} {v:.2f}" for k, v in result["breakdown_s"].items()))
    holds = result["outside_epochs_overhead_share"] <= 0.10 and result["startup_s"] < 3
    print(f"\noverhead outside the epochs {result['outside_epochs_overhead_per_trial_s']:.2f} s/trial "
          f"({100 * result['outside_epochs_overhead_share']:.0f}%; wall clock {result['overhead_per_trial_s']:.2f} s, "
          f"{100 * result['overhead_share']:.0f}%, epochs {result['cli_epochs_per_trial_s']:.1f} s per trial in the "
          f"command vs {result['bare_epochs_per_trial_s']:.1f} s bare), start-up to first training step "
          f"{result['startup_s']:.1f} s ({result['startup_new_store_s']:.1f} s for the first run in a new MLflow "
          f"store) -> target (<=10% per trial, start-up < 3 s) {'HOLDS' if holds else 'MISSED'}")
    result["target_holds"] = holds
    return result


def default_pruner() -> str:
    """The pruner a sweep gets by default: its schema's (sweeps/config.py PrunerConf), unless
    conf/hydra/sweeper/optuna.yaml sets one."""
    from omegaconf import OmegaConf

    from latentsweep.sweeps.config import PrunerConf

    configured = OmegaConf.select(OmegaConf.load(ROOT / "conf" / "hydra" / "sweeper" / "optuna.yaml"), "pruner.name")
    return str(configured or PrunerConf().name)


def pruning(n_trials: int, space_args: list[str]) -> dict:
    """The default pruner (conf/hydra/sweeper/optuna.yaml) vs none, same sampler seed and space."""
    space_args = [RNN, *space_args]
    rows, raw = [], {}
    name = default_pruner()
    for pruner, args in ((name, []), ("none", ["hydra.sweeper.pruner.name=none"])):
        with tempfile.TemporaryDirectory() as tmp:
            cwd = Path(tmp)
            wall = sweep(cwd, *space_args, f"hydra.sweeper.n_trials={n_trials}", *args, "hydra.sweeper.sampler.seed=7")
            s = study(cwd, "rnn_ae-synthetic")
            epochs = sum(len(t.intermediate_values) for t in s.trials)
            pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in s.trials)
            raw[pruner] = {"epochs": epochs, "wall_s": wall, "best": s.best_value, "pruned": pruned,
                           "curves": [dict(t.intermediate_values) for t in s.trials]}
            rows.append([pruner, epochs, pruned, wall, s.best_value])
    saved = 1 - raw[name]["epochs"] / raw["none"]["epochs"]
    diff = (raw[name]["best"] - raw["none"]["best"]) / abs(raw["none"]["best"])
    print(f"\n### 3. Pruning pays ({n_trials} trials, same sampler seed and space; default pruner {name})\n")
    print(markdown_table(["pruner", "epochs trained", "pruned trials", "wall s", "best value"], rows))
    holds = saved >= 0.40 and diff <= 0.02
    print(f"\nepochs saved {100 * saved:.0f}%, best value {100 * diff:+.1f}% vs no pruning -> target "
          f"(>=40% fewer epochs, best within 2%) {'HOLDS' if holds else 'MISSED'}")
    return {"default_pruner": name, "runs": raw, "epochs_saved": saved, "best_diff": diff, "target_holds": holds}


def parallel(n_trials: int, fixed: list[str]) -> dict:
    """n_jobs 1 vs 2. Trials/min over the whole command, and over the trials themselves (first
    trial asked to last one told: the launcher's own rate, without the sweep's one-off start and
    end, which no number of workers shortens)."""
    fixed = [RNN, *fixed]
    rows, raw = [], {}
    for n_jobs in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            wall = sweep(Path(tmp), "~search", "model.dropout=choice(0.0)", *fixed, f"hydra.sweeper.n_trials={n_trials}", "hydra.sweeper.pruner.name=none",
                         "hydra/launcher=joblib", f"hydra.launcher.n_jobs={n_jobs}", f"hydra.sweeper.n_jobs={n_jobs}")
            trials = sorted(study(Path(tmp), "rnn_ae-synthetic").trials, key=lambda t: t.datetime_start)
            span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
            # each worker's first trial pays its process's one-off imports and first MLflow run;
            # the trials after them show the rate a longer sweep settles at
            later = trials[n_jobs:]
            steady = (max(t.datetime_complete for t in later) - min(t.datetime_start for t in later)).total_seconds()
        raw[n_jobs] = {"wall_s": wall, "trials_per_min": 60 * n_trials / wall, "trials_span_s": span,
                       "trials_per_min_in_trials": 60 * n_trials / span,
                       "first_trials_s": [(t.datetime_complete - t.datetime_start).total_seconds() for t in trials[:n_jobs]],
                       "trials_per_min_after_first": 60 * len(later) / steady}
        rows.append([n_jobs, wall, raw[n_jobs]["trials_per_min"], span, raw[n_jobs]["trials_per_min_in_trials"],
                     raw[n_jobs]["trials_per_min_after_first"]])
    speedup = raw[2]["trials_per_min"] / raw[1]["trials_per_min"]
    speedup_in_trials = raw[2]["trials_per_min_in_trials"] / raw[1]["trials_per_min_in_trials"]
    speedup_after_first = raw[2]["trials_per_min_after_first"] / raw[1]["trials_per_min_after_first"]
    print(f"\n### 4. Parallel trials (joblib launcher, {n_trials} trials, {os.cpu_count()} cores)\n")
    print(markdown_table(["n_jobs", "wall s", "trials/min", "first ask to last tell s", "trials/min there",
                 "trials/min after each worker's first"], rows))
    holds = speedup >= 1.8
    print(f"\nn_jobs=2 vs 1: {speedup:.2f}x over the command, {speedup_in_trials:.2f}x from the first trial "
          f"to the last, {speedup_after_first:.2f}x after each worker's first trial -> target (>=1.8x on 2 cores, "
          f"whole command) {'HOLDS' if holds else 'MISSED'}")
    return {"runs": raw, "speedup": speedup, "speedup_in_trials": speedup_in_trials,
            "speedup_after_first_trials": speedup_after_first, "target_holds": holds}


def latent_share(n_trials: int = 40, data_name: str = "ArrowHead") -> dict:
    """`experiment=latent`'s sweep on a small UCR set: the share of its wall time spent in epochs
    (the loop's `epoch_time_s`, summed from each run's `timing:` line), and where the rest goes."""
    from .bench_quality import _ensure_data

    folder = ROOT / "data" / "ucr"
    _ensure_data(folder)
    output: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        wall = sweep(Path(tmp), "experiment=latent", "data=ucr", f"data.name={data_name}", f"data.path={folder}",
                     f"hydra.sweeper.n_trials={n_trials}", output=output)
    per_trial = trial_breakdown(output[0])
    totals = {name: sum(values) for name, values in per_trial.items()}
    share = totals["epochs"] / wall
    result = {"data": data_name, "n_trials": n_trials, "trials_timed": len(per_trial["epochs"]), "wall_s": wall,
              "seconds": totals, "epochs_share": share, "other_s": wall - sum(totals.values()),
              "median_trial_s": breakdown_medians(output[0]), "target_holds": share >= 0.90}
    print(f"\n### experiment=latent on {data_name}, {n_trials} trials: {wall:.0f} s, {100 * share:.0f}% in epochs "
          f"-> target (>= 90%) {'HOLDS' if share >= 0.90 else 'MISSED'}\n")
    print(markdown_table(["phase", "total s", "share"], [[k, v, f"{100 * v / wall:.1f}%"] for k, v in
                                                          {**totals, "other": result["other_s"]}.items()]))
    return result


def run(quick: bool = True, tiny: bool = False) -> dict:
    """`tiny`: toy sizes that only check this section runs and writes its file (benchmarks.run --tiny)."""
    if tiny:
        toy = ["data.n_series=40", "data.shortest=10", "data.longest=20", "model.hidden_size=8",
               "trainer.max_epochs=2", "trainer.patience=null"]
        results = {"overhead": overhead(1, 2, toy),
                   "pruning": pruning(2, [*toy, "hydra.sweeper.pruner.n_startup_trials=1"]),
                   "parallel": parallel(3, toy)}  # 3: a trial after each worker's first
        save_results("sweep", results)
        return results
    ten_second_trials = ["data.n_series=1200", "trainer.max_epochs=8", "trainer.patience=null"]
    small = ["data.n_series=300", "trainer.max_epochs=10", "trainer.patience=null"]  # the default pruner settings
    results = {
        "overhead": overhead(2, 5 if quick else 10, ten_second_trials, repeats=3),
        "pruning": pruning(12 if quick else 30, small),
        # 12 trials, 6 per worker: each worker's first trial pays its process's imports and first MLflow
        # run (about 2x a later trial's time), which 3 trials per worker did not amortise (1.33x at 6
        # trials vs 1.71x at 12, benchmarks/results/parallel/sweep-parallel.json); a default sweep has 20
        "parallel": parallel(12, ["data.n_series=1200", "trainer.max_epochs=4", "trainer.patience=null"]),
    }
    # 3b: why the default pruner (docs/sweeps.md "Pruning"), from the curves of the sweep without pruning
    results["pruners"] = bench_pruners.run([[c[k] for k in sorted(c)] for c in results["pruning"]["runs"]["none"]["curves"]])
    save_results("sweep", results)
    return results


if __name__ == "__main__":
    if "--latent-share" in sys.argv:  # python -m benchmarks.bench_sweep --latent-share [n_trials]
        from .common import set_run

        set_run("speed", "python -m benchmarks.bench_sweep " + " ".join(sys.argv[1:]))
        save_results("latent-share", latent_share(int(sys.argv[-1]) if sys.argv[-1].isdigit() else 40))
    elif "--parallel-only" in sys.argv:  # section 4 alone, with more trials: python -m benchmarks.bench_sweep --parallel-only 12
        n = int(sys.argv[-1]) if sys.argv[-1].isdigit() else 6
        from .common import set_run

        set_run("parallel", "python -m benchmarks.bench_sweep " + " ".join(sys.argv[1:]))
        save_results("sweep-parallel", {"parallel": parallel(n, ["data.n_series=1200", "trainer.max_epochs=4",
                                                                  "trainer.patience=null"])})
    else:
        run(quick="--full" not in sys.argv)
