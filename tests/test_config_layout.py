"""Where configs live: schemas out of the users' option lists, option files found through Hydra."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf

from latentsweep.config import register_configs
from latentsweep.tasks.pretrained import _schema_defaults

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow  # a subprocess: train.py / a sweep / make
def test_a_wrong_choice_lists_only_the_real_options():
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(ROOT / "train.py"), "model=nope"], capture_output=True, text=True,
                          env=env, timeout=120)
    assert proc.returncode != 0
    listed = re.search(r"Available options in 'model':\n((?:\t.*\n)+)", proc.stdout + proc.stderr).group(1).split()
    assert sorted(listed) == sorted(p.stem for p in (ROOT / "conf" / "model").glob("*.yaml"))
    assert "rnn_ae_schema" not in proc.stdout + proc.stderr


def test_pretrained_defaults_come_from_the_running_apps_conf(tmp_path):
    """`task.pretrained` compares overrides with the model's defaults: its schema plus the option file
    of the Hydra app that runs, wherever its conf/ lives (here a copy with another default)."""
    conf = tmp_path / "conf"
    shutil.copytree(ROOT / "conf", conf)
    option = conf / "model" / "rnn_ae.yaml"
    option.write_text(option.read_text().replace("hidden_size: 128", "hidden_size: 48"))
    model = OmegaConf.create({"_target_": "latentsweep.models.rnn_ae.RNNAutoencoder"})
    register_configs()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(conf)):
            assert _schema_defaults(model)["hidden_size"] == 48
    finally:
        GlobalHydra.instance().clear()
    assert _schema_defaults(model)["hidden_size"] == 128  # outside a Hydra app: the schema alone


def test_the_first_run_settings_apply_to_their_model_and_data_only():
    """conf/model_data/conv_ae-synthetic.yaml: `python train.py` gets them (benchmarks/results/first-run/);
    another model on the synthetic data, or conv_ae on another source, keeps its own defaults."""
    from tests.conftest import compose_config

    first = compose_config([])
    assert first.model._target_.endswith("ConvAutoencoder") and first.model.length == 128
    assert (first.data.normalize, first.data.batch_size) == ("zscore", 16)
    rnn = compose_config(["model=rnn_ae"])
    assert "length" not in rnn.model and (rnn.data.normalize, rnn.data.batch_size) == ("global", 64)
    ucr = compose_config(["data=ucr", "data.name=ArrowHead", "data.path=data/ucr"])
    assert ucr.model.length is None and ucr.data.normalize != "zscore"
    assert compose_config(["data.normalize=global"]).data.normalize == "global"  # the command line wins
