"""Search spaces: `conf/search/<model>.yaml` + `hydra.sweeper.params` + CLI sweeps, and size constraints.

A search file holds `params` (key -> Hydra sweep grammar: `choice`, `range`, `interval`,
`tag(log, interval(...))`) and optionally `custom_search_space`, the dotted path of a function
here. Precedence, weakest first: search file, `hydra.sweeper.params`, command line.

Size constraints (latent_dim <= hidden_size, ...) are functions with the upstream
`custom_search_space` signature plus a `space` keyword; the sweeper samples the keys they list in
`.samples` only through them, after the other keys, so the bound is known when they sample.

`build_space` is the one place a trial's space is assembled, for single-model and family sweeps
alike (`TrialSpace`); a family sweep only gives each family's parameters a prefixed name.
A constraint that cannot be met for a sampled point raises `InfeasibleError`: that trial is
pruned as infeasible, the sweep goes on.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra_plugins.hydra_optuna_sweeper._impl import create_params_from_overrides
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import Trial

from ..errors import ConfigError, InfeasibleError

Infeasible = InfeasibleError  # a sampled combination no trial can run (kept under its old name)


def _key(override: Any) -> str:
    key = override.get_key_element()
    return key.lstrip("+~")


def merge_overrides(*sources: Iterable[str]) -> list[str]:
    """Concatenate override lists; a later source replaces an earlier one's value for the same key."""
    parser = OverridesParser.create()
    merged: dict[str, str] = {}
    for source in sources:
        source = list(source)
        for line, parsed in zip(source, parser.parse_overrides(source)):
            key = _key(parsed)
            merged.pop(key, None)  # keep the winner's position last
            merged[key] = line
    return list(merged.values())


def search_file(search: Any) -> tuple[list[str], str | None]:
    """(override strings, custom_search_space path) from the composed `search` node (or None)."""
    if search is None:
        return [], None
    node = OmegaConf.to_container(search, resolve=True) if isinstance(search, DictConfig) else dict(search)
    params = node.get("params", {k: v for k, v in node.items() if k != "custom_search_space"})
    if not isinstance(params, Mapping):
        raise ConfigError("conf/search/<model>.yaml: `params` must map keys to sweep strings, e.g. "
                          "model.latent_dim: choice(4, 8, 16)")
    return [f"{k}={v}" for k, v in params.items()], node.get("custom_search_space")


# `custom_search_space` is a dotted path from config: like every config-selected target, it is
# resolved under Hydra's execution whitelist, so only the constraint functions of this module run.
CONSTRAINT_TARGETS = ("latentsweep.sweeps.spaces.*",)


