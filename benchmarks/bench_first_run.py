"""The first impression: `python train.py` then `python analyze.py`, latent vs raw, per candidate default.

Each candidate is a set of Hydra overrides on top of the defaults (`defaults`: none at all, i.e.
exactly what a new user runs). Each is trained by `train.py` in a fresh folder and MLflow store (one
thread), then analysed like `python analyze.py` (the validation split of the synthetic data: spectral
NMI and RBF-SVM accuracy of the latents next to the raw series'). One results file per candidate:
benchmarks/results/<run>/<candidate>.json, so candidates can be added one at a time.

    python -m benchmarks.bench_first_run --run-name first-run                   # every candidate
    python -m benchmarks.bench_first_run --run-name first-run defaults rnn_defaults
    python -m benchmarks.bench_first_run --run-name first-run --seed 1 defaults # another seed
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from latentsweep.tables import markdown_table as table

from .common import ROOT, save_results

# rnn_ae at its sizes before this benchmark (its defaults then, measured without these two overrides):
# each rnn_* candidate changes these, so a rerun measures the same model
RNN = ("model=rnn_ae", "model.hidden_size=64", "model.latent_dim=16")
CONV = ("model=conv_ae", "model.length=128", "model.duration_weight=1")
RECIPE = (*CONV, "model.base_channels=32", "model.latent_dim=32", "data.normalize=zscore", "data.batch_size=16")
CONV_FIRST = ("model=conv_ae", "model.length=128", "data.normalize=zscore", "data.batch_size=16")
CANDIDATES: dict[str, tuple[str, ...]] = {
    "defaults": (),
    # rnn_ae variants (rnn_defaults: the default model before this benchmark chose conv_ae)
    "rnn_defaults": RNN,
    "rnn_zscore": (*RNN, "data.normalize=zscore",),
    "rnn_h128_z32": (*RNN, "model.hidden_size=128", "model.latent_dim=32"),
    "rnn_lstm": (*RNN, "model.cell=lstm",),
    "rnn_no_time_input": (*RNN, "model.time_input=false",),
    "rnn_40_epochs": (*RNN, "trainer.max_epochs=40", "trainer.patience=10"),
    "rnn_lr1e-2": (*RNN, "optimizer.lr=1e-2",),
    "rnn_h128_z16": (*RNN, "model.hidden_size=128",),
    "rnn_h64_z32": (*RNN, "model.latent_dim=32",),
    "rnn_h128_z64": (*RNN, "model.hidden_size=128", "model.latent_dim=64"),
    "rnn_h128_z32_2layers": (*RNN, "model.hidden_size=128", "model.latent_dim=32", "model.num_layers=2"),
    "rnn_h128_z32_40_epochs": (*RNN, "model.hidden_size=128", "model.latent_dim=32", "trainer.max_epochs=40",
                               "trainer.patience=10"),
    # conv_ae: the latent recipe's model (docs/latent-recipe.md)
    "conv_len128_dur": CONV,
    "conv_len128_dur_zscore": (*CONV, "data.normalize=zscore"),
    # the latent recipe's sizes and batching (conf/experiment/latent.yaml), fewer epochs
    "conv_recipe_e30": (*RECIPE, "trainer.max_epochs=30", "trainer.patience=10"),
    "conv_recipe_e30_global": (*RECIPE, "data.normalize=global", "trainer.max_epochs=30", "trainer.patience=10"),
    # the synthetic events are in relative time: the duration is a nuisance here, not a class cue
    "conv_recipe_nodur_e30": (*RECIPE, "model.duration_weight=0", "trainer.max_epochs=30", "trainer.patience=10"),
    # conv_ae resampling to 128 steps in the model, zscore, batches of 16, trainer defaults (20 epochs)
    "conv_l128_z_b16": CONV_FIRST,
    "conv_l128_z_b16_lat32": (*CONV_FIRST, "model.latent_dim=32"),
    "conv_l128_z_b16_base32_lat32": (*CONV_FIRST, "model.base_channels=32", "model.latent_dim=32"),
    "conv_l128_z_b16_lat64": (*CONV_FIRST, "model.latent_dim=64"),
    "conv_l128_z_b16_base32_lat64": (*CONV_FIRST, "model.base_channels=32", "model.latent_dim=64"),
    "conv_l128_z_b16_lr1e-2": (*CONV_FIRST, "optimizer.lr=1e-2"),
    "conv_l128_z_b32": (*CONV_FIRST, "data.batch_size=32"),
    "conv_l128_global_b16": (*CONV_FIRST, "data.normalize=global"),
    "conv_l64_z_b16": (*CONV_FIRST, "model.length=64"),
    "transformer_z_b16": ("model=transformer_ae", "data.normalize=zscore", "data.batch_size=16"),
    "rnn_b16": (*RNN, "data.batch_size=16",),
    "rnn_zscore_b16_e30": (*RNN, "data.normalize=zscore", "data.batch_size=16", "trainer.max_epochs=30",
                           "trainer.patience=10"),
}
METRICS = ("latent.spectral.nmi", "raw.spectral.nmi", "latent.svm_accuracy", "raw.svm_accuracy")


def _train(cwd: Path, overrides: tuple[str, ...], seed: int) -> tuple[float, str]:
    """`python train.py <overrides>` in `cwd` on one thread; its wall time and its last log line."""
    cmd = [sys.executable, str(ROOT / "train.py"), *overrides, "trainer.num_threads=1", "trainer.progress=false",
           f"tracking.uri=sqlite:///{cwd / 'mlruns' / 'mlflow.db'}", *([f"seed={seed}"] if seed else [])]
    t0 = time.perf_counter()
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(MPLBACKEND="Agg", PYTHONWARNINGS="ignore")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"train.py {' '.join(overrides)} failed:\n{proc.stderr[-3000:]}")
    found = re.findall(r"best val_loss .*", proc.stdout + proc.stderr)
    return wall, found[-1] if found else ""


def _analyze(cwd: Path) -> tuple[float, dict]:
    """`python analyze.py` with its defaults on that store (in this process; one thread, its default)."""
    from latentsweep.analysis.run import analyze

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf")):
        cfg = compose("analyze", overrides=[f"tracking.uri=sqlite:///{cwd / 'mlruns' / 'mlflow.db'}"])
    t0 = time.perf_counter()
    metrics = analyze(cfg)["metrics"]
    return time.perf_counter() - t0, metrics


def measure(name: str, overrides: tuple[str, ...], seed: int = 0) -> dict:
    """Train and analyse one candidate in a fresh folder; its figures, also written to <name>.json."""
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        train_s, last_line = _train(cwd, overrides, seed)
        analyze_s, metrics = _analyze(cwd)
    result = {"candidate": name, "overrides": list(overrides), "seed": seed, "train_s": train_s,
              "analyze_s": analyze_s, "train_last_line": last_line, **{k: metrics.get(k) for k in METRICS},
              "latents_win": all(metrics[f"latent.{k}"] >= metrics[f"raw.{k}"] for k in ("spectral.nmi", "svm_accuracy"))}
    save_results(name if not seed else f"{name}-seed{seed}", result)
    return result


def main(names: list[str], seed: int) -> list[dict]:
    results = []
    for name in names:
        results.append(measure(name, CANDIDATES[name], seed))
        r = results[-1]
        print(f"{name}: NMI {r['latent.spectral.nmi']:.3f} vs {r['raw.spectral.nmi']:.3f}, SVM "
              f"{r['latent.svm_accuracy']:.3f} vs {r['raw.svm_accuracy']:.3f}, train {r['train_s']:.0f} s", flush=True)
    print(table(["candidate", "seed", "NMI latent", "NMI raw", "SVM latent", "SVM raw", "train s", "analyze s"],
                [[r["candidate"], r["seed"], *(r[k] for k in METRICS), round(r["train_s"]), round(r["analyze_s"])]
                 for r in results]))
    return results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("candidates", nargs="*", default=list(CANDIDATES), help=f"of {', '.join(CANDIDATES)}")
    parser.add_argument("--seed", type=int, default=0, help="train.py's seed= (0: the default, not passed)")
    parser.add_argument("--run-name", default=None, help="results folder under benchmarks/results/ (default: adhoc)")
    args = parser.parse_args()
    if args.run_name:
        from .common import set_run

        set_run(args.run_name, " ".join(["bench_first_run.py", *sys.argv[1:]]))
    main(args.candidates, args.seed)
