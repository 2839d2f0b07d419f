"""Selecting latents without labels: does a label-free criterion pick the trials labels would pick?

For each data set and seed: the `experiment=latent` recipe's sweep with the labels hidden from it
(`data.hide_labels=true`: the split, training and selection see unlabelled series), selecting with
the label-free objective. Then, for every finished trial, this evaluation alone reads the labels:

- each label-free candidate (`analysis.labelfree`, on the TRAIN latents, as the sweep logs them),
  and the trial's `best_val_loss`;
- `svm_cv_accuracy`: the RBF-SVM yardstick cross-validated on the TRAIN latents, what a labelled
  sweep selects on (computed here, never by the sweep);
- TEST: RBF-SVM accuracy (TS2Vec's rules) and spectral-clustering NMI (k = the number of classes),
  what `analyze.py` reports; the raw series' same scores beside them.

Each sweep writes a per-trial table (`trials-<data>-seed<seed>.parquet`) and its raw scores
(`raw-<data>-seed<seed>.json`); `--summarise` reads every table and writes `summary.json`: per
criterion, Spearman's rho against TEST SVM accuracy and NMI, and the TEST scores of the trial it
selects, beside `svm_cv_accuracy`'s and `val_loss`'s choices and the raw series.

    python -m benchmarks.bench_selection --data ArrowHead --seed 0 --run-name latent-selection
    python -m benchmarks.bench_selection --summarise --run-name latent-selection
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from latentsweep.tables import markdown_table as table

from .bench_sweep import sweep
from .common import ROOT, run_dir, save_results, set_run

DATASETS = ("ArrowHead", "PickupGestureWiimoteZ")
OBJECTIVE = "label_free"  # what the sweeps select on (latentsweep.objectives)
SEED_FOR_SCORES = 0  # clustering and resampling seed of the evaluation


# --- one trial ------------------------------------------------------------------------------
def _labels_by_id(config: dict) -> dict[str, int]:
    """Each series' class index, from the same source with its labels (the sweep never read them)."""
    from omegaconf import OmegaConf

    from latentsweep.analysis.latents import splits_of
    from latentsweep.loading import load_data

    source = OmegaConf.create({**config["data"], "hide_labels": False})
    labelled = load_data(source, int(config.get("seed", 0)))
    out: dict[str, int] = {}
    for _, subset in splits_of(labelled):
        out.update(zip(subset.ids, subset.labels.tolist()))
    return out


class SweepData:
    """What every trial of one sweep shares: the series (labels hidden), their labels, raw features."""

    def __init__(self, config: dict) -> None:
        from latentsweep.analysis.latents import splits_of
        from latentsweep.analysis.run import raw_baseline, rebuild_data

        self.data = rebuild_data(config)  # labels hidden, split as the sweep split it
        self.splits = splits_of(self.data)
        names = np.concatenate([[name] * len(subset) for name, subset in self.splits])
        self.fit_rows, self.test_rows = names != "test", names == "test"
        by_id = _labels_by_id(config)
        self.y = np.array([by_id[i] for _, subset in self.splits for i in subset.ids])
        self.raw, self.raw_length = raw_baseline(self.data, config)
        self.n_classes = len(np.unique(self.y))

    def test_scores(self, x: np.ndarray) -> dict[str, float]:
        """TEST RBF-SVM accuracy and spectral NMI of features `x` (rows as the splits): labels read here."""
        from latentsweep.analysis.metrics import clustering_scores
        from latentsweep.analysis.svm import svm_accuracy

        fit, test, y = self.fit_rows, self.test_rows, self.y
        svm = svm_accuracy(x[fit], y[fit], x[test], y[test])
        nmi = clustering_scores(x[test], self.n_classes, y[test], SEED_FOR_SCORES, methods=("spectral",))
        return {"test_svm_accuracy": svm.accuracy, "test_spectral_nmi": float(nmi["spectral"].nmi)}

    def svm_cv(self, x: np.ndarray) -> float:
        """`svm_cv_accuracy` as the objective computes it, on the TRAIN rows (train + validation)."""
        from latentsweep.analysis.metrics import is_collapsed
        from latentsweep.analysis.svm import svm_cv_score
        from latentsweep.objectives import SVM_OBJECTIVE_ROWS

        x, y = x[self.fit_rows], self.y[self.fit_rows]
        if not np.isfinite(x).all() or is_collapsed(x):
            return 0.0
        return float(svm_cv_score(x, y, max_samples=SVM_OBJECTIVE_ROWS))

    def label_free(self, x: np.ndarray) -> dict[str, float]:
        from latentsweep.analysis.labelfree import label_free_scores

        return label_free_scores(x[self.fit_rows], self.raw[self.fit_rows], SEED_FOR_SCORES)


