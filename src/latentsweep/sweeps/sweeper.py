"""`hydra/sweeper=optuna`: the upstream Optuna sweeper plus pruning, resume, heartbeats and MLflow.

Reused from upstream (hydra_plugins.hydra_optuna_sweeper): sampler instantiation, override parsing
(`create_params_from_overrides`), `_configure_trials` (suggest + fixed params + custom_search_space),
grid handling. Added here:

- the search space of `conf/search/<model>.yaml` under `hydra.sweeper.params` and the CLI (CLI wins);
- a study created with a pruner, in an RDB storage with heartbeats; each job gets the study, its
  trial id and the pruner as `++sweep.*` overrides and reports val_loss every epoch (`sweeps.trial`);
- job results mapped to COMPLETE / PRUNED / FAIL (reason kept as the trial's `fail_reason`);
- `n_trials` is the study's target total: a rerun runs only what is missing (resume);
- trials handed to the joblib launcher one per free worker, told as each ends (`sweeps.launching`),
  and to submitit (SLURM) one job per trial the same way (`sweeps.submitit_jobs`);
- a parent MLflow run per study with nested trial runs; at the end (`sweeps.summary`) figures and
  the best model registered; sweepers sharing a study share it, and the last one to finish ends it;
- `model=choice(a,b,...)`: a family sweep, one conditional space over the families (`sweeps.families`),
  ending with a leaderboard of the families' best trials (`sweeps.leaderboard`).
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json
import logging
import math
import os
import sys
import warnings
from collections.abc import Sequence
from typing import Any

import optuna
from hydra.core.utils import JobReturn, JobStatus
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from hydra_plugins.hydra_optuna_sweeper.config import Direction
from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
from omegaconf import DictConfig, OmegaConf
from optuna.trial import TrialState

from ..cli import report_error
from ..errors import ConfigError, LatentSweepError
from ..objectives import directions as objective_directions
from ..objectives import objective_names
from ..parallel import GpuSlots, visible_gpus
from ..tracking.store import resolve_tracking_uri
from ..tracking.sweep_runs import find_trial_run, finish_sweep_run, sweep_parent_run
from . import continuation, failures, launching, spaces, submitit_jobs
from . import families as fam
from .heartbeat import Heartbeat
from .pruners import make_pruner
from .storage import ask_lock, make_storage, normalize_url, redact
from .summary import SweepSummary
from .summary import parent_run_status as parent_run_status  # kept importable here for callers

log = logging.getLogger("latentsweep.sweeps")


class SweepError(LatentSweepError):
    """The sweep stopped: too many trials failed, or a failure every trial will hit."""


def _quote(value: Any) -> str:
    """A Hydra override value that stays one string whatever it contains (URLs, JSON)."""
    text = str(value).replace("\\", "\\\\").replace("'", "\\'")
    return f"'{text}'"


def _reseed(sampler: Any, seed: int) -> None:
    """Give the sampler (and its startup random sampler) a fresh RNG derived from `seed`.

    Called before each ask with (sweep seed, trial count): reproducible, yet a resumed study or a
    second worker on the same study does not replay the first one's parameter sets.
    """
    for obj in (sampler, getattr(sampler, "_random_sampler", None), getattr(sampler, "_independent_sampler", None)):
        rng = getattr(getattr(obj, "_rng", None), "rng", None)
        if rng is not None and hasattr(rng, "seed"):
            rng.seed(seed % 2**32)


def classify(ret: JobReturn, n_objectives: int = 1) -> tuple[TrialState, Any, str | None]:
    """A job's result as (Optuna state, value (a list for several objectives), failure reason)."""
    if ret.status == JobStatus.COMPLETED:
        raw = ret._return_value
        try:
            values = [float(v) for v in raw] if isinstance(raw, (list, tuple)) else [float(raw)]
        except (TypeError, ValueError):
            return TrialState.FAIL, None, f"return value {raw!r} is not a number"
        if len(values) != n_objectives:
            return TrialState.FAIL, None, f"{len(values)} values returned for {n_objectives} objectives"
        if not all(math.isfinite(v) for v in values):
            return TrialState.FAIL, None, f"objective is {values if n_objectives > 1 else values[0]}"
        return TrialState.COMPLETE, values if n_objectives > 1 else values[0], None
    error = ret._return_value
    name = type(error).__name__
    if isinstance(error, optuna.TrialPruned) or name == "TrialPruned" or "TrialPruned" in str(error)[:80]:
        return TrialState.PRUNED, None, None
    first = str(error).splitlines()[0] if str(error) else ""
    return TrialState.FAIL, None, f"{name}: {first}"[:1000]


