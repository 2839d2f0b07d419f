"""Does `svm_cv_accuracy` rank trained models as TEST ranks them? One CV pass against ten.

A sweep keeps the trial with the best `svm_cv_accuracy`, an estimate from TRAIN alone. On
ArrowHead's 36 TRAIN series one unshuffled 5-fold pass moves in steps of 1/36, so a sweep's choice
was close to a random trial. This trains one size of the `experiment=latent` recipe on many seeds
(and a few sizes around it, so the models differ as a sweep's trials do), keeps each model's latents,
and scores every model with both estimates of the same yardstick (TS2Vec's SVM rules):

- `one_pass`: the C the rules choose, scored on one unshuffled stratified 5-fold split (the estimate
  before this benchmark; for a searched TRAIN, GridSearchCV's own best score);
- `repeated`: what `svm_cv_score` now returns: the same C, averaged over REPEATS shuffled 5-fold splits.

Then Spearman's rho of each against TEST RBF-SVM accuracy and spectral NMI, which only this
evaluation reads. Tuned on ArrowHead and PickupGestureWiimoteZ only.

    python -m benchmarks.bench_cv_estimator --data ArrowHead --seeds 0 1 2 3 4 5 6 7 8 --run-name latent-cv
    python -m benchmarks.bench_cv_estimator --data ArrowHead --latents <folder of saved latents> --run-name latent-cv
    python -m benchmarks.bench_cv_estimator --data GunPoint --path <folder> --seeds 0 1 2 3 4 5 \
        --variants base k9 ld16 --run-name latent-cv-carryover      # a set kept aside: does it carry over?
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from .bench_quality import _ensure_data
from .bench_sizes import SIZE, train_size
from .common import ROOT, save_results, set_run

RECIPE_SIZE = ("trainer.input_noise=0.1", "model.n_blocks=1")  # the recipe's fixed choices on top of SIZE
VARIANTS = {  # sizes around the recipe's, so the models differ as a sweep's trials do
    "base": (), "ld16": ("model.latent_dim=16",), "ld8": ("model.latent_dim=8",), "len64": ("model.length=64",),
    "noise02": ("trainer.input_noise=0.2",), "k9": ("model.kernel_size=9",), "bc64": ("model.base_channels=64",),
}


def train_one(data: str, seed: int, overrides: tuple[str, ...], out: Path, folder: Path) -> None:
    """Train one size, run analyze.py on it, and keep its latents and TEST scores as `out`.parquet/.json."""
    from .bench_quality import _analyze_run

    with tempfile.TemporaryDirectory() as tmp:
        uri = train_size(data, seed, [*RECIPE_SIZE, *overrides], folder, tmp)
        metrics, latents = _analyze_run(uri, Path(tmp))
        out.parent.mkdir(parents=True, exist_ok=True)
        latents.to_parquet(out.with_suffix(".parquet"), index=False)
        out.with_suffix(".json").write_text(json.dumps(
            {"svm": metrics["latent.svm_accuracy"], "raw_svm": metrics["raw.svm_accuracy"],
             "nmi": metrics["latent.spectral.nmi"], "raw_nmi": metrics["raw.spectral.nmi"]}))


def one_pass(x: np.ndarray, y: np.ndarray) -> float | None:
    """The estimate before: C by the rules, one unshuffled stratified 5-fold pass."""
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    from latentsweep.analysis.svm import FOLDS, _grid_search, _svc, is_tiny

    if not is_tiny(y):
        return float(_grid_search(x, y).best_score_)
    folds = int(min(FOLDS, np.unique(y, return_counts=True)[1].min()))
    return float(cross_val_score(_svc(float("inf")), x, y, cv=StratifiedKFold(folds)).mean()) if folds >= 2 else None


def score_model(path: Path) -> dict:
    """Both TRAIN-only estimates of one saved model, beside its TEST scores."""
    from latentsweep.analysis.latents import latent_columns
    from latentsweep.analysis.svm import svm_cv_score

    frame = pd.read_parquet(path)
    fit = (frame["split"] != "test").to_numpy()
    x = frame[latent_columns(frame)].to_numpy(np.float64)[fit]
    y = frame["label_index"].to_numpy()[fit]
    test = json.loads(path.with_suffix(".json").read_text())
    variant, seed = path.parent.name, int(path.stem.rsplit("-s", 1)[1])
    return {"variant": variant, "seed": seed, "one_pass": one_pass(x, y), "repeated": svm_cv_score(x, y),
            "test_svm": test["svm"], "test_nmi": test["nmi"], "raw_svm": test["raw_svm"], "raw_nmi": test["raw_nmi"]}


def summarise(table: pd.DataFrame) -> dict:
    from scipy.stats import spearmanr

    out = {}
    for estimate in ("one_pass", "repeated"):
        out[estimate] = {f"rho_{target}": float(spearmanr(table[estimate], table[f"test_{target}"])[0])
                         for target in ("svm", "nmi")}
    return out


def run(data: str, folder: Path) -> dict:
    files = sorted(folder.glob(f"*/{data}-s*.parquet"))
    if not files:
        raise SystemExit(f"no saved latents of {data} under {folder}: train some first (--seeds)")
    table = pd.DataFrame([score_model(p) for p in files])
    summary = summarise(table)
    print(f"{data}: {len(table)} models; Spearman's rho against TEST:")
    for estimate, rhos in summary.items():
        print(f"  {estimate:9s} SVM accuracy {rhos['rho_svm']:+.3f}   spectral NMI {rhos['rho_nmi']:+.3f}")
    save_results(f"cv-estimator-{data}", {"data": data, "size": [*SIZE, *RECIPE_SIZE], "variants": VARIANTS,
                                          "n_models": len(table), "rho": summary,
                                          "models": table.to_dict(orient="records")})
    return summary


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="ArrowHead")
    parser.add_argument("--seeds", type=int, nargs="*", default=[], help="train each variant on these seeds first")
    parser.add_argument("--variants", nargs="*", default=list(VARIANTS))
    parser.add_argument("--latents", type=Path, default=None, help="folder of saved latents (default: a temporary one)")
    parser.add_argument("--path", type=Path, default=None, help="folder holding <name>/<name>_TRAIN.ts "
                        "(default: data/ucr, fetched by make ucr-data)")
    parser.add_argument("--run-name", default="adhoc", help="results folder under benchmarks/results/")
    args = parser.parse_args()
    set_run(args.run_name, " ".join(["bench_cv_estimator.py", *sys.argv[1:]]))
    with tempfile.TemporaryDirectory() as scratch:
        latents = args.latents or Path(scratch)
        folder = args.path or ROOT / "data" / "ucr"
        if args.seeds and args.path is None:
            _ensure_data(folder)
        for name in args.variants if args.seeds else ():
            for seed in args.seeds:
                train_one(args.data, seed, VARIANTS[name], latents / name / f"{args.data}-s{seed}", folder)
        run(args.data, latents)
