"""5. Latent quality on real data: the `experiment=latent` recipe, then the analysis step, per data set.

For the UCR sets bundled with aeon (fetched by `make ucr-data` into data/ucr/): the recipe's sweep
(`python train.py -m hydra/sweeper=optuna experiment=latent data=ucr ...`), then `analyze.py` on the
study's best model: RBF-SVM accuracy (TS2Vec's rules, C from TRAIN only) and spectral-clustering NMI
on the official TEST split, latents vs the raw z-normalised series, all measured in this run.
`make bench` runs the recipe's own budget; `make bench-quick` a reduced one (it says which).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from latentsweep.tables import markdown_table

from .bench_sweep import sweep
from .common import ROOT, save_results

DATASETS = ("ArrowHead", "PickupGestureWiimoteZ")
RECIPE = "latent"  # conf/experiment/latent.yaml
MODEL = "conv_ae"  # the recipe's model: its registry entry holds the study's best


def _ensure_data(folder: Path) -> None:
    missing = [n for n in DATASETS if not (folder / n / f"{n}_TRAIN.ts").exists()]
    if missing:
        from latentsweep.data.fetch_ucr import fetch

        fetch(missing, folder)


def _run_analysis(uri: str, model_name: str = MODEL) -> dict:
    """analyze.py on `model_name`'s registered best in the store `uri` ("null": the best run)."""
    from latentsweep.analysis.run import analyze

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf")):
        cfg = compose("analyze", overrides=[f"model_name={model_name}", f"tracking.uri={uri}"])
    return analyze(cfg)


def _analyze(uri: str, model_name: str = MODEL) -> dict:
    """analyze.py's metrics for `model_name`'s registered best in the store `uri` ("null": the best run)."""
    return _run_analysis(uri, model_name)["metrics"]


def _analyze_run(uri: str, scratch: Path, model_name: str = "null"):
    """analyze.py's metrics and the latents it scored (its run's parquet artifact, read back)."""
    import mlflow
    import pandas as pd

    result = _run_analysis(uri, model_name)
    path = mlflow.artifacts.download_artifacts(run_id=result["analysis_run_id"], artifact_path=result["latents_artifact"],
                                               dst_path=str(scratch), tracking_uri=uri)
    return result["metrics"], pd.read_parquet(path)


def _recipe_default(key: str) -> int:
    from omegaconf import OmegaConf

    node = OmegaConf.load(ROOT / "conf" / "experiment" / f"{RECIPE}.yaml")
    return int(OmegaConf.select(node, key))


def run(n_trials: int | None = None, epochs: int | None = None, datasets: tuple[str, ...] = DATASETS,
        folder: Path | None = None, seed: int = 0, overrides: tuple[str, ...] = (),
        result_name: str = "quality") -> dict:
    """The recipe on each data set; `n_trials`/`epochs` None: the recipe's own budget.

    `overrides`: Hydra overrides on top of the recipe (a variant of it, to compare with the recipe:
    `--override objective=val_loss --name quality-val_loss`); they are written in the results file.

    `datasets`/`folder`: other UCR/UEA sets (e.g. to check that the recipe carries over to data it
    was not tuned on): `python -m benchmarks.bench_quality --data GunPoint --path <folder>`.
    """
    if folder is None:
        folder = ROOT / "data" / "ucr"
        _ensure_data(folder)
    overridden = dict(o.split("=", 1) for o in overrides if "=" in o)  # a variant may set the budget too
    budget = {"n_trials": n_trials or int(overridden.get("hydra.sweeper.n_trials", 0))
              or _recipe_default("hydra.sweeper.n_trials"),
              "epochs": epochs or int(overridden.get("trainer.max_epochs", 0)) or _recipe_default("trainer.max_epochs")}
    budget["share_of_recipe"] = (budget["n_trials"] * budget["epochs"]
                                 / (_recipe_default("hydra.sweeper.n_trials") * _recipe_default("trainer.max_epochs")))
    variant = list(overrides)
    overrides = ([f"hydra.sweeper.n_trials={n_trials}"] if n_trials else []) + \
                ([f"trainer.max_epochs={epochs}"] if epochs else []) + variant
    rows, results = [], {}
    for name in datasets:
        with tempfile.TemporaryDirectory() as tmp:
            cwd = Path(tmp)
            sweep_s = sweep(cwd, f"experiment={RECIPE}", "data=ucr", f"data.name={name}", f"data.path={folder}",
                            "trainer.num_threads=1", f"seed={seed}", *overrides)
            t0 = time.perf_counter()
            m = _analyze(f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
            analyze_s = time.perf_counter() - t0
        results[name] = {"sweep_s": sweep_s, "analyze_s": analyze_s, "metrics": m}
        rows.append([name, m.get("latent.svm_accuracy"), m.get("raw.svm_accuracy"),
                     m.get("latent.spectral.nmi"), m.get("raw.spectral.nmi"),
                     m.get("latent.probe_accuracy"), m.get("raw.probe_accuracy"), round(sweep_s)])
    print(f"\n### 5. Latent quality on UCR data: experiment={RECIPE} {' '.join(variant)}, {budget['n_trials']} trials x "
          f"{budget['epochs']} epochs ({budget['share_of_recipe']:.0%} of the recipe's budget), then analyze.py; "
          "scores on the official TEST split\n")
    print(markdown_table(["data set", "SVM acc latent", "SVM acc raw", "spectral NMI latent", "spectral NMI raw",
                 "probe acc latent", "probe acc raw", "sweep s"], rows))
    from latentsweep.analysis.svm import RULES

    save_results(result_name, {"recipe": RECIPE, "overrides": variant, "budget": budget, "seed": seed,
                               "svm_rules": RULES, "data_sets": results})
    return results


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="*", default=list(DATASETS), help="UCR/UEA problem names")
    parser.add_argument("--path", type=Path, default=None, help="folder holding <name>/<name>_TRAIN.ts")
    parser.add_argument("--trials", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--epochs", type=int, default=None, help="default: the recipe's")
    parser.add_argument("--seed", type=int, default=0, help="the sweep's seed (sampler, splits, weights)")
    parser.add_argument("--override", action="append", default=[], help="a Hydra override on top of the recipe")
    parser.add_argument("--name", default="quality", help="results file name (benchmarks/results/adhoc/<name>.json)")
    parser.add_argument("--run-name", default=None,
                        help="results folder under benchmarks/results/ (default: adhoc)")
    args = parser.parse_args()
    if args.run_name:
        import sys

        from .common import set_run

        set_run(args.run_name, " ".join(["bench_quality.py", *sys.argv[1:]]))
    run(args.trials, args.epochs, tuple(args.data), args.path, args.seed, tuple(args.override), args.name)
