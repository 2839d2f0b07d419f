"""Search spaces: `conf/search/<model>.yaml` + `hydra.sweeper.params` + CLI sweeps, and size constraints.

A search file holds `params` (key -> Hydra sweep grammar: `choice`, `range`, `interval`,
`tag(log, interval(...))`) and optionally `custom_search_space`, the dotted path of a function
here. Precedence, weakest first: search file, `hydra.sweeper.params`, command line.

Size constraints (latent_dim <= hidden_size, ...) are functions with the upstream
`custom_search_space` signature plus a `space` keyword; the sweeper samples the keys they list in
`.samples` only through them, after the other keys, so the bound is known when they sample.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import Trial

from ..errors import ConfigError


class Infeasible(ValueError):
    """The sampled combination is impossible (e.g. a user's latent choice above the hidden size)."""


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
            raise Infeasible(f"{name}={value} exceeds {label}={bound:g}")


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