def evaluate_trial(shared: SweepData, model) -> dict[str, float]:
    from latentsweep.analysis.latents import encode_series

    x = np.vstack([encode_series(model, subset, with_errors=False).latents for _, subset in shared.splits])
    x = x.astype(np.float64)
    row = shared.label_free(x)
    row["svm_cv_accuracy"] = shared.svm_cv(x)
    if np.isfinite(x).all():
        row.update(shared.test_scores(x))
    else:  # a diverged trial: the worst TEST scores
        row.update(test_svm_accuracy=0.0, test_spectral_nmi=0.0)
    return row


def trial_table(uri: str) -> tuple[pd.DataFrame, dict]:
    """One row per finished trial of the sweep in `uri`, and the raw series' scores."""
    from latentsweep import tracking
    from latentsweep.analysis.metrics import limited_threads

    runs = [r for r in tracking.finished_runs(uri, "latentsweep") or [] if "optuna_trial" in r.tags
            and "best_val_loss" in r.metrics]
    rows, shared = [], None
    with limited_threads(1):
        for run in sorted(runs, key=lambda r: int(r.tags["optuna_trial"])):
            model, config = tracking.load_model(run.run_id, uri)
            shared = shared or SweepData(config)
            row = {"trial": int(run.tags["optuna_trial"]), "run_id": run.run_id,
                   "val_loss": run.metrics["best_val_loss"], "objective": run.metrics.get("objective")}
            row.update({k: v for k, v in run.params.items() if k in _SEARCHED})
            row.update(evaluate_trial(shared, model))
            rows.append(row)
        raw = {**shared.test_scores(shared.raw), **shared.label_free(shared.raw),
               "raw_length": shared.raw_length, "n_classes": shared.n_classes,
               "n_fit": int(shared.fit_rows.sum()), "n_test": int(shared.test_rows.sum())}
    return pd.DataFrame(rows), raw


_SEARCHED = ("model.base_channels", "model.latent_dim", "model.n_blocks", "model.kernel_size", "optimizer.lr")


