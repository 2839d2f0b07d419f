"""5. Latent quality on real data: a small sweep per model, then the analysis step.

For UCR sets bundled with aeon (fetched by `make ucr-data` into data/ucr/), RBF-SVM and probe
accuracy and spectral-clustering NMI on the best model's latents vs the same on the raw series,
all measured in this run (the raw-series SVM is the literature's yardstick, measured here rather
than quoted).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from .bench_sweep import sweep
from .common import ROOT, save_results, table

DATASETS = ("PickupGestureWiimoteZ", "ArrowHead")
MODELS = {"rnn_ae": [], "conv_ae": ["data.fixed_length=128"]}


def _ensure_data(folder: Path) -> None:
    missing = [n for n in DATASETS if not (folder / n / f"{n}_TRAIN.ts").exists()]
    if missing:
        from latentsweep.data.fetch_ucr import fetch

        fetch(missing, folder)


def _analyze(model: str, uri: str) -> dict:
    from latentsweep.analysis.run import analyze

    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf")):
        cfg = compose("analyze", overrides=[f"model_name={model}", f"tracking.uri={uri}"])
    return analyze(cfg)["metrics"]


def run(n_trials: int = 3, epochs: int = 15) -> dict:
    folder = ROOT / "data" / "ucr"
    _ensure_data(folder)
    rows, raw = [], {}
    for name in DATASETS:
        for model, extra in MODELS.items():
            with tempfile.TemporaryDirectory() as tmp:
                cwd = Path(tmp)
                sweep(cwd, f"model={model}", "data=ucr", f"data.name={name}", f"data.path={folder}",
                      "data.batch_size=16", f"trainer.max_epochs={epochs}", f"hydra.sweeper.n_trials={n_trials}",
                      *extra)
                m = _analyze(model, f"sqlite:///{cwd / 'mlruns' / 'mlflow.db'}")
            raw[f"{name}-{model}"] = m
            rows.append([name, model, m.get("latent.svm_accuracy"), m.get("raw.svm_accuracy"),
                         m.get("latent.probe_accuracy"), m.get("raw.probe_accuracy"),
                         m.get("latent.spectral.nmi"), m.get("raw.spectral.nmi")])
    print(f"\n### 5. Latent quality on UCR data ({n_trials} trials x {epochs} epochs per model, then analyze.py)\n")
    print(table(["data set", "model", "SVM acc latent", "SVM acc raw", "probe acc latent", "probe acc raw",
                 "spectral NMI latent",
                 "spectral NMI raw"], rows))
    save_results("quality", raw)
    return raw


if __name__ == "__main__":
    run()
