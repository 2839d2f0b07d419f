"""`hydra/sweeper=optuna`'s work: set a study up, run the loop (`sweeps.loop`), end it (`sweeps.summary`).

Reused from upstream (hydra_plugins.hydra_optuna_sweeper): sampler instantiation, override parsing
(`create_params_from_overrides`), grid handling. Added here:

- one space builder for every sweep (`spaces.build_space`): `conf/search/<model>.yaml`,
  `hydra.sweeper.params` and the CLI (CLI wins), with its constraint;
- a study created with a pruner, in an RDB storage with heartbeats; each job gets the study, its
  trial id and the pruner as `++sweep.*` overrides and reports val_loss every epoch (`sweeps.trial`);
- `n_trials` is the study's target total: a rerun runs only what is missing (resume);
- each trial's config composed once per sweep and copied, not composed from the YAML files per
  trial (`sweeps.composing`);
- trials handed to the joblib launcher one per free worker, told as each ends (`sweeps.launching`),
  and to submitit (SLURM) one job per trial the same way (`sweeps.submitit_jobs`);
- a parent MLflow run per study with nested trial runs; at the end (`sweeps.summary`) figures and
  the best model registered; sweepers sharing a study share it, and the last one to finish ends it;
- `model=choice(a,b,...)`: a family sweep, one conditional space over the families (`sweeps.families`),
  ending with a leaderboard of the families' best trials (`sweeps.leaderboard`).
"""

from __future__ import annotations

import functools
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import optuna
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl
from hydra_plugins.hydra_optuna_sweeper.config import Direction
from omegaconf import OmegaConf, flag_override
from optuna.trial import TrialState

from ..cli import report_error
from ..errors import ConfigError, LatentSweepError
from ..objectives import directions as objective_directions
from ..objectives import objective_names
from ..parallel import GpuSlots, visible_gpus
from ..tracking.store import resolve_tracking_uri
from ..tracking.sweep_runs import find_trial_run, finish_sweep_run, sweep_parent_run
from . import composing, spaces
from . import families as fam
from .heartbeat import Heartbeat
from .loop import Plan, Scheduler, SweepState, quote
from .pruners import make_pruner
from .storage import ask_lock, make_storage, normalize_url, redact
from .summary import SweepSummary

log = logging.getLogger("latentsweep.sweeps")


def reseed(sampler: Any, seed: int) -> None:
    """Give the sampler (and its startup random sampler) a fresh RNG derived from `seed`.

    Called before each ask with (sweep seed, trial count): reproducible, yet a resumed study or a
    second worker on the same study does not replay the first one's parameter sets.
    """
    for obj in (sampler, getattr(sampler, "_random_sampler", None), getattr(sampler, "_independent_sampler", None)):
        rng = getattr(getattr(obj, "_rng", None), "rng", None)
        if rng is not None and hasattr(rng, "seed"):
            rng.seed(seed % 2**32)