# --- the sweeps ------------------------------------------------------------------------------
def run_one(name: str, seed: int, n_trials: int | None, epochs: int | None, objective: str,
            folder: Path, extra: tuple[str, ...] = ()) -> Path:
    """The recipe's sweep on `name` with its labels hidden, then every trial evaluated; returns the table."""
    budget = ([f"hydra.sweeper.n_trials={n_trials}"] if n_trials else []) + \
             ([f"trainer.max_epochs={epochs}"] if epochs else [])
    with tempfile.TemporaryDirectory() as tmp:
        cwd = Path(tmp)
        sweep_s = sweep(cwd, "experiment=latent", "data=ucr", f"data.name={name}", f"data.path={folder}",
                        "data.hide_labels=true", f"objective={objective}", "trainer.num_threads=1",
                        "tracking.n_reconstructions=0", f"seed={seed}", *budget, *extra)
        trials, raw = trial_table(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
    stem = f"{name}-seed{seed}"
    out = run_dir() / f"trials-{stem}.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    trials.to_parquet(out, index=False)
    save_results(f"raw-{stem}", {"data": name, "seed": seed, "objective": objective, "budget": budget,
                                 "overrides": list(extra), "sweep_s": sweep_s, "n_trials": len(trials),
                                 "raw": raw, "trials_file": out.name})
    return out


# --- the summary -----------------------------------------------------------------------------
MAXIMISED = ("rankme", "trustworthiness", "stability", "silhouette", "rank_mean", "svm_cv_accuracy")
MINIMISED = ("val_loss",)
TARGETS = ("test_svm_accuracy", "test_spectral_nmi")


def with_rank_mean(trials: pd.DataFrame, parts: tuple[str, ...]) -> pd.DataFrame:
    """`rank_mean`: the mean of each part's rank within the study (a combination, post hoc only)."""
    out = trials.copy()
    out["rank_mean"] = np.mean([out[p].rank(pct=True) for p in parts], axis=0)
    return out


def study_summary(trials: pd.DataFrame, raw: dict) -> dict:
    """Per criterion: rho against each TEST score (val_loss negated: rho > 0 means the criterion
    prefers the better TEST trials), and the TEST scores of the trial it selects."""
    from scipy.stats import spearmanr

    at_or_above = np.logical_and.reduce([trials[t] >= raw[t] for t in TARGETS])
    out = {"raw": {t: raw[t] for t in TARGETS}, "n_trials": len(trials), "criteria": {},
           "trials_at_or_above_raw": int(at_or_above.sum())}  # on both scores: what a blind choice would hit
    for criterion in (*MAXIMISED, *MINIMISED):
        if criterion not in trials:
            continue
        values = _oriented(trials, criterion)
        best = values.idxmax()
        entry = {f"rho_{t}": float(spearmanr(values, trials[t]).statistic) for t in TARGETS}
        entry.update({f"chosen_{t}": float(trials.loc[best, t]) for t in TARGETS})
        entry["chosen_trial"] = int(trials.loc[best, "trial"])
        out["criteria"][criterion] = entry
    return out


def _oriented(trials: pd.DataFrame, criterion: str) -> pd.Series:
    """Higher is chosen: val_loss is negated, so every rho reads 'selects the better TEST trial'."""
    return -trials[criterion] if criterion in MINIMISED else trials[criterion]


def summarise(folder: Path) -> dict:
    """Every `trials-*.parquet` in `folder`: per study and over all studies (means), with the
    done-when checks of the label-free objective's choice (issue 25)."""
    from latentsweep.analysis.labelfree import CANDIDATES, LABEL_FREE_SCORE

    studies = {}
    for path in sorted(folder.glob("trials-*.parquet")):
        stem = path.stem.removeprefix("trials-")
        raw = json.loads((folder / f"raw-{stem}.json").read_text())
        trials = with_rank_mean(pd.read_parquet(path), CANDIDATES)
        studies[stem] = study_summary(trials, raw["raw"])
    criteria = [c for c in (*MAXIMISED, *MINIMISED) if all(c in s["criteria"] for s in studies.values())]
    mean = {c: {key: float(np.nanmean([s["criteria"][c][key] for s in studies.values()]))
                for key in next(iter(studies.values()))["criteria"][c] if key != "chosen_trial"}
            for c in criteria}
    mean["raw"] = {f"chosen_{t}": float(np.mean([s["raw"][t] for s in studies.values()])) for t in TARGETS}
    chosen = {stem: s["criteria"][LABEL_FREE_SCORE] for stem, s in studies.items()}
    checks = {
        "svm_at_or_above_raw_every_run": all(chosen[k]["chosen_test_svm_accuracy"] >= s["raw"]["test_svm_accuracy"]
                                             for k, s in studies.items()),
        "nmi_at_or_above_raw_every_run": all(chosen[k]["chosen_test_spectral_nmi"] >= s["raw"]["test_spectral_nmi"]
                                             for k, s in studies.items()),
        "svm_gap_to_svm_cv_accuracy_choice": mean["svm_cv_accuracy"]["chosen_test_svm_accuracy"]
        - mean[LABEL_FREE_SCORE]["chosen_test_svm_accuracy"],
    }
    checks["svm_within_0.03_of_svm_cv_accuracy"] = checks["svm_gap_to_svm_cv_accuracy_choice"] <= 0.03
    # How often a choice that knows nothing (a trial drawn at random from each sweep) would be at or
    # above raw on both scores in every run: the bar "every run" sets for these sweeps' trials.
    checks["chance_every_run_for_a_random_trial"] = float(np.prod(
        [s["trials_at_or_above_raw"] / s["n_trials"] for s in studies.values()]))
    return {"label_free_score": LABEL_FREE_SCORE, "studies": studies, "mean": mean, "checks": checks,
            "n_studies": len(studies)}


def render(summary: dict) -> str:
    """The docs/latent-recipe.md table: one row per criterion (means over the studies), then the raw series."""
    rows = []
    for criterion, m in summary["mean"].items():
        if criterion == "raw":
            continue
        mark = " (objective=label_free)" if criterion == summary["label_free_score"] else ""
        rows.append([criterion + mark, m["rho_test_svm_accuracy"], m["rho_test_spectral_nmi"],
                     m["chosen_test_svm_accuracy"], m["chosen_test_spectral_nmi"]])
    raw = summary["mean"]["raw"]
    rows.append(["raw series (no model)", "", "", raw["chosen_test_svm_accuracy"], raw["chosen_test_spectral_nmi"]])
    return table(["criterion", "rho vs TEST SVM acc", "rho vs TEST spectral NMI", "TEST SVM acc of its choice",
                  "TEST spectral NMI of its choice"], rows)


def per_study_table(summary: dict) -> str:
    """Per sweep: TEST SVM accuracy / spectral NMI of the label-free, svm_cv_accuracy and val_loss
    choices and of the raw series, and how many of the sweep's trials were at or above raw on both."""
    rows = []
    for stem, s in summary["studies"].items():
        row = [stem]
        for c in (summary["label_free_score"], "svm_cv_accuracy", "val_loss"):
            row.append(f"{s['criteria'][c]['chosen_test_svm_accuracy']:.3f} / {s['criteria'][c]['chosen_test_spectral_nmi']:.3f}")
        row.append(f"{s['raw']['test_svm_accuracy']:.3f} / {s['raw']['test_spectral_nmi']:.3f}")
        row.append(f"{s['trials_at_or_above_raw']} of {s['n_trials']}")
        rows.append(row)
    return table(["sweep", f"{summary['label_free_score']} (label_free)", "svm_cv_accuracy", "val_loss", "raw",
                  "trials at or above raw on both"], rows)


if __name__ == "__main__":
    import argparse
    import sys

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="*", default=list(DATASETS), help="ArrowHead / PickupGestureWiimoteZ")
    parser.add_argument("--seed", type=int, nargs="*", default=[0, 1, 2])
    parser.add_argument("--trials", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--objective", default=OBJECTIVE, help="what the sweeps select on")
    parser.add_argument("--override", action="append", default=[], help="a Hydra override on top of the recipe")
    parser.add_argument("--run-name", default="adhoc", help="results folder under benchmarks/results/")
    parser.add_argument("--summarise", action="store_true", help="only summarise the tables already there")
    args = parser.parse_args()
    set_run(args.run_name, " ".join(["bench_selection.py", *sys.argv[1:]]))
    if not args.summarise:
        for name in args.data:
            for seed in args.seed:
                print(run_one(name, seed, args.trials, args.epochs, args.objective, ROOT / "data" / "ucr",
                              tuple(args.override)), flush=True)
    summary = summarise(run_dir())
    save_results("summary", summary)
    print(render(summary), "\n", per_study_table(summary), "\n", json.dumps(summary["checks"], indent=1), sep="\n")