def load_constraint(path: str) -> Callable[..., Any]:
    """The `custom_search_space` function at `path`, if the execution whitelist allows it."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate({"_target_": str(path), "_partial_": True}, _execution_whitelist_=CONSTRAINT_TARGETS)
    except InstantiationException as exc:
        allowed = any(str(path).startswith(t[:-1]) for t in CONSTRAINT_TARGETS)
        problem = (f"cannot be loaded ({str(exc).splitlines()[0]})" if allowed
                   else f"is not in the execution whitelist {list(CONSTRAINT_TARGETS)}")
        raise ConfigError(f"custom_search_space={path!r} {problem} — use a function of "
                          "latentsweep.sweeps.spaces, e.g. latentsweep.sweeps.spaces.latent_within_hidden") from exc


def constraint_samples(constraint: Any) -> tuple[str, ...]:
    """The keys a constraint samples itself. `load_constraint` returns a partial: look through it."""
    return tuple(getattr(getattr(constraint, "func", constraint), "samples", ()))


@dataclass
class TrialSpace:
    """What one trial samples: `free` first, then the constraint samples `deferred` with its bound."""

    free: dict[str, BaseDistribution]
    fixed: dict[str, Any]  # fixed values (search file or CLI), passed to every trial
    fixed_overrides: list[str]  # fixed overrides that are not key=value params (`~search`, ...)
    constraint: Callable[..., Any] | None  # custom_search_space
    deferred: dict[str, BaseDistribution]  # sampled only through the constraint
    config: DictConfig  # the composed config the constraint reads its bounds from

    def distributions(self) -> dict[str, BaseDistribution]:
        return {**self.free, **self.deferred}

    def sample(self, trial: Any) -> dict[str, Any]:
        """Sample `trial` (an Optuna trial, or a family's view of one); its parameters, fixed included."""
        for key, dist in self.free.items():
            trial._suggest(key, dist)
        for key, value in self.fixed.items():
            trial.set_user_attr(key, value)
        if self.constraint is not None:
            if constraint_samples(self.constraint):
                self.constraint(self.config, trial, space=self.distributions())
            else:  # an upstream-style hook: (cfg, trial)
                self.constraint(self.config, trial)
        return {**trial.params, **self.fixed}

    def overrides(self, params: Mapping[str, Any]) -> list[str]:
        """The job's overrides for a trial's parameters (also to continue a killed trial)."""
        return [f"{k}={v}" for k, v in {**params, **self.fixed}.items()] + list(self.fixed_overrides)

    def without_constraint(self) -> TrialSpace:
        """Every key sampled freely (the grid sampler holds every key: a constraint cannot apply)."""
        return TrialSpace(self.distributions(), self.fixed, self.fixed_overrides, None, {}, self.config)


def build_space(config: DictConfig, sweeper_params: Iterable[str], arguments: Iterable[str],
                custom_search_space: str | None = None) -> TrialSpace:
    """The one space builder: `config`'s search file < `hydra.sweeper.params` < the command line;
    `custom_search_space` (hydra.sweeper) wins over the search file's. Used for a single-model
    sweep and for each family of a family sweep, so both sample and constrain alike."""
    file_lines, file_custom = search_file(config.get("search"))
    lines = merge_overrides(file_lines, sweeper_params, arguments)
    dists, fixed, fixed_overrides = create_params_from_overrides(lines)
    for name in fixed:
        dists.pop(name, None)
    path = custom_search_space or file_custom
    constraint = load_constraint(path) if path else None  # under the execution whitelist
    deferred = {name: dists.pop(name) for name in constraint_samples(constraint) if name in dists}
    return TrialSpace(dists, dict(fixed), list(fixed_overrides), constraint, deferred, config)


def _bound(cfg: DictConfig, trial: Trial, key: str) -> float | None:
    """The value `key` has in this trial: sampled, fixed on the command line, or from the config."""
    if key in trial.params:
        return trial.params[key]
    value = trial.user_attrs.get(key)
    if value is None:
        value = OmegaConf.select(cfg, key, default=None)
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def suggest_capped(trial: Trial, space: Mapping[str, BaseDistribution], name: str, bound: float | None,
                   label: str) -> None:
    """Sample `name` from its distribution with the upper end capped at `bound` (None: uncapped)."""
    dist = space.get(name)
    if dist is None:  # fixed on the command line, or not searched
        return
    if isinstance(dist, IntDistribution) and bound is not None:
        high = max(dist.low, min(dist.high, int(bound)))
        if dist.step != 1 and not dist.log:
            high = dist.low + (high - dist.low) // dist.step * dist.step
        trial._suggest(name, IntDistribution(dist.low, high, log=dist.log, step=dist.step))
    elif isinstance(dist, FloatDistribution) and bound is not None and dist.step is None:
        trial._suggest(name, FloatDistribution(dist.low, max(dist.low, min(dist.high, bound)), log=dist.log))
    else:  # categorical choices cannot change between trials in Optuna: sample, then check
        value = trial._suggest(name, dist)
        if bound is not None and isinstance(dist, CategoricalDistribution) and float(value) > bound:
            raise InfeasibleError(f"{name}={value} exceeds {label}={bound:g}")


def capped(name: str, bound_key: str) -> Callable[..., None]:
    """A custom_search_space function: `name` <= `bound_key` in every trial."""

    def constrain(cfg: DictConfig, trial: Trial, space: Mapping[str, BaseDistribution] | None = None) -> None:
        suggest_capped(trial, space or {}, name, _bound(cfg, trial, bound_key), bound_key)

    constrain.samples = (name,)  # type: ignore[attr-defined]
    constrain.__doc__ = f"Sample {name} at most {bound_key} (so no trial has an impossible size)."
    return constrain


latent_within_hidden = capped("model.latent_dim", "model.hidden_size")  # rnn_ae, vrae
latent_within_width = capped("model.latent_dim", "model.width")  # highway_ae
latent_within_d_model = capped("model.latent_dim", "model.d_model")  # transformer_ae


def latent_within_input(cfg: DictConfig, trial: Trial, space: Mapping[str, BaseDistribution] | None = None) -> None:
    """mlp_ae: latent_dim at most the flattened input (data.fixed_length x data.n_channels, when known)."""
    length = _bound(cfg, trial, "data.fixed_length") or _bound(cfg, trial, "data.fixed_length_if_variable")
    channels = _bound(cfg, trial, "data.n_channels") or 1
    suggest_capped(trial, space or {}, "model.latent_dim", length * channels if length else None,
                   "the flattened input size")


latent_within_input.samples = ("model.latent_dim",)  # type: ignore[attr-defined]


def blocks_within_length(cfg: DictConfig, trial: Trial, space: Mapping[str, BaseDistribution] | None = None) -> None:
    """conv_ae: n_blocks such that stride**n_blocks <= its length (each block divides time): model.length
    when the model resamples itself, else data.fixed_length (or data.fixed_length_if_variable)."""
    length = (_bound(cfg, trial, "model.length") or _bound(cfg, trial, "data.fixed_length")
              or _bound(cfg, trial, "data.fixed_length_if_variable"))
    stride = _bound(cfg, trial, "model.stride") or 2
    bound = None
    if length and stride > 1:
        bound = max(1, int(math.log(length) / math.log(stride) + 1e-9))
    suggest_capped(trial, space or {}, "model.n_blocks", bound, "log_stride(data.fixed_length)")


blocks_within_length.samples = ("model.n_blocks",)  # type: ignore[attr-defined]
