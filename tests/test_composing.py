"""A trial's config from the cache (`sweeps.composing`) is the one Hydra composes from scratch."""

from __future__ import annotations

import pickle
from types import SimpleNamespace

import pytest
from hydra import initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import ConfigCompositionException
from hydra.types import HydraContext, RunMode
from omegaconf import OmegaConf

from latentsweep.config import register_configs
from latentsweep.sweeps import composing
from tests.conftest import CONF_DIR

# what the sweeper hands each job: the command line's overrides, the trial's values, then its study
# and trial (`++sweep.*`)
COMMAND = ["experiment=latent", "data.batch_size=16"]
TRIALS = [[*COMMAND, *trial] for trial in (
    ["model.base_channels=16", "optimizer.lr=0.004", "++sweep.trial_id=0", "++extra_tags.optuna_study='s'"],
    ["model.base_channels=32", "optimizer.lr=0.007", "++sweep.trial_id=1", "++extra_tags.optuna_study='s'"],
    ["optimizer=adamw", "optimizer.lr=0.003", "++sweep.trial_id=2"],  # a trial that picks a config group
    ["+extra_tags.note=x", "+extra_tags.gone=y", "~extra_tags.gone", "hydra.job.name=renamed"],
)]


@pytest.fixture()
def loader():
    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR):
        yield GlobalHydra.instance().config_loader()
    GlobalHydra.instance().clear()


def _master(loader):
    return loader.load_configuration("train", COMMAND, RunMode.MULTIRUN)


def _text(cfg) -> str:
    return OmegaConf.to_yaml(cfg)  # unresolved: interpolations compared as written, the hydra node included


def test_each_trial_gets_the_config_hydra_composes_for_it(loader):
    master = _master(loader)
    cached = composing.CachedSweepConfigs(loader)
    composing._COMPOSED.clear()
    for overrides in TRIALS * 2:  # the second round comes from the cache
        mine, hydras = cached.load_sweep_config(master, overrides), loader.load_sweep_config(master, overrides)
        assert _text(mine) == _text(hydras)
        assert OmegaConf.is_struct(mine) and not OmegaConf.is_readonly(mine.hydra)
    # one composition per set of group (or hydra.*) overrides; values never reach the key
    assert len(composing._COMPOSED) == 3
    # each trial got its own copy: the first trial's values are not in what is kept
    first = cached.load_sweep_config(master, TRIALS[0])
    first.model.base_channels = 999
    assert cached.load_sweep_config(master, TRIALS[1]).model.base_channels == 32


def test_a_bad_override_fails_as_it_does_without_the_cache(loader):
    master = _master(loader)
    cached = composing.CachedSweepConfigs(loader)
    for bad in ([*COMMAND, "model.no_such_size=3"], [*COMMAND, "model=no_such_model"], [*COMMAND, "optimizer.lr=1,2"]):
        with pytest.raises(ConfigCompositionException):
            loader.load_sweep_config(master, bad)
        with pytest.raises(ConfigCompositionException):
            cached.load_sweep_config(master, bad)


def test_the_loader_travels_to_a_worker_process_and_is_installed_once(loader):
    cached = pickle.loads(pickle.dumps(composing.CachedSweepConfigs(loader)))  # how joblib sends it
    master = _master(loader)
    assert _text(cached.load_sweep_config(master, TRIALS[0])) == _text(loader.load_sweep_config(master, TRIALS[0]))

    launcher = SimpleNamespace(hydra_context=HydraContext(config_loader=loader, callbacks=None))  # as after setup()
    composing.install(launcher)
    composing.install(launcher)
    assert isinstance(launcher.hydra_context.config_loader, composing.CachedSweepConfigs)
    assert launcher.hydra_context.config_loader.loader is loader
