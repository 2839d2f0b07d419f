"""`task.pretrained`: start a classifier's encoder from an autoencoder run.

The pre-trained run's `model/config.yaml` decides the model (type and sizes): the current
run's `model` config is replaced by it, so the saved classifier rebuilds with the right sizes.
Sizes the user set on purpose (values that differ from the model's defaults) must agree with
the pre-trained ones; otherwise the run fails with one line naming the keys.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import yaml
from omegaconf import DictConfig, OmegaConf, open_dict

from ..data.series import DataSpec
from ..errors import ConfigError

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parents[3] / "conf"


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
    from ..config.registry import all_schemas

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
        except Exception:
            pass
    else:
        model, config = tracking.load_model(str(reference), tracking_uri)
        source = str(reference)
    task = config.get("task") or {}
    if task.get("name", "reconstruct") != "reconstruct":  # a classifier run: take its encoder's model
        model = model.autoencoder
    return Pretrained(str(reference), source, dict(config["model"]), dict(config["spec"]),
                      dict(config.get("data") or {}), model.state_dict())


def _schema_defaults(model_cfg: DictConfig) -> dict[str, Any]:
    """The model's values without user overrides: its schema plus conf/model/<name>.yaml."""
    name = model_choice_name(str(model_cfg._target_))
    if name is None:
        return {}
    from ..config.registry import all_schemas

    defaults = OmegaConf.structured(all_schemas()["model"][name])
    path = CONF_DIR / "model" / f"{name}.yaml"
    if path.exists():
        body = {k: v for k, v in (yaml.safe_load(path.read_text()) or {}).items() if k != "defaults"}
        defaults = OmegaConf.merge(defaults, body)
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
