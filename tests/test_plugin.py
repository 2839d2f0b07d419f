"""Our sweeper ships as a Hydra plugin (`hydra_plugins.latentsweep_sweeper`), and installing it
leaves the upstream Optuna sweeper working for any other Hydra app.

The other app is a tiny one written to tmp: not latentsweep's train.py, not its conf/, no
`register_configs()`. It runs in a subprocess with only the installed packages (and src/) on its path.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

SRC = Path(__file__).resolve().parents[1] / "src"

pytestmark = pytest.mark.slow  # every test here runs a Hydra app in a subprocess

APP = '''
import json

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper


@hydra.main(config_path="conf", config_name="config", version_base=None)
def main(cfg):
    sweepers = sorted(f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Sweeper))
    print("SWEEPERS " + json.dumps(sweepers))
    print("SWEEPER_TARGET " + HydraConfig.get().sweeper._target_)
    if cfg.fail:
        raise ValueError("this trial fails on purpose")
    if cfg.objectives == 2:
        return cfg.x ** 2, (cfg.x - 1) ** 2
    return (cfg.x - 0.3) ** 2 + cfg.y + cfg.z


if __name__ == "__main__":
    main()
'''

CONFIG = '''
defaults:
  - override hydra/sweeper: optuna
  - _self_
x: 0.0
y: 0
z: 0.0
fail: false
objectives: 1
hydra:
  sweep:
    dir: multirun/${now:%H-%M-%S-%f}
  sweeper:
    sampler:
      seed: 1
    direction: minimize
    study_name: foreign
    storage: null
    n_trials: 4
    n_jobs: 2
    params:
      x: interval(0, 1)
      y: choice(0, 1)
'''

EXTENDER = '''
def add_z(cfg, trial):
    """A custom_search_space hook: a parameter the overrides cannot express."""
    trial.suggest_float("z", 0.0, cfg.x if cfg.x > 0 else 1.0)
'''


@pytest.fixture
def foreign_app(tmp_path):
    app = tmp_path / "app"
    (app / "conf").mkdir(parents=True)
    (app / "app.py").write_text(APP)
    (app / "conf" / "config.yaml").write_text(textwrap.dedent(CONFIG))
    (app / "extender.py").write_text(EXTENDER)
    storage = f"sqlite:///{tmp_path / 'foreign.db'}"

    def run(*overrides: str, expect_ok: bool = True) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(app), str(SRC)]), "HYDRA_FULL_ERROR": "1"}
        proc = subprocess.run([sys.executable, "app.py", "-m", f"hydra.sweeper.storage={storage}", *overrides],
                              cwd=app, env=env, capture_output=True, text=True, timeout=300)
        assert (proc.returncode == 0) == expect_ok, proc.stdout[-3000:] + proc.stderr[-3000:]
        return proc

    def study(name: str = "foreign") -> optuna.Study:
        return optuna.load_study(study_name=name, storage=storage)

    def results() -> dict:
        (found,) = sorted(app.glob("multirun/*/optimization_results.yaml"))[-1:]
        return yaml.safe_load(found.read_text())

    return run, study, results


def test_our_plugin_is_found_and_the_upstream_tpe_sweep_with_storage_resumes(foreign_app):
    run, study, results = foreign_app
    out = run().stdout
    sweepers = next(line for line in out.splitlines() if line.startswith("SWEEPERS "))
    assert "latentsweep.sweeps.sweeper.LatentSweepOptunaSweeper" in sweepers  # installed and discovered
    targets = {line.split()[1] for line in out.splitlines() if line.startswith("SWEEPER_TARGET ")}
    assert targets == {"hydra_plugins.hydra_optuna_sweeper.optuna_sweeper.OptunaSweeper"}  # not ours
    first = study().trials
    assert [t.state for t in first] == [TrialState.COMPLETE] * 4
    run()  # the same command again: upstream adds n_trials more to the stored study
    trials = study().trials
    assert len(trials) == 8 and all(t.state == TrialState.COMPLETE for t in trials)
    assert [t.params for t in trials[:4]] == [t.params for t in first]  # the first four are kept
    assert results()["best_value"] == pytest.approx(study().best_value)


def test_upstream_grid_sampler_covers_the_grid(foreign_app):
    run, study, results = foreign_app
    run("hydra/sweeper/sampler=grid", "x=choice(0.1,0.9)", "hydra.sweeper.n_trials=10")  # CLI sweeps win
    combos = sorted((t.params["x"], t.params["y"]) for t in study().trials)
    assert combos == [(0.1, 0), (0.1, 1), (0.9, 0), (0.9, 1)]  # n_trials capped at the grid's size


def test_upstream_multi_objective_returns_a_pareto_front(foreign_app):
    run, study, results = foreign_app
    run("objectives=2", "hydra.sweeper.direction=[minimize,minimize]", "~hydra.sweeper.params.y")
    assert len(study().directions) == 2 and len(study().trials) == 4
    front = results()["solutions"]
    assert front and all(len(s["values"]) == 2 for s in front)


def test_upstream_custom_search_space_adds_its_parameters(foreign_app):
    run, study, results = foreign_app
    run("hydra.sweeper.custom_search_space=extender.add_z")
    trials = study().trials
    assert len(trials) == 4 and all("z" in t.params for t in trials)
    assert all(t.value == pytest.approx((t.params["x"] - 0.3) ** 2 + t.params["y"] + t.params["z"]) for t in trials)


def test_upstream_max_failure_rate_stops_the_sweep(foreign_app):
    run, study, results = foreign_app
    proc = run("fail=true", "hydra.sweeper.max_failure_rate=0.0", expect_ok=False)
    assert "this trial fails on purpose" in proc.stderr + proc.stdout
    states = [t.state for t in study().trials]
    assert states == [TrialState.FAIL, TrialState.FAIL]  # the first batch of two, then it stopped


def test_hydras_plugin_scan_imports_neither_optuna_nor_torch_nor_pandas():
    """Another Hydra app in this environment pays nothing for our plugin: Hydra imports every
    plugin module when it scans `hydra_plugins`; ours, like Hydra's own, imports its work lazily."""
    code = textwrap.dedent('''
        import json, sys
        from hydra.core.plugins import Plugins
        from hydra.plugins.sweeper import Sweeper
        import hydra_plugins.latentsweep_sweeper.config, hydra_plugins.latentsweep_sweeper.sweeper
        found = [f"{c.__module__}.{c.__name__}" for c in Plugins.instance().discover(Sweeper)]
        heavy = [m for m in ("optuna", "torch", "pandas", "mlflow", "sqlalchemy") if m in sys.modules]
        print(json.dumps({"found": found, "heavy": heavy}))
    ''')
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "latentsweep.sweeps.sweeper.LatentSweepOptunaSweeper" in result["found"]  # still registered
    assert result["heavy"] == []