class LatentSweepImpl(SweepSummary, OptunaSweeperImpl):
    """The ask/launch/tell loop; the end of a sweep is `SweepSummary` (sweeps/summary.py)."""

    def __init__(self, *args: Any, pruner: Any = None, heartbeat_interval: int | None = None,
                 grace_period: int | None = None, mlflow: bool = True, register_best: bool = True,
                 min_trials_for_failure_rate: int = 4, sampler_seed: int | None = None,
                 custom_search_space: str | None = None, max_retries: int = 2) -> None:
        super().__init__(*args)
        self.custom_search_space = custom_search_space
        self.pruner_cfg = dict(pruner or {})
        self.heartbeat_interval = heartbeat_interval
        self.grace_period = grace_period
        self.use_mlflow = mlflow
        self.register_best = register_best
        self.min_trials_for_failure_rate = min_trials_for_failure_rate
        self.sampler_seed = sampler_seed
        self.max_retries = max_retries
        self.family_search: fam.FamilySearch | None = None  # set when model=choice(...) sweeps families

    # --- set-up helpers -------------------------------------------------------------------------
    def _directions(self) -> list[str]:
        """The objective decides (one direction per objective); a contradicting user value is an error."""
        objective = self.config.get("objective", "val_loss")
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
        comparable objective, prune within families, name the study `families-<data>`."""
        families = fam.family_choices(arguments)
        if not families:
            return
        self._process_searchspace_config()
        loader = self.hydra_context.config_loader
        self.family_search = fam.FamilySearch.compose(
            families, lambda overrides: loader.load_sweep_config(self.config, overrides),
            self._parse_sweeper_params_config(), arguments)
        fam.use_comparable_objective(self.config)
        choices = OmegaConf.select(self.config, "hydra.runtime.choices", default={}) or {}
        self.study_name = fam.family_study_name(str(self.study_name), choices)
        self.sampler = fam.conditional_sampler(self.sampler)
        self.pruner_cfg["per_family"] = True
        log.info("family sweep over %s: study %s, objective %s", ", ".join(families), self.study_name,
                 self.config.get("objective"))

    def _configure_trials(self, trials, search_space_distributions, fixed_params, fixed_overrides):
        if self.family_search is not None:
            return [self.family_search.configure(trial) for trial in trials]
        return super()._configure_trials(trials, search_space_distributions, fixed_params, fixed_overrides)

    def _search_space(self, arguments: list[str]):
        """(distributions, fixed params, fixed overrides, deferred names, extender)."""
        if self.family_search is not None:  # each family's space is sampled in _configure_trials
            return self.family_search.distributions(), {}, [], [], None
        file_lines, file_custom = spaces.search_file(self.config.get("search"))
        self._process_searchspace_config()
        lines = spaces.merge_overrides(file_lines, self._parse_sweeper_params_config(), arguments)
        dists, fixed, fixed_overrides = create_params_from_overrides(lines)
        for name in fixed:
            dists.pop(name, None)
        path = self.custom_search_space or file_custom  # hydra.sweeper.custom_search_space wins
        extender = spaces.load_constraint(path) if path else None  # under the execution whitelist
        samples = getattr(getattr(extender, "func", extender), "samples", ())
        deferred = [name for name in samples if name in dists]
        if samples:
            extender = functools.partial(extender, space=dict(dists))
        return dists, fixed, fixed_overrides, deferred, extender

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

    def _parent_run(self, study: optuna.Study, url: str, uri: str, direction: str, dists: dict,
                    fixed: dict) -> str:
        space_text = "\n".join([f"{k}: {v}" for k, v in dists.items()]
                               + [f"{k}: {v} (fixed)" for k, v in fixed.items()])
        study = optuna.load_study(study_name=study.study_name, storage=study._storage)  # fresh user attrs
        parent = sweep_parent_run(
            uri, self.config.tracking.experiment, study.study_name, redact(url),
            study.user_attrs.get("mlflow_parent_run_id"),
            params={"study_name": study.study_name, "storage": redact(url), "direction": direction,
                    "objective": self.config.get("objective", "val_loss")},
            tags={"sampler": type(self.sampler).__name__, "pruner": json.dumps(self.pruner_cfg),
                  "n_trials_target": self.n_trials, "search_space": space_text[:5000],
                  "model": self._model_name()})
        if study.user_attrs.get("mlflow_parent_run_id") != parent:
            study.set_user_attr("mlflow_parent_run_id", parent)
        return parent

    # --- the sweep ------------------------------------------------------------------------------
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
        cfg = self.config
        self._family_setup(arguments)
        directions = self._directions()
        direction = directions[0] if len(directions) == 1 else "+".join(directions)
        if not self.storage:
            raise ConfigError("hydra.sweeper.storage is empty — jobs need a shared study: set "
                              "hydra.sweeper.storage=sqlite:///sweeps/optuna.db (or postgresql://...)")
        url = normalize_url(self.storage)
        dists, fixed, fixed_overrides, deferred, extender = self._search_space(arguments)
        if not dists and not deferred:
            raise ConfigError("nothing to search: no conf/search/<model>.yaml and no sweep on the command "
                              "line — add one, e.g. 'model.latent_dim=choice(4,8,16)'")

        if isinstance(self.sampler, functools.partial) and self.sampler.func == optuna.samplers.GridSampler:
            if self.family_search is not None:
                raise ConfigError("the grid sampler cannot sweep model families (each has its own space) — "
                                  "use the default TPE sampler, or one model= per grid sweep")
            grid = {name: self._to_grid_sampler_choices(d) for name, d in dists.items()}
            self.sampler = self.sampler(grid)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in grid.values()))
            if deferred or getattr(getattr(extender, "func", extender), "samples", ()):
                extender, deferred = None, []  # the grid holds every key; constraints cannot apply
            log.info("grid sampler: n_trials capped at the grid size, %d", self.n_trials)
        self.custom_search_space_extender = extender
        free = {k: v for k, v in dists.items() if k not in deferred}

        storage = make_storage(url, self.heartbeat_interval, self.grace_period)
        pruner = make_pruner(self.pruner_cfg)
        try:
            with ask_lock(url):  # workers starting together on a fresh storage create one study
                study = optuna.create_study(study_name=self.study_name, storage=storage, sampler=self.sampler,
                                            pruner=pruner, directions=directions, load_if_exists=True)
        except optuna.exceptions.StorageInternalError as exc:
            cause = str(exc.__cause__ or exc).strip().splitlines()[0]
            raise ConfigError(f"cannot write the Optuna storage {redact(url)} ({cause}) — is it read-only? "
                              "fix its permissions or set hydra.sweeper.storage") from exc
        if [d.name.lower() for d in study.directions] != directions:
            raise ConfigError(f"study {study.study_name} in {redact(url)} was created to "
                              f"{[d.name.lower() for d in study.directions]}, objective {cfg.get('objective')} "
                              f"wants {directions} — use another hydra.sweeper.study_name")
        with ask_lock(url):  # trials of a killed sweep: continued from their checkpoints (or failed)
            to_continue = collections.deque(continuation.take_over_stale(study, self.max_retries))
        name = study.study_name

        tracking_on = self.use_mlflow and cfg.tracking.get("enabled", True)
        uri = resolve_tracking_uri(cfg.tracking.get("uri")) if tracking_on else None
        parent = None
        if tracking_on:
            with ask_lock(url):  # workers starting together share one parent run
                parent = self._parent_run(study, url, uri, direction, dists, fixed)
        running = len(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        log.info("study %s in %s: %d trials so far (%d running elsewhere), target n_trials=%d | sampler %s, "
                 "pruner %s, %s", name, redact(url), len(study.get_trials(deepcopy=False)), running,
                 self.n_trials, type(self.sampler).__name__, self.pruner_cfg.get("name"), direction)

        per_job = [f"++sweep.storage={_quote(url)}", f"++sweep.study_name={_quote(name)}",
                   f"++sweep.pruner={_quote(json.dumps(self.pruner_cfg))}",
                   f"++sweep.heartbeat_interval={self.heartbeat_interval or 'null'}"]
        if parent:
            per_job += [f"++extra_tags.parent_run_id={_quote(parent)}", f"++extra_tags.optuna_study={_quote(name)}",
                        f"++tracking.uri={_quote(uri)}"]
        if self.family_search is not None:
            per_job.append(f"objective={_quote(cfg.objective)}" if isinstance(cfg.objective, str)
                           else f"objective=[{','.join(map(str, cfg.objective))}]")
        # trials at once on this machine: each trial's torch threads follow latentsweep.threads
        per_job.append(f"++sweep.parallel_trials={self._parallelism()}")

        keep_checkpoints = OmegaConf.to_container(cfg.trainer, resolve=False).get("checkpoint_dir") is not None
        done: list[TrialState] = []
        first_failures: list[str | None] = []  # signature of each of this run's first trials to end
        infeasible = failures.InfeasibleStreak()
        fatal: list[SweepError] = []  # a failure every trial would hit: stop at once
        in_flight: dict[int, optuna.Trial] = {}  # trial id -> trial, asked and not yet told: none may
        # stay RUNNING when this sweeper stops
        beating: list[int] = []  # the launched ids, beaten live (a list: the heartbeat thread copies it)
        status, stop = "FINISHED", False  # stop: ask no more trials (the failure rate was exceeded)
        gpus = visible_gpus() if str(cfg.trainer.get("device", "auto")) == "auto" else 0
        # several GPUs: each trial trains on the least-loaded one, i.e. the GPU of the trial that just
        # ended (one GPU: `auto` already picks it; a SLURM job has its own GPUs)
        slots = GpuSlots(gpus) if gpus > 1 and self._parallelism() > 1 else None

        def trial_line(line: Sequence[str], trial_id: int, number: int) -> list[str]:
            return (list(line) + per_job + [f"++sweep.trial_id={trial_id}", f"++sweep.trial_number={number}"]
                    + ([f"++extra_tags.optuna_trial={_quote(number)}"] if parent else []))

        def job(trial_id: int, line: list[str]):
            idx, self.job_idx = self.job_idx, self.job_idx + 1
            placement = [f"++trainer.device={slots.take(trial_id)}"] if slots else []
            if trial_id not in beating:
                beating.append(trial_id)
            return trial_id, idx, line + placement

        def jobs():
            """The next trial as a job, asked only when the launcher can take it; a killed trial
            to continue comes first."""
            while not stop:
                if to_continue:
                    frozen = to_continue.popleft()
                    in_flight[frozen._trial_id] = optuna.Trial(study, frozen._trial_id)
                    if parent and continuation.last_epoch(frozen) is None:
                        self._end_first_attempt_run(uri, parent, frozen.number)
                    log.info("continuing trial %d (attempt %d) from %s", frozen.number,
                             frozen.user_attrs.get(continuation.CONTINUED, 0) + 1,
                             f"epoch {continuation.last_epoch(frozen)}" if continuation.last_epoch(frozen)
                             is not None else "scratch (no checkpoint yet)")
                    line = (self.family_search.overrides_of(frozen) if self.family_search is not None
                            else [f"{k}={v}" for k, v in {**frozen.params, **fixed}.items()] + list(fixed_overrides))
                    yield job(frozen._trial_id, trial_line(line, frozen._trial_id, frozen.number)
                              + continuation.resume_overrides(frozen))
                    continue
                trial = line = None
                with ask_lock(url):  # count, then ask: sweepers sharing the study never overshoot n_trials
                    # trials of a sweep killed meanwhile stop counting as running: continue or fail them
                    to_continue.extend(continuation.take_over_stale(study, self.max_retries))
                    full_up = self.n_trials - len(study.get_trials(deepcopy=False)) <= 0
                    if not to_continue and not full_up:
                        trial = self._ask(study, in_flight)
                        try:
                            (line,) = self._configure_trials([trial], free, fixed, fixed_overrides)
                        except spaces.Infeasible as exc:
                            self._tell_infeasible(study, in_flight.pop(trial._trial_id), exc, done, infeasible)
                            if infeasible.hopeless(self.n_trials):
                                fatal.append(SweepError(
                                    f"every sampled point broke the search space's constraint ({infeasible.count} "
                                    f"in a row, last: {exc}) — widen the space or loosen the constraint"))
                                return
                            continue
                if to_continue:
                    continue
                if full_up:
                    if not in_flight:
                        return
                    yield launching.NOTHING_NOW  # one still running may be killed and continue: wait
                    continue
                infeasible.feasible()
                log.info("launching trial %d: %s", trial.number, " ".join(line))
                checkpoint = continuation.checkpoint_dir(cfg.hydra.sweep.dir, trial.number) \
                    if keep_checkpoints else None
                continuation.record_launch(trial, checkpoint)
                yield job(trial._trial_id, trial_line(line, trial._trial_id, trial.number)
                          + ([f"++trainer.checkpoint_dir={_quote(checkpoint)}"] if checkpoint else []))

        if submitit_jobs.is_submitit(self.launcher):  # SLURM: one job per trial, as slots free up
            results = submitit_jobs.launch(self.launcher, jobs(), self.n_jobs)
        elif launching.runs_as_ready(self.launcher):
            results = launching.launch_as_ready(self.launcher, jobs())
        else:
            results = launching.launch_in_batches(self.launcher, jobs(), self.n_jobs)
        try:
            with Heartbeat(storage, beating, self.heartbeat_interval, name="optuna-sweeper-heartbeat"):
                for trial_id, ret in results:
                    trial = in_flight.pop(trial_id)
                    if slots:
                        slots.release(trial_id)
                    if self._continues(study, trial, ret):
                        to_continue.append(continuation.count_continuation(study, trial_id))
                        continue  # still RUNNING, still beaten: it runs again from its checkpoint
                    state = self._tell(study, trial, ret, uri, parent)
                    done.append(state)
                    beating.remove(trial_id)
                    error = self._fatal(study, trial, ret, state, first_failures)
                    if error:
                        fatal.append(error)
                    if fatal:
                        status, stop = "FAILED", True
                        results.close()  # at once: the trials still running are stopped and failed
                        break
                    n_fail = done.count(TrialState.FAIL)
                    if len(done) >= self.min_trials_for_failure_rate and n_fail / len(done) > self.max_failure_rate:
                        status, stop = "FAILED", True  # the jobs in flight finish
            if fatal:
                status = "FAILED"
                raise fatal[0]
            if status == "FAILED":
                n_fail = done.count(TrialState.FAIL)
                reasons = [t.user_attrs.get("fail_reason") for t in study.get_trials(deepcopy=False)
                           if t.state == TrialState.FAIL and t.user_attrs.get("fail_reason")]
                raise SweepError(f"{n_fail} of {len(done)} trials failed (last: {reasons[-1] if reasons else '?'})"
                                 f" — fix the search space or raise hydra.sweeper.max_failure_rate="
                                 f"{self.max_failure_rate}")
        except BaseException:
            status = "FAILED" if status == "FAILED" else "KILLED"
            raise
        finally:  # Ctrl-C, SystemExit, a broken launcher or config: no trial of ours stays RUNNING
            for trial in list(in_flight.values()):
                self._fail(study, trial, "sweep interrupted")
            for frozen in to_continue:  # killed trials this sweeper did not get to continue
                self._fail(study, optuna.Trial(study, frozen._trial_id), "sweep stopped before it could continue")
            self._finish(study, url, uri, parent, done, status)

    def _ask(self, study: optuna.Study, in_flight: dict[int, optuna.Trial]) -> optuna.Trial:
        if self.sampler_seed is not None:
            _reseed(self.sampler, self.sampler_seed * 1_000_003 + len(study.get_trials(deepcopy=False)))
        if self.family_search is not None:
            self.family_search.before_ask(study)  # every family tried once first
        trial = study.ask()
        in_flight[trial._trial_id] = trial
        return trial

    @staticmethod
    def _tell_infeasible(study: optuna.Study, trial: optuna.Trial, exc: Exception, done: list[TrialState],
                         infeasible: failures.InfeasibleStreak) -> None:
        trial.set_user_attr("fail_reason", f"infeasible: {exc}")
        trial.set_user_attr("fail_cause", "infeasible")
        study.tell(trial, state=TrialState.FAIL)
        done.append(TrialState.FAIL)
        infeasible.infeasible(str(exc))

    @staticmethod
    def _end_first_attempt_run(uri: str | None, parent: str, number: int) -> None:
        """A trial killed before its first checkpoint starts again in a new MLflow run (nothing
        names the old one to continue): end the old one KILLED, so it does not stay RUNNING."""
        try:
            old = find_trial_run(uri, parent, number)
            if old:
                finish_sweep_run(uri, old, metrics={}, tags={"killed": "before its first checkpoint"},
                                          status="KILLED")
        except Exception as exc:  # the store is flaky: the trial runs anyway
            log.warning("could not end trial %d's first MLflow run: %s", number, exc)

    def _continues(self, study: optuna.Study, trial: optuna.Trial, ret: JobReturn) -> bool:
        """A trial whose process died runs again from its checkpoint, up to max_retries times."""
        if ret.status == JobStatus.COMPLETED or failures.cause_of(ret._return_value) != failures.KILLED:
            return False
        frozen = study._storage.get_trial(trial._trial_id)
        if not continuation.may_continue(frozen, self.max_retries):
            return False
        log.warning("trial %d: %s — it continues from %s", trial.number, failures.signature(ret._return_value),
                    f"epoch {continuation.last_epoch(frozen)}" if continuation.last_epoch(frozen) is not None
                    else "scratch (no checkpoint yet)")
        return True

    @staticmethod
    def _fatal(study: optuna.Study, trial: optuna.Trial, ret: JobReturn, state: TrialState,
               first_failures: list[str | None]) -> SweepError | None:
        """A failure every trial will hit (a bug, a config error): the error that stops the sweep."""
        error = ret._return_value if ret.status != JobStatus.COMPLETED else None
        cause = failures.cause_of(error) if state == TrialState.FAIL else None
        first_failures.append(failures.signature(error) if cause == failures.ERROR and error is not None else None)
        if cause == failures.FATAL or failures.same_failure_everywhere(first_failures):
            return SweepError(f"trial {trial.number} failed with {failures.signature(error)} — every trial "
                              "would hit it: fix it, then run the same command again")
        return None

    @staticmethod
    def _fail(study: optuna.Study, trial: optuna.Trial, reason: str) -> None:
        log.warning("trial %d failed: %s", trial.number, reason)
        with contextlib.suppress(Exception):
            trial.set_user_attr("fail_reason", reason)
            study.tell(trial, state=TrialState.FAIL)

    def _tell(self, study: optuna.Study, trial: optuna.Trial, ret: JobReturn, uri: str | None,
              parent: str | None) -> TrialState:
        state, values, reason = classify(ret, len(study.directions))
        if parent:
            with contextlib.suppress(Exception):
                run_id = find_trial_run(uri, parent, trial.number)
                if run_id:
                    trial.set_user_attr("mlflow_run_id", run_id)
        try:
            if reason:
                trial.set_user_attr("fail_reason", reason)
            if state == TrialState.FAIL:  # killed / oom / diverged / fatal / error (sweeps.failures)
                trial.set_user_attr("fail_cause", failures.cause_of(
                    ret._return_value if ret.status != JobStatus.COMPLETED else None))
            if state == TrialState.COMPLETE:
                study.tell(trial, values)
            else:
                study.tell(trial, state=state)
        except Exception as exc:  # e.g. failed meanwhile as stale by another worker
            log.warning("could not record trial %d as %s: %s", trial.number, state.name, exc)
        if state == TrialState.FAIL:
            log.warning("trial %d failed: %s", trial.number, reason)
        else:
            log.info("trial %d %s%s", trial.number, state.name, f" values={values}" if values else "")
        return state


class LatentSweepOptunaSweeper(OptunaSweeper):
    """The Hydra plugin (`_target_` of conf/hydra/sweeper/optuna.yaml)."""

    def __init__(self, sampler: Any, direction: Any, storage: Any | None, study_name: str | None,
                 n_trials: int, n_jobs: int, max_failure_rate: float, custom_search_space: str | None,
                 params: DictConfig | None, pruner: Any = None, heartbeat_interval: int | None = None,
                 grace_period: int | None = None, mlflow: bool = True, register_best: bool = True,
                 min_trials_for_failure_rate: int = 4, max_retries: int = 2) -> None:
        seed = OmegaConf.select(sampler, "seed", default=None) if isinstance(sampler, DictConfig) else None
        # custom_search_space is not passed up: upstream would import it outside the execution
        # whitelist; `_search_space` loads it through `spaces.load_constraint` instead.
        super().__init__(sampler, direction, storage, study_name, n_trials, n_jobs, max_failure_rate,
                         None, params)  # instantiates the sampler
        self.sweeper = LatentSweepImpl(
            self.sweeper.sampler, direction, storage, study_name, n_trials, n_jobs, max_failure_rate,
            None, params, custom_search_space=custom_search_space,
            pruner=OmegaConf.to_container(pruner, resolve=True) if isinstance(pruner, DictConfig) else pruner,
            heartbeat_interval=heartbeat_interval, grace_period=grace_period, mlflow=mlflow,
            register_best=register_best, min_trials_for_failure_rate=min_trials_for_failure_rate,
            sampler_seed=seed, max_retries=max_retries)
