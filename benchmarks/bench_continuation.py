"""A killed trial continues from its checkpoint: epochs trained vs a restart from scratch (issue 18).

A 6-trial sweep (joblib, one worker, no pruning, no early stopping) in which the worker running
trial 2 is killed with SIGKILL once that trial has reported half its epochs. Run twice:

- continuation: the default; the trial resumes its own last checkpoint;
- restart: `trainer.checkpoint_dir=null`, so there is no checkpoint and the same trial runs again
  from epoch 0 (what Optuna's RetryFailedTrialCallback does).

Epochs trained are counted from the jobs' logs (one line per finished epoch).

    python -m benchmarks.bench_continuation     # -> benchmarks/results/faults/continuation.json
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import optuna

from latentsweep.tables import markdown_table

from .common import ROOT, save_results, set_run

optuna.logging.set_verbosity(optuna.logging.WARNING)

N_TRIALS, EPOCHS, KILLED_TRIAL = 6, 20, 2
COMMAND = ["~search", "model=rnn_ae", "data.n_series=60", "data.shortest=20", "data.longest=60", "data.batch_size=16",
           "model.hidden_size=16", "model.latent_dim=4", "model.cell=choice(gru,lstm)",
           "optimizer.lr=tag(log, interval(1e-3, 3e-2))", "trainer.progress=false", "trainer.num_threads=1",
           "trainer.patience=null", f"trainer.max_epochs={EPOCHS}", "tracking.n_reconstructions=0",
           "hydra.sweeper.pruner.name=none", f"hydra.sweeper.n_trials={N_TRIALS}", "hydra.sweeper.register_best=false",
           "hydra/launcher=joblib", "hydra.launcher.n_jobs=1",
           # every epoch checkpointed, as before checkpoint_every_s existed (these trials last seconds,
           # and at the default 10 s a trial killed mid-run would have no checkpoint to continue from)
           "trainer.checkpoint_every_s=0"]


def _epochs_trained(cwd: Path) -> int:
    return sum(len(re.findall(r"\] - epoch \d+/\d+ train_loss", log.read_text()))
               for log in cwd.glob("sweeps/**/train.log"))


def _reported(db: Path, number: int) -> int:
    try:
        trials = optuna.load_study(study_name="rnn_ae-synthetic", storage=f"sqlite:///{db}").trials
    except Exception:  # no study yet
        return 0
    return len(trials[number].intermediate_values) if len(trials) > number else 0


def one_sweep(cwd: Path, *extra: str) -> dict:
    """The sweep with trial KILLED_TRIAL's worker killed at half its epochs."""
    db = cwd / "sweeps" / "optuna.db"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    env.update(MPLBACKEND="Agg", PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")
    cmd = [sys.executable, str(ROOT / "train.py"), "-m", "hydra/sweeper=optuna", *COMMAND,
           f"tracking.uri=sqlite:///{cwd / 'mlruns' / 'mlflow.db'}", *extra]
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed_after = None
    while proc.poll() is None:
        done = _reported(db, KILLED_TRIAL) if db.exists() else 0
        if done >= EPOCHS // 2:
            workers = subprocess.run(["pgrep", "-P", str(proc.pid), "-f", "popen_loky"], capture_output=True,
                                     text=True).stdout.split()
            for pid in workers:
                os.kill(int(pid), signal.SIGKILL)
            killed_after = done
            break
        time.sleep(0.05)
    out, err = proc.communicate(timeout=1800)
    if proc.returncode != 0 or killed_after is None:
        raise RuntimeError(f"sweep failed or ended before the kill:\n{err[-3000:]}")
    trials = optuna.load_study(study_name="rnn_ae-synthetic", storage=f"sqlite:///{db}").trials
    return {"epochs_trained": _epochs_trained(cwd), "killed_after_epochs_reported": killed_after,
            "trials": len(trials), "states": [t.state.name for t in trials],
            "continued": trials[KILLED_TRIAL].user_attrs.get("continued", 0)}


def run() -> dict:
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        continuation = one_sweep(Path(a))
        restart = one_sweep(Path(b), "trainer.checkpoint_dir=null")
    rows = [["continuation (default)", continuation["epochs_trained"], continuation["killed_after_epochs_reported"]],
            ["restart from scratch", restart["epochs_trained"], restart["killed_after_epochs_reported"]]]
    print(markdown_table(["killed trial", "epochs trained, 6 trials", "killed after (epochs reported)"], rows))
    saved = 1 - continuation["epochs_trained"] / restart["epochs_trained"]
    print(f"continuation trained {100 * saved:.0f}% fewer epochs ({N_TRIALS} trials x {EPOCHS} epochs = "
          f"{N_TRIALS * EPOCHS} without a kill)")
    payload = {"n_trials": N_TRIALS, "epochs_per_trial": EPOCHS, "continuation": continuation, "restart": restart,
               "epochs_saved_share": saved}
    save_results("continuation", payload)
    return payload


if __name__ == "__main__":
    set_run("faults", "python -m benchmarks.bench_continuation")
    run()
