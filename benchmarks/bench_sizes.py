"""One fixed size of the `experiment=latent` recipe, trained on several seeds: latent vs raw on TEST.

A sweep's choice adds its own noise (which trial won); training one size on many seeds shows what
a change to the recipe (a block fewer, a denoising input) does by itself. Each seed is
`python train.py hydra/sweeper=optuna experiment=latent <size> <variant> seed=<s>` in its own
MLflow store, then `analyze.py` on that run: TS2Vec's SVM and spectral NMI on the official TEST
split. Tuned on ArrowHead and PickupGestureWiimoteZ only (the other sets check carry-over).

    python -m benchmarks.bench_sizes --data ArrowHead --seeds 0 1 2 3 4 5 --name noise0.1 \
        --override trainer.input_noise=0.1
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from latentsweep.tables import markdown_table

from .bench_quality import _analyze, _ensure_data
from .common import ROOT, save_results, set_run

# The size the recipe's sweeps favoured on ArrowHead (benchmarks/results/latent-selection/: 2 blocks
# and latent 32 had the best mean TEST SVM over 120 trials); a variant overrides any of it.
SIZE = ("model.n_blocks=2", "model.latent_dim=32", "model.kernel_size=5", "model.base_channels=32",
        "optimizer.lr=0.004")


def train_size(data: str, seed: int, overrides: list[str] | tuple[str, ...], folder: Path, tmp: str) -> str:
    """`python train.py` on the recipe at `SIZE` + `overrides`, in its own MLflow store under `tmp`: that store's URI."""
    uri = f"sqlite:///{tmp}/mlflow.db"
    cmd = [sys.executable, str(ROOT / "train.py"), "hydra/sweeper=optuna", "experiment=latent", "data=ucr",
           f"data.name={data}", f"data.path={folder}", *SIZE, *overrides, f"seed={seed}",
           f"tracking.uri={uri}", f"hydra.run.dir={tmp}/run", "trainer.progress=false"]
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    proc = subprocess.run(cmd, cwd=ROOT, env={**env, "MPLBACKEND": "Agg"}, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"training failed: {' '.join(cmd)}\n{proc.stderr[-3000:]}")
    return uri


def train_and_score(data: str, seed: int, overrides: list[str], folder: Path) -> dict:
    """One training run of the recipe at `SIZE` + `overrides`, then its TEST scores."""
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        uri = train_size(data, seed, overrides, folder, tmp)
        train_s = time.perf_counter() - t0
        m = _analyze(uri, model_name="null")
    return {"seed": seed, "svm": m["latent.svm_accuracy"], "raw_svm": m["raw.svm_accuracy"],
            "nmi": m["latent.spectral.nmi"], "raw_nmi": m["raw.spectral.nmi"], "train_s": train_s}


def summarize(rows: list[dict]) -> dict:
    return {"mean_svm": statistics.mean(r["svm"] for r in rows), "min_svm": min(r["svm"] for r in rows),
            "mean_nmi": statistics.mean(r["nmi"] for r in rows), "seeds_svm_at_or_above_raw":
            sum(r["svm"] >= r["raw_svm"] for r in rows), "n_seeds": len(rows)}


def run(data: str, seeds: list[int], name: str, overrides: list[str]) -> dict:
    folder = ROOT / "data" / "ucr"
    _ensure_data(folder)
    rows = [train_and_score(data, s, overrides, folder) for s in seeds]
    summary = summarize(rows)
    print(f"\n### One size of experiment=latent on {data}: {' '.join([*SIZE, *overrides])}\n")
    print(markdown_table(["seed", "SVM latent", "SVM raw", "NMI latent", "NMI raw"],
                         [[r["seed"], r["svm"], r["raw_svm"], r["nmi"], r["raw_nmi"]] for r in rows]))
    print(f"\nmean SVM {summary['mean_svm']:.3f}, min {summary['min_svm']:.3f}, mean NMI {summary['mean_nmi']:.3f}")
    save_results(f"{name}-{data}", {"data": data, "size": list(SIZE), "overrides": overrides,
                                    "rows": rows, "summary": summary})
    return summary


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ArrowHead")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--name", default="base", help="the variant's name in the results file")
    parser.add_argument("--override", action="append", default=[], help="a Hydra override on top of SIZE")
    args = parser.parse_args()
    set_run("latent-sizes", " ".join(["bench_sizes.py", *sys.argv[1:]]))
    run(args.data, args.seeds, args.name, args.override)