class LatentSweepImpl(SweepSummary, OptunaSweeperImpl):
    """Set-up of one sweep and the launcher around its `Scheduler`; the end is `SweepSummary`."""

    def __init__(self, *args: Any, pruner: Any = None, heartbeat_interval: int | None = None,
                 grace_period: int | None = None, mlflow: bool = True, register_best: bool = True,
                 min_trials_for_failure_rate: int = 4, sampler_seed: int | None = None,
                 custom_search_space: str | None = None, max_retries: int = 2, sampler_cfg: Any = None) -> None:
        super().__init__(*args)
        self.custom_search_space = custom_search_space
        self.sampler_cfg = sampler_cfg  # the user's sampler settings: a family sweep rebuilds TPE from them
        self.pruner_cfg = dict(pruner or {})
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.use_mlflow = mlflow
        self.register_best = register_best
        self.min_trials_for_failure_rate = min_trials_for_failure_rate
        self.sampler_seed = sampler_seed
        self.max_retries = max_retries
        self.family_search: fam.FamilySearch | None = None  # set when model=choice(...) sweeps families
        self.space: spaces.TrialSpace | None = None  # a single-model sweep's space

    # --- set-up ------------------------------------------------------------------------------------
    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        super().setup(hydra_context=hydra_context, task_function=task_function, config=config)
        composing.install(self.launcher)  # each trial's config: composed once per sweep, not per trial

    def _directions(self) -> list[str]:
        """The objective decides (one direction per objective); a contradicting user value is an error."""
        objective = self.config.objective
        wanted = objective_directions(objective)
        given = self.direction
        if given is None:
            return wanted
        given = list(given) if isinstance(given, Sequence) and not isinstance(given, str) else [given]
        given = [g.name if isinstance(g, Direction) else str(g) for g in given]
        if given != wanted:
            raise ConfigError(f"hydra.sweeper.direction={given} contradicts objective={objective_names(objective)} "
                              f"({wanted}) — drop hydra.sweeper.direction (the objective decides)")
        return wanted

    def _family_setup(self, arguments: list[str]) -> None:
        """`model=choice(...)`: sample families and their own spaces (`sweeps.families`), select on a
        comparable objective, prune within families, name the study (and its folder) `families-<data>`."""
        families = fam.family_choices(arguments)
        if not families:
            return
        self._process_searchspace_config()
        loader = self.hydra_context.config_loader
        self.family_search = fam.FamilySearch.compose(
            families, lambda overrides: loader.load_sweep_config(self.config, overrides),
            self._parse_sweeper_params_config(), arguments, self.custom_search_space)
        fam.use_comparable_objective(self.config)
        choices = OmegaConf.select(self.config, "hydra.runtime.choices", default={}) or {}
        default_name = str(self.study_name)
        self.study_name = fam.family_study_name(default_name, choices)
        self._rename_sweep_dir(f"{choices.get('model')}-{choices.get('data')}", str(self.study_name))
        self.sampler = fam.conditional_sampler(self.sampler, self.sampler_cfg)
        self.pruner_cfg["per_family"] = True
        log.info("family sweep over %s: study %s, objective %s, outputs in %s", ", ".join(families),
                 self.study_name, self.config.objective, self.config.hydra.sweep.dir)

    def _rename_sweep_dir(self, default_part: str, study_name: str) -> None:
        """The default sweep folder is named after the primary config's model (`sweeps/rnn_ae-<data>`):
        a family sweep writes under its own study's name instead. A folder the user chose stays."""
        folder = Path(str(self.config.hydra.sweep.dir))
        if default_part not in folder.parts or default_part == study_name:
            return
        parts = [study_name if part == default_part else part for part in folder.parts]
        with flag_override(self.config.hydra.sweep, "readonly", False):  # Hydra's node is read-only
            self.config.hydra.sweep.dir = str(Path(*parts))
        self.sweep_dir = self.config.hydra.sweep.dir

    def _build_space(self, arguments: list[str]) -> dict[str, Any]:
        """The trial space (one builder for every sweep); its distributions, to describe the study."""
        if self.family_search is not None:  # each family's space is sampled in `FamilySearch.configure`
            return self.family_search.distributions()
        self._process_searchspace_config()
        self.space = spaces.build_space(self.config, self._parse_sweeper_params_config(), arguments,
                                        self.custom_search_space)
        if not self.space.distributions():
            raise ConfigError("nothing to search: no conf/search/<model>.yaml and no sweep on the command "
                              "line — add one, e.g. 'model.latent_dim=choice(4,8,16)'")
        if isinstance(self.sampler, functools.partial) and self.sampler.func == optuna.samplers.GridSampler:
            self.space = self.space.without_constraint()  # the grid holds every key
            grid = {name: self._to_grid_sampler_choices(d) for name, d in self.space.free.items()}
            self.sampler = self.sampler(grid)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in grid.values()))
            log.info("grid sampler: n_trials capped at the grid size, %d", self.n_trials)
        return self.space.distributions()

    def _configure(self, trial: optuna.Trial) -> list[str]:
        if self.family_search is not None:
            return self.family_search.configure(trial)
        return self.space.overrides(self.space.sample(trial))

    def _overrides_of(self, frozen: optuna.trial.FrozenTrial) -> list[str]:
        if self.family_search is not None:
            return self.family_search.overrides_of(frozen)
        return self.space.overrides(frozen.params)

    def _open_study(self, url: str, storage: Any, directions: list[str]) -> optuna.Study:
        try:
            with ask_lock(url):  # workers starting together on a fresh storage create one study
                study = optuna.create_study(study_name=self.study_name, storage=storage, sampler=self.sampler,
                                            pruner=make_pruner(self.pruner_cfg), directions=directions,
                                            load_if_exists=True)
        except optuna.exceptions.StorageInternalError as exc:
            cause = str(exc.__cause__ or exc).strip().splitlines()[0]
            raise ConfigError(f"cannot write the Optuna storage {redact(url)} ({cause}) — is it read-only? "
                              "fix its permissions or set hydra.sweeper.storage") from exc
        if [d.name.lower() for d in study.directions] != directions:
            raise ConfigError(f"study {study.study_name} in {redact(url)} was created to "
                              f"{[d.name.lower() for d in study.directions]}, objective {self.config.objective} "
                              f"wants {directions} — use another hydra.sweeper.study_name")
        return study

    def _parallelism(self) -> int:
        """Trials sharing this machine's cores (a SLURM job has its own allocation)."""
        own_node = type(self.launcher).__name__ in ("BasicLauncher", "SlurmLauncher")
        return 1 if own_node else max(1, self.n_jobs)

    def _model_name(self) -> str:
        if self.family_search is not None:
            return "families"  # registry: latentsweep-families@best is the overall winner
        choices = OmegaConf.select(self.config, "hydra.runtime.choices", default={}) or {}
        return str(choices.get("model") or self.config.model._target_.rsplit(".", 1)[-1])

    def _registry_name(self) -> str:
        """`latentsweep-<model>` for autoencoders; other tasks get their own entry (`-classify`), so a
        classifier never takes the `best` alias that `task.pretrained=best` and analyze.py expect."""
        choices = OmegaConf.select(self.config, "hydra.runtime.choices", default={}) or {}
        task = choices.get("task") or "reconstruct"
        return f"latentsweep-{self._model_name()}" + ("" if task == "reconstruct" else f"-{task}")

    def _parent_run(self, study: optuna.Study, url: str, uri: str, direction: str, dists: dict) -> str:
        fixed = self.space.fixed if self.space is not None else {}
        space_text = "\n".join([f"{k}: {v}" for k, v in dists.items()]
                               + [f"{k}: {v} (fixed)" for k, v in fixed.items()])
        study = optuna.load_study(study_name=study.study_name, storage=study._storage)  # fresh user attrs
        parent = sweep_parent_run(
            uri, self.config.tracking.experiment, study.study_name, redact(url),
            study.user_attrs.get("mlflow_parent_run_id"),
            params={"study_name": study.study_name, "storage": redact(url), "direction": direction,
                    "objective": self.config.objective},
            tags={"sampler": type(self.sampler).__name__, "pruner": json.dumps(self.pruner_cfg),
                  "n_trials_target": self.n_trials, "search_space": space_text[:5000],
                  "model": self._model_name()})
        if study.user_attrs.get("mlflow_parent_run_id") != parent:
            study.set_user_attr("mlflow_parent_run_id", parent)
        return parent

    def _per_job(self, url: str, name: str, parent: str | None, uri: str | None) -> list[str]:
        """Overrides every job gets: where its study is, how it is pruned, where it is tracked."""
        cfg = self.config
        line = [f"++sweep.storage={quote(url)}", f"++sweep.study_name={quote(name)}",
                f"++sweep.pruner={quote(json.dumps(self.pruner_cfg))}",
                f"++sweep.heartbeat_interval={self.heartbeat_interval or 'null'}"]
        if parent:
            line += [f"++extra_tags.parent_run_id={quote(parent)}", f"++extra_tags.optuna_study={quote(name)}",
                     f"++tracking.uri={quote(uri)}"]
        if self.family_search is not None:
            line.append(f"objective={quote(cfg.objective)}" if isinstance(cfg.objective, str)
                        else f"objective=[{','.join(map(str, cfg.objective))}]")
            line.append(f"hydra.sweep.dir={quote(cfg.hydra.sweep.dir)}")  # the study's own folder
        # trials at once on this machine: each trial's torch threads follow latentsweep.threads
        return line + [f"++sweep.parallel_trials={self._parallelism()}"]

    # --- the sweep ---------------------------------------------------------------------------------
    def sweep(self, arguments: list[str]) -> None:
        with warnings.catch_warnings():
            # heartbeats are "experimental" and "meant for Study.optimize": we drive them ourselves
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            try:
                self._sweep(arguments)
            except LatentSweepError as exc:  # a sweep that cannot start: one line, like a single run
                if os.environ.get("HYDRA_FULL_ERROR") == "1":
                    raise
                report_error(exc, log)
                sys.exit(1)

    def _sweep(self, arguments: list[str]) -> None:
        """Set up the study, its parent run and the scheduler's plan, then run the loop."""
        cfg = self.config
        self._family_setup(arguments)
        directions = self._directions()
        direction = directions[0] if len(directions) == 1 else "+".join(directions)
        if not self.storage:
            raise ConfigError("hydra.sweeper.storage is empty — jobs need a shared study: set "
                              "hydra.sweeper.storage=sqlite:///sweeps/optuna.db (or postgresql://...)")
        url = normalize_url(self.storage)
        dists = self._build_space(arguments)
        from . import launching

        if launching.runs_as_ready(self.launcher):  # workers import torch & co. while the study opens
            launching.warm_workers(self.launcher)
        storage = make_storage(url, self.heartbeat_interval, self.grace_period)
        study = self._open_study(url, storage, directions)
        tracking_on = self.use_mlflow and cfg.tracking.enabled
        uri = resolve_tracking_uri(cfg.tracking.get("uri")) if tracking_on else None
        parent = None
        if tracking_on:
            with ask_lock(url):  # workers starting together share one parent run
                parent = self._parent_run(study, url, uri, direction, dists)
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        log.info("study %s in %s: %d trials so far (%d running elsewhere), target n_trials=%d | sampler %s, "
                 "pruner %s, %s", study.study_name, redact(url), len(study.get_trials(deepcopy=False)), running,
                 self.n_trials, type(self.sampler).__name__, self.pruner_cfg.get("name"), direction)
        keep_checkpoints = OmegaConf.to_container(cfg.trainer, resolve=False).get("checkpoint_dir") is not None
        gpus = visible_gpus() if str(cfg.trainer.get("device", "auto")) == "auto" else 0
        plan = Plan(study=study, url=url, n_trials=self.n_trials, max_retries=self.max_retries,
                    max_failure_rate=self.max_failure_rate, min_trials_for_failure_rate=self.min_trials_for_failure_rate,
                    ask=self._ask, configure=self._configure, overrides_of=self._overrides_of,
                    per_job=self._per_job(url, study.study_name, parent, uri),
                    checkpoint_root=str(cfg.hydra.sweep.dir) if keep_checkpoints else None,
                    # several GPUs: each trial trains on the least-loaded one (one GPU: `auto` picks it;
                    # a SLURM job has its own GPUs)
                    slots=GpuSlots(gpus) if gpus > 1 and self._parallelism() > 1 else None,
                    end_first_attempt=functools.partial(self._end_first_attempt_run, uri, parent) if parent
                    else (lambda number: None),
                    find_run=functools.partial(find_trial_run, uri, parent) if parent else None)
        self._run(Scheduler(plan, SweepState()), storage, url, uri, parent)

    def _run(self, scheduler: Scheduler, storage: Any, url: str, uri: str | None, parent: str | None) -> None:
        """Launch the scheduler's jobs and record their results; whatever happens, release the
        trials still held and end the sweep (`_finish`)."""
        from . import launching, submitit_jobs

        state, study = scheduler.state, scheduler.plan.study
        if submitit_jobs.is_submitit(self.launcher):  # SLURM: one job per trial, as slots free up
            results = submitit_jobs.launch(self.launcher, scheduler.jobs(), self.n_jobs)
        elif launching.runs_as_ready(self.launcher):
            results = launching.launch_as_ready(self.launcher, scheduler.jobs())
        else:
            results = launching.launch_in_batches(self.launcher, scheduler.jobs(), self.n_jobs)
        try:
            # heartbeats from the moment a trial is asked or claimed, until it is told
            with Heartbeat(storage, state.beating, self.heartbeat_interval, name="optuna-sweeper-heartbeat"):
                for trial_id, ret in results:
                    scheduler.on_result(trial_id, ret)
                    if state.fatal is not None:
                        results.close()  # at once: the trials still running are stopped and failed
                        break
            if state.fatal is not None:
                state.status = "FAILED"
                raise state.fatal
            if state.status == "FAILED":
                raise scheduler.failure_rate_error()
        except BaseException:
            state.status = "FAILED" if state.status == "FAILED" else "KILLED"
            raise
        finally:  # Ctrl-C, SystemExit, a broken launcher or config: no trial of ours stays RUNNING
            scheduler.release()
            self._finish(study, url, uri, parent, state.done, state.status)

    def _ask(self, study: optuna.Study) -> optuna.Trial:
        if self.sampler_seed is not None:
            reseed(self.sampler, self.sampler_seed * 1_000_003 + len(study.get_trials(deepcopy=False)))
        if self.family_search is not None:
            self.family_search.before_ask(study)  # every family tried once first
        return study.ask()

    @staticmethod
    def _end_first_attempt_run(uri: str | None, parent: str, number: int) -> None:
        """A trial killed before its first checkpoint starts again in a new MLflow run (nothing
        names the old one to continue): end the old one KILLED, so it does not stay RUNNING."""
        try:
            old = find_trial_run(uri, parent, number)
            if old:
                finish_sweep_run(uri, old, metrics={}, tags={"killed": "before its first checkpoint"},
                                 status="KILLED")
        except Exception as exc:  # noqa: BLE001 - logged: the store is flaky, the trial runs anyway
            log.warning("could not end trial %d's first MLflow run: %s: %s", number, type(exc).__name__, exc)
