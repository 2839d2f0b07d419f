"""`task.pretrained`: start a classifier's encoder from an autoencoder run.

The pre-trained run's `model/config.yaml` decides the model (type and sizes): the current
run's `model` config is replaced by it, so the saved classifier rebuilds with the right sizes.
Sizes the user set on purpose (values that differ from the model's defaults) must agree with
the pre-trained ones; otherwise the run fails with one line naming the keys.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from ..config.registry import all_schemas
from ..data.series import DataSpec
from ..errors import ConfigError, LatentSweepError

log = logging.getLogger(__name__)

@dataclass
class Pretrained:
    reference: str  # what the user wrote: a run id or "best"
    source: str  # the run id (or registry name@alias) the weights come from
    model_cfg: dict[str, Any]
    spec: dict[str, Any]
    data_cfg: dict[str, Any]
    state: dict[str, torch.Tensor]  # the autoencoder's weights

    def tags(self) -> dict[str, str]:
        return {"pretrained": self.source}


def model_choice_name(target: str) -> str | None:
    """'latentsweep.models.rnn_ae.RNNAutoencoder' -> 'rnn_ae' (the conf/model/ option)."""
    for name, schema in all_schemas().get("model", {}).items():
        if getattr(schema, "_target_", None) == target:
            return name
    return None


def load_pretrained(reference: str, model_target: str, tracking_uri: str | None) -> Pretrained:
    """Weights and configs of a run id, or of `latentsweep-<model>@best` for reference='best'."""
    from .. import tracking

    if reference == "best":
        name = f"latentsweep-{model_choice_name(model_target) or model_target.rsplit('.', 1)[-1]}"
        model, config = tracking.load_registered_model(name, "best", tracking_uri)
        source = f"{name}@best"
        try:  # the run behind the alias, for the tag
            version = tracking.registered_version(tracking_uri, name, "best")
            if version is not None:
                source = f"{source} (run {version.run_id})"
        except LatentSweepError as exc:  # only the tag loses its run id: the model is loaded
            log.warning("the run behind %s could not be looked up: %s", source, exc)
    else:
        model, config = tracking.load_model(str(reference), tracking_uri)
        source = str(reference)
    task = config.get("task") or {}
    if task.get("name", "reconstruct") != "reconstruct":  # a classifier run: take its encoder's model
        model = model.autoencoder
    return Pretrained(str(reference), source, dict(config["model"]), dict(config["spec"]),
                      dict(config.get("data") or {}), model.state_dict())


def _option_file(group: str, name: str) -> dict[str, Any]:
    """The values `conf/<group>/<name>.yaml` sets, read from the config sources of the running Hydra
    app (wherever its conf/ lives: a checkout, a package, a search-path plugin). Outside one, {}."""
    from hydra.core.global_hydra import GlobalHydra

    if not GlobalHydra.instance().is_initialized():
        return {}
    path = f"{group}/{name}"
    for source in GlobalHydra.instance().config_loader().get_sources():
        if source.is_config(path):
            body = source.load_config(path).config
            return {k: v for k, v in OmegaConf.to_container(body).items() if k != "defaults"}
    return {}


def _schema_defaults(model_cfg: DictConfig) -> dict[str, Any]:
    """The model's values without user overrides: its schema plus its conf/model/<name>.yaml."""
    name = model_choice_name(str(model_cfg._target_))
    if name is None:
        return {}
    defaults = OmegaConf.merge(OmegaConf.structured(all_schemas()["model"][name]), _option_file("model", name))
    return OmegaConf.to_container(defaults, resolve=True)


def _model_chosen_explicitly() -> bool:
    """True when the command line picked `model=...` (known only under `@hydra.main`)."""
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return False
    overrides = HydraConfig.get().overrides.task
    return any(o.split("=", 1)[0].lstrip("+~") == "model" for o in overrides)


def conflicting_keys(model_cfg: DictConfig, pretrained: dict[str, Any]) -> list[str]:
    """Keys the user set (away from the defaults) to values the pre-trained model does not have."""
    current = OmegaConf.to_container(model_cfg, resolve=True)
    defaults = _schema_defaults(model_cfg)
    conflicts = [f"model.{k}={v!r} (pretrained: {pretrained.get(k, '<absent>')!r})"
                 for k, v in current.items()
                 if k != "_target_" and k in defaults and v != defaults[k] and pretrained.get(k) != v]
    if current.get("_target_") != pretrained.get("_target_") and _model_chosen_explicitly():
        conflicts.insert(0, f"model={model_choice_name(current['_target_'])} "
                            f"(pretrained: {model_choice_name(pretrained['_target_'])})")
    return conflicts


def apply_to_config(cfg: DictConfig, pretrained: Pretrained) -> DictConfig:
    """A copy of `cfg` whose `model` is the pre-trained run's; ConfigError on contradicting sizes."""
    conflicts = conflicting_keys(cfg.model, pretrained.model_cfg)
    if conflicts:
        raise ConfigError(f"task.pretrained={pretrained.reference} fixes the model, but these overrides differ: "
                          f"{'; '.join(conflicts)} — drop them (sizes come from the pre-trained run)")
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.model = OmegaConf.create(pretrained.model_cfg)
    if pretrained.data_cfg.get("normalize") not in (None, cfg.data.get("normalize")):
        log.warning("the pre-trained run used data.normalize=%s, this run %s: its latents may not transfer",
                    pretrained.data_cfg.get("normalize"), cfg.data.get("normalize"))
    return cfg


def load_into(autoencoder: torch.nn.Module, pretrained: Pretrained, spec: DataSpec) -> None:
    """Copy the weights; data that does not fit the pre-trained encoder is a one-line ConfigError."""
    theirs = DataSpec.from_dict(pretrained.spec)
    if theirs.n_channels != spec.n_channels:
        raise ConfigError(f"task.pretrained={pretrained.reference} was trained on {theirs.n_channels}-channel "
                          f"series, these have {spec.n_channels} — use the data it was trained on")
    try:
        autoencoder.load_state_dict(pretrained.state)
    except RuntimeError as exc:
        detail = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), str(exc))
        raise ConfigError(f"task.pretrained={pretrained.reference} does not fit these data ({detail}) — use the "
                          f"data settings it was trained on (e.g. data.fixed_length={theirs.fixed_length})") from exc
