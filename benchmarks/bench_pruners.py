"""3b. Which pruner the defaults use: learning curves of a sweep without pruning, replayed.

Section 3's sweep without pruning gives every trial's validation loss at every epoch. Each
candidate pruner (latentsweep's own `make_pruner`, real Optuna) sees those curves trial by trial,
as in a sweep: a trial stops when the pruner says so, and its epochs up to there count. Each
candidate is replayed over many orders of the same trials, since which trials came first decides
what a pruner compares with. Reported: epochs saved (mean over orders) and the share of orders in
which the best trial was pruned so that the best value found got more than 2% worse.
The replay ignores that pruning also changes what the sampler proposes next; section 3's real
sweep with the default pruner checks that part.

    python -m benchmarks.bench_pruners <folder of a sweep without pruning>   # or via section 3
"""

from __future__ import annotations

import itertools
import random
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

import optuna

from latentsweep.sweeps.pruners import make_pruner
from latentsweep.tables import markdown_table

from .common import save_results

LOSES_BEST = 0.02  # the best value found more than 2% worse than without pruning


def candidates(max_epochs: int) -> list[dict]:
    out = [{"name": "median", "n_startup_trials": s, "n_warmup_steps": w}
           for s, w in itertools.product((1, 2, 3, 4), (0, 1, 2, 3))]
    for mr, rf in itertools.product((1, 2), (2, 3, 4)):
        out.append({"name": "successive_halving", "min_resource": mr, "reduction_factor": rf})
        out.append({"name": "hyperband", "min_resource": mr, "reduction_factor": rf, "max_resource": max_epochs})
    return out


def replay(curves: Sequence[Sequence[float]], pruner_cfg: dict) -> tuple[int, float]:
    """(epochs trained, best value found) when `curves` run in this order under the pruner."""
    study = optuna.create_study(pruner=make_pruner(pruner_cfg))
    epochs, best = 0, float("inf")
    for curve in curves:
        trial = study.ask()
        for step, value in enumerate(curve):
            trial.report(value, step)
            epochs += 1
            if trial.should_prune():
                study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                break
        else:
            study.tell(trial, min(curve))
            best = min(best, min(curve))
    return epochs, best


def run(curves: Sequence[Sequence[float]], orders: int = 100) -> dict:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    curves = [list(c) for c in curves if c]
    total, best = sum(len(c) for c in curves), min(min(c) for c in curves)
    raw, rows = [], []
    for cfg in candidates(max(len(c) for c in curves)):
        saved, lost = [], 0
        for seed in range(orders):
            order = list(curves)
            random.Random(seed).shuffle(order)
            epochs, found = replay(order, cfg)
            saved.append(1 - epochs / total)
            lost += (found - best) / abs(best) > LOSES_BEST
        raw.append({"pruner": cfg, "epochs_saved": statistics.mean(saved), "loses_best_share": lost / orders})
    raw.sort(key=lambda r: (r["loses_best_share"] > 0, -r["epochs_saved"]))
    for r in raw:
        settings = ", ".join(f"{k}={v}" for k, v in r["pruner"].items() if k not in ("name", "max_resource"))
        rows.append([r["pruner"]["name"], settings, f"{100 * r['epochs_saved']:.0f}%",
                     f"{100 * r['loses_best_share']:.0f}%"])
    print(f"\n### 3b. Pruners replayed on the curves without pruning ({len(curves)} trials, {total} epochs, "
          f"{orders} orders each)\n")
    print(markdown_table(["pruner", "settings", "epochs saved (mean)", "orders losing the best >2%"], rows))
    result = {"n_trials": len(curves), "epochs": total, "orders": orders, "candidates": raw}
    save_results("pruners", result)
    return result


def curves_of(folder: Path, study_name: str = "rnn_ae-synthetic") -> list[list[float]]:
    study = optuna.load_study(study_name=study_name, storage=f"sqlite:///{folder / 'sweeps' / 'optuna.db'}")
    return [[t.intermediate_values[s] for s in sorted(t.intermediate_values)]
            for t in sorted(study.trials, key=lambda t: t.number)]


if __name__ == "__main__":
    run(curves_of(Path(sys.argv[1])), orders=200)
