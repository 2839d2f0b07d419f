"""Each trial's config, composed once per shape of sweep instead of once per trial.

Hydra's launchers compose every job's config from scratch (`load_sweep_config`): read the YAML
files, build the defaults list, merge them, then apply the job's overrides. In `experiment=latent`'s
40-trial sweep on ArrowHead that was the largest cost outside the trials' own clocks, which fell
from 22.5 s to 15.4 s with this module (benchmarks/results/speed/latent-share*.json). Yet the
trials of one sweep differ only in values (`model.base_channels=16`, `++sweep.trial_id=7`): the
files and the defaults list are the same every time. So the part that depends on the config groups is composed once per process and
kept; each trial gets a copy with its value overrides applied by Hydra's own
`_apply_overrides_to_config`, the step Hydra itself runs after composing. A trial that picks a
config group (`model=conv_ae` in a family sweep), or overrides `hydra.*`, has that part in the
cache key, so it is composed for real the first time.

Loaded by the sweeper (`install`); a launcher's worker process unpickles the wrapper with each job
and uses its own process's cache.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections import OrderedDict
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf

_COMPOSED: OrderedDict[tuple, DictConfig] = OrderedDict()  # this process's configs, newest last
_REPOS: dict[tuple, Any] = {}  # config repository per (config name, Hydra's own overrides)
_KEEP = 16  # a family sweep has one entry per family


class CachedSweepConfigs:
    """A `ConfigLoader` whose `load_sweep_config` reuses composed configs; everything else is the
    loader it wraps."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader

    def __getattr__(self, name: str) -> Any:
        if name == "loader" or name.startswith("__"):  # (unpickling asks before `loader` is set)
            raise AttributeError(name)
        return getattr(self.loader, name)

    def load_sweep_config(self, master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        parsed = OverridesParser.create().parse_overrides(list(sweep_overrides))
        hydra_overrides = tuple(OmegaConf.to_container(master_config.hydra.overrides.hydra))
        name = master_config.hydra.job.config_name
        repo = self._repository(name, hydra_overrides)
        is_value = [_is_value_override(o, repo) for o in parsed]
        values = [o for o, value in zip(parsed, is_value) if value]
        groups = [o.input_line for o, value in zip(parsed, is_value) if not value]
        key = (name, hydra_overrides, tuple(groups), os.getcwd())  # Hydra records the cwd in the config
        if key not in _COMPOSED:
            _COMPOSED[key] = self.loader.load_sweep_config(master_config, groups)
            while len(_COMPOSED) > _KEEP:
                _COMPOSED.popitem(last=False)
        _COMPOSED.move_to_end(key)
        cfg = copy.deepcopy(_COMPOSED[key])
        self.loader._apply_overrides_to_config(values, cfg)
        cfg.hydra.overrides.task = [o.input_line for o in parsed if not o.is_hydra_override()]
        OmegaConf.copy_cache(from_config=master_config, to_config=cfg)
        return cfg

    def _repository(self, config_name: str | None, hydra_overrides: tuple) -> Any:
        """The config repository Hydra composes from (its search path included), to tell a config
        group from a config key the way Hydra's defaults list does."""
        key = (config_name, hydra_overrides)
        if key not in _REPOS:
            _, _REPOS[key] = self.loader._parse_overrides_and_create_caching_repo(config_name, list(hydra_overrides))
        return _REPOS[key]


def _is_value_override(override: Any, repo: Any) -> bool:
    """True when Hydra would apply `override` to the composed config rather than to the defaults
    list (`hydra._internal.defaults_list.Overrides`): a value, not a config group, not `hydra.*`.
    Sweeps (`a=1,2`) go the full way, where Hydra names what is wrong with them."""
    if override.is_sweep_override() or override.is_hydra_override():
        return False
    if override.is_value_path:
        return True
    key = override.key_or_group
    return not repo.group_exists(key) and not repo.config_exists(key)


def install(launcher: Any) -> None:
    """Give `launcher` (any Hydra launcher) the caching loader; it reaches every job it runs."""
    context = getattr(launcher, "hydra_context", None)
    if context is None or isinstance(context.config_loader, CachedSweepConfigs):
        return
    launcher.hydra_context = dataclasses.replace(context, config_loader=CachedSweepConfigs(context.config_loader))
