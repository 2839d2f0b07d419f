"""Our schemas and config resolvers, put where Hydra finds them; called by the entry points.

`train.py` calls `register_configs()` before `@hydra.main` composes (tests and benchmarks do the
same). The sweeper's own schema is not here: Hydra's plugin scan registers it
(`hydra_plugins.latentsweep_sweeper`), like any plugin's.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from ..parallel import register_resolvers
from . import schema, sources, tasks, zoo


def all_schemas() -> dict[str, dict[str, type]]:
    """The core schemas plus those of the zoo, data-source and task modules (each owns its own)."""
    merged: dict[str, dict[str, type]] = {}
    for table in (schema.SCHEMAS, zoo.SCHEMAS, sources.SCHEMAS, tasks.SCHEMAS):
        for group, entries in table.items():
            merged.setdefault(group, {}).update(entries)
    return merged


def _task_suffix(task: str | None) -> str:
    return "" if task in (None, "", "reconstruct") else f"-{task}"


def register_configs() -> None:
    """Store every schema as `schema/<group>/<name>` (idempotent), and our config resolvers.

    Not in `<group>/` itself: Hydra would offer the schemas as options (`model=rnn_ae_schema`).
    Each `conf/<group>/<name>.yaml` extends its schema: `- /schema/<group>/<name>@_here_`."""
    # OmegaConf 2.4 renamed register_new_resolver to register_resolver
    _register_resolver = getattr(OmegaConf, "register_resolver", None) or OmegaConf.register_new_resolver
    if not OmegaConf.has_resolver("ls_task_suffix"):  # study names: rnn_ae-synthetic(-classify)
        _register_resolver("ls_task_suffix", _task_suffix)
    register_resolvers()  # ${ls_n_jobs:...}: trial processes for this machine (hydra/launcher=trials)

    cs = ConfigStore.instance()
    for group, entries in all_schemas().items():
        for name, node in entries.items():
            cs.store(group=f"schema/{group}", name=name, node=node, replace=True)
