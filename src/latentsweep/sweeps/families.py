"""Family sweeps: `model=choice(rnn_ae,conv_ae,...)` searches model families and their sizes at once.

Each trial first samples the family (Optuna parameter `model`), then only that family's own space:
`conf/search/<family>.yaml` (+ `hydra.sweeper.params` + CLI sweeps), with its
`custom_search_space` constraint. Parameters carry the family in their Optuna name
(`conv_ae/model.base_channels`), so a conv trial never holds `model.cell` and Optuna sees a
conditional space: with family-qualified names TPE's `multivariate` + `group` mode models each
family's parameters together, within the trials of that family.

Why compose each family's config (not just read its search file): a family's search file may
declare the data settings it needs (conv/MLP/highway search `data.fixed_length`), and its
constraints read bounds (`data.fixed_length`, `model.stride`) from that family's own config.

The first trials try every family once (`before_ask`), so even a small budget compares them all.

Selection and pruning stay honest across families: the objective `val_loss` (each model's own
loss: vrae's ELBO, BCE or MSE, on resampled or native-length series) is replaced by `recon_mse`
(validation MSE at each series' own length, deterministic latent), which means the same for every
family; pruning compares a trial's per-epoch val_loss only with trials of its own family.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

import optuna
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import ChoiceSweep
from hydra.errors import ConfigCompositionException, MissingConfigException
from omegaconf import DictConfig, OmegaConf, flag_override
from optuna.distributions import BaseDistribution, CategoricalDistribution

from ..errors import ConfigError
from . import spaces

log = logging.getLogger("latentsweep.sweeps")

FAMILY_PARAM = "model"  # the Optuna parameter holding a trial's family
COMPARABLE_OBJECTIVE = "recon_mse"  # what a family sweep selects on instead of each model's own val_loss
REGISTRY_NAME = "latentsweep-families"  # the overall winner, which `python analyze.py` takes by default


def family_choices(arguments: Iterable[str]) -> list[str] | None:
    """The families of a `model=choice(a,b)` (or `model=a,b`) sweep on the command line, else None."""
    arguments = list(arguments)
    for override in OverridesParser.create().parse_overrides(arguments):
        if override.get_key_element().lstrip("+~") != FAMILY_PARAM or not override.is_sweep_override():
            continue
        if not isinstance(override.value(), ChoiceSweep):
            raise ConfigError(f"{override.input_line}: a model family sweep takes a list — e.g. "
                              "'model=choice(rnn_ae,conv_ae,transformer_ae)'")
        families = list(dict.fromkeys(str(v) for v in override.sweep_string_iterator()))
        return families if len(families) > 1 else None
    return None


def without_family(arguments: Iterable[str]) -> list[str]:
    """`arguments` minus the `model=choice(...)` sweep (the families are sampled on their own)."""
    parser = OverridesParser.create()
    arguments = list(arguments)
    return [line for line, parsed in zip(arguments, parser.parse_overrides(arguments))
            if parsed.get_key_element().lstrip("+~") != FAMILY_PARAM]


def family_study_name(study_name: str, choices: Mapping[str, Any]) -> str:
    """`families-<data>[-task]` when the study name is the default `<model>-<data>[-task]`; a name the
    user chose stays."""
    model, data = choices.get("model"), choices.get("data")
    prefix = f"{model}-{data}"
    if model and data and study_name.startswith(prefix):
        return f"families-{data}{study_name[len(prefix):]}"
    return study_name


SAMPLER_TARGETS = ("optuna.samplers.*",)  # what upstream's OptunaSweeper may instantiate as a sampler


def conditional_sampler(sampler: Any, sampler_cfg: Any = None) -> Any:
    """TPE in its conditional mode (`multivariate` + `group`): each family's parameters are modelled
    jointly within that family's trials. Rebuilt from the user's own sampler config, so every other
    TPE setting (n_startup_trials, constant_liar, gamma, ...) is kept. Other samplers stay as they are."""
    if not isinstance(sampler, optuna.samplers.TPESampler) or getattr(sampler, "_group", False):
        return sampler
    from hydra.utils import instantiate

    settings = OmegaConf.to_container(sampler_cfg, resolve=True) if isinstance(sampler_cfg, DictConfig) \
        else dict(sampler_cfg or {"_target_": "optuna.samplers.TPESampler"})
    settings.update(multivariate=True, group=True)
    return instantiate(settings, _execution_whitelist_=SAMPLER_TARGETS)


class FamilyTrial:
    """A view of an Optuna trial in which one family's parameters have their plain names.

    Constraint functions (`custom_search_space`) read `trial.params["model.hidden_size"]` and call
    `trial._suggest("model.latent_dim", ...)`; through this view they sample `<family>/<key>`.
    """

    def __init__(self, trial: optuna.Trial, family: str) -> None:
        self._trial, self._prefix = trial, f"{family}/"

    def _strip(self, mapping: Mapping[str, Any]) -> dict[str, Any]:
        n = len(self._prefix)
        return {k[n:]: v for k, v in mapping.items() if k.startswith(self._prefix)}

    @property
    def params(self) -> dict[str, Any]:
        return self._strip(self._trial.params)

    @property
    def user_attrs(self) -> dict[str, Any]:
        return self._strip(self._trial.user_attrs)

    def _suggest(self, name: str, distribution: BaseDistribution) -> Any:
        return self._trial._suggest(self._prefix + name, distribution)

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> float:
        return self._trial.suggest_float(self._prefix + name, *args, **kwargs)

    def suggest_int(self, name: str, *args: Any, **kwargs: Any) -> int:
        return self._trial.suggest_int(self._prefix + name, *args, **kwargs)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        return self._trial.suggest_categorical(self._prefix + name, choices)

    def set_user_attr(self, key: str, value: Any) -> None:
        self._trial.set_user_attr(self._prefix + key, value)

    def __getattr__(self, name: str) -> Any:  # number, report, should_prune, ...
        return getattr(self._trial, name)


class FamilySearch:
    """All families' spaces; `configure(trial)` samples one family and its parameters."""

    def __init__(self, spaces_by_family: Mapping[str, spaces.TrialSpace]) -> None:
        self.spaces = dict(spaces_by_family)
        self.families = list(self.spaces)

    @classmethod
    def compose(cls, families: list[str], load_config, sweeper_params: list[str], arguments: list[str],
                custom_search_space: str | None = None) -> FamilySearch:
        """`load_config(overrides)` composes the trial config (the sweeper's config loader); each
        family's space comes from `spaces.build_space`, as a single-model sweep's does."""
        found = {}
        rest = without_family(arguments)
        plain = [line for line in rest if not OverridesParser.create().parse_override(line).is_sweep_override()]
        for family in families:
            try:
                config = load_config([*plain, f"{FAMILY_PARAM}={family}"])
            except (ConfigCompositionException, MissingConfigException) as exc:
                raise ConfigError(f"model={family}: {str(exc).splitlines()[0]} — use families from conf/model/ "
                                  "in 'model=choice(...)'") from exc
            space = spaces.build_space(config, sweeper_params, rest, custom_search_space)
            space.fixed.pop("objective", None)  # the sweeper passes the study's (comparable) objective
            if not space.distributions():
                raise ConfigError(f"model={family} has nothing to search (no conf/search/{family}.yaml "
                                  "and no sweep on the command line) — add one")
            found[family] = space
        return cls(found)

    def distributions(self) -> dict[str, BaseDistribution]:
        """Every family-qualified distribution (for the parent run's description of the space)."""
        out: dict[str, BaseDistribution] = {FAMILY_PARAM: CategoricalDistribution(self.families)}
        for family, space in self.spaces.items():
            out.update({f"{family}/{k}": v for k, v in space.distributions().items()})
        return out

    def before_ask(self, study: optuna.Study) -> None:
        """Until every family has a trial, the next trial is enqueued with the first untried family,
        so a small budget still compares every family (the sampler picks the rest)."""
        trials = study.get_trials(deepcopy=False)
        if any(t.state == optuna.trial.TrialState.WAITING for t in trials):
            return
        tried = {t.params.get(FAMILY_PARAM) for t in trials}
        untried = [f for f in self.families if f not in tried]
        if untried:
            study.enqueue_trial({FAMILY_PARAM: untried[0]})

    def configure(self, trial: optuna.Trial) -> list[str]:
        """Sample the family, then its own space (`TrialSpace.sample` through the family's view);
        the trial's overrides (Hydra syntax)."""
        family = trial.suggest_categorical(FAMILY_PARAM, self.families)
        self.spaces[family].sample(FamilyTrial(trial, family))
        return self.overrides_of(trial)

    def overrides_of(self, trial: optuna.Trial | optuna.trial.FrozenTrial) -> list[str]:
        """The overrides of a configured trial (also to continue a killed one): family, then its params."""
        family = trial.params[FAMILY_PARAM]
        return [f"{FAMILY_PARAM}={family}", *self.spaces[family].overrides(FamilyTrial(trial, family).params)]


def use_comparable_objective(config: DictConfig) -> Any:
    """Replace the default objective `val_loss` with `recon_mse` in the sweeper's config (logged);
    latent-quality objectives (silhouette, probe_accuracy) already compare across families."""
    objective = config.objective
    if objective == "val_loss":
        with flag_override(config, ["readonly", "struct"], False):
            config.objective = COMPARABLE_OBJECTIVE
        log.info("family sweep: selecting on objective=%s (validation MSE at each series' own length), which "
                 "compares across families; each model's own val_loss (vrae's ELBO, BCE) would not",
                 COMPARABLE_OBJECTIVE)
        return COMPARABLE_OBJECTIVE
    return objective


def family_of(trial: optuna.trial.FrozenTrial) -> str | None:
    return trial.params.get(FAMILY_PARAM)


def plain_params(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A trial's parameters without the family prefix (what its config overrides were)."""
    family = family_of(trial)
    prefix = f"{family}/"
    return {k[len(prefix):]: v for k, v in trial.params.items() if k.startswith(prefix)}
