"""One space builder for every sweep (issue 26): each family's space, constraint included, is the
same in a single-model sweep and in a family sweep, and every sampled point either builds on the
shortest bundled data (digits: 8 steps of 8 channels) or is refused as infeasible, never as a
config error that would stop the sweep.

Real Hydra composition of each family's config, real Optuna trials, real models built on the real
digits data; no training.
"""

from __future__ import annotations

import copy
import functools
import math

import optuna
import pytest
from omegaconf import OmegaConf

from latentsweep.build import build_model
from latentsweep.errors import InfeasibleError
from latentsweep.loading import load_data
from latentsweep.sweeps import spaces
from latentsweep.sweeps.families import FamilySearch, FamilyTrial
from tests.conftest import compose_config

FAMILIES = ["rnn_ae", "vrae", "conv_ae", "mlp_ae", "highway_ae", "transformer_ae"]
SAMPLES = 12  # per family and per kind of sweep


def _length(params: dict) -> float:
    return params.get("data.fixed_length") or params["data.fixed_length_if_variable"]


# What each family's constraint promises about every sampled point (conf/search/<family>.yaml).
PROMISES = {
    "rnn_ae": lambda p: p["model.latent_dim"] <= p["model.hidden_size"],
    "vrae": lambda p: p["model.latent_dim"] <= p["model.hidden_size"],
    "transformer_ae": lambda p: p["model.latent_dim"] <= p["model.d_model"],
    "highway_ae": lambda p: p["model.latent_dim"] <= p["model.width"],
    "mlp_ae": lambda p: p["model.latent_dim"] <= _length(p),
    "conv_ae": lambda p: 2 ** p["model.n_blocks"] <= _length(p),
}


@functools.cache
def _composed(family: str):
    return compose_config([f"model={family}", "data=digits"])


def _config(family: str):
    """The family's composed config on digits (composed once; a fresh copy each call)."""
    return copy.deepcopy(_composed(family))


@pytest.fixture(scope="module")
def digits_spec():
    return load_data(_config("rnn_ae").data, seed=0).spec


@pytest.fixture(scope="module")
def family_search():
    return FamilySearch.compose(FAMILIES, lambda overrides: compose_config(["data=digits", *overrides]), [],
                                [f"model=choice({','.join(FAMILIES)})", "data=digits"])


def _single_samples(family: str) -> list[dict]:
    space = spaces.build_space(_config(family), [], [])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    out = []
    for _ in range(SAMPLES):
        trial = study.ask()
        out.append(space.sample(trial))
        study.tell(trial, 0.0)
    return out


def _family_samples(search: FamilySearch, family: str) -> list[dict]:
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=2))
    out = []
    for _ in range(SAMPLES):
        study.enqueue_trial({"model": family})
        trial = study.ask()
        search.configure(trial)
        out.append({**FamilyTrial(trial, family).params, **search.spaces[family].fixed})
        study.tell(trial, 0.0)
    return out


def _builds_or_is_infeasible(family: str, params: dict, spec) -> bool:
    """True when the model builds on digits; False when it refuses its sizes as infeasible (any
    other error, a ConfigError included, fails the test: it would stop a sweep)."""
    cfg = _config(family)
    for key, value in params.items():
        OmegaConf.update(cfg, key, value)
    try:
        build_model(cfg.model, spec)
        return True
    except InfeasibleError:
        return False


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_has_one_space_and_its_constraint_holds_in_single_and_family_sweeps(
        family, family_search, digits_spec):
    single = spaces.build_space(_config(family), [], [])
    in_family = family_search.spaces[family]
    # the same space: same free keys, the same keys left to the same constraint
    assert single.free.keys() == in_family.free.keys()
    assert single.deferred.keys() == in_family.deferred.keys() and single.deferred, family
    assert single.constraint.func is in_family.constraint.func  # load_constraint returns a partial

    for kind, samples in (("single", _single_samples(family)), ("family", _family_samples(family_search, family))):
        assert len(samples) == SAMPLES
        assert all(PROMISES[family](params) for params in samples), (kind, family, samples)
        built = [_builds_or_is_infeasible(family, params, digits_spec) for params in samples]
        assert any(built), (kind, family)  # the space has points the data can take


def test_a_user_custom_search_space_and_cli_sweeps_apply_to_family_sweeps_too():
    """hydra.sweeper.custom_search_space and command-line sweeps reach every family's space."""
    arguments = ["model=choice(rnn_ae,vrae)", "data=digits", "model.hidden_size=choice(8)"]
    search = FamilySearch.compose(["rnn_ae", "vrae"], lambda o: compose_config(["data=digits", *o]), [], arguments,
                                  custom_search_space="latentsweep.sweeps.spaces.latent_within_hidden")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for family in ("rnn_ae", "vrae") * 5:
        study.enqueue_trial({"model": family})
        trial = study.ask()
        search.configure(trial)
        params = FamilyTrial(trial, family).params
        assert params["model.hidden_size"] == 8 and params["model.latent_dim"] <= 8, params
        study.tell(trial, 0.0)


def test_family_sweeps_keep_the_users_tpe_settings():
    from hydra_plugins.hydra_optuna_sweeper.config import TPESamplerConfig

    from latentsweep.sweeps.families import conditional_sampler

    settings = OmegaConf.structured(TPESamplerConfig(n_startup_trials=3, constant_liar=True, n_ei_candidates=7))
    sampler = conditional_sampler(optuna.samplers.TPESampler(), settings)
    assert sampler._multivariate and sampler._group  # conditional: each family modelled on its own
    assert sampler._n_startup_trials == 3 and sampler._constant_liar and sampler._n_ei_candidates == 7
    random = optuna.samplers.RandomSampler()
    assert conditional_sampler(random, OmegaConf.create({"_target_": "optuna.samplers.RandomSampler"})) is random


def test_the_conv_constraint_caps_blocks_by_the_length_it_can_see():
    """With a known length, conv_ae never samples more blocks than stride**n_blocks <= length."""
    space = spaces.build_space(compose_config(["model=conv_ae", "model.length=null", "data.fixed_length=8"]), [], [])
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=4))
    blocks = set()
    for _ in range(20):
        trial = study.ask()
        blocks.add(space.sample(trial)["model.n_blocks"])
        study.tell(trial, 0.0)
    assert max(blocks) <= int(math.log2(8)) and blocks
