"""The end of a sweep: the study's summary as YAML, on its MLflow parent run (figures, a family
leaderboard) and on the console, and the best trial's model registered.

`SweepSummary` is a base of `sweeps.impl.LatentSweepImpl`, which calls `_finish` once when its
loop (`sweeps.loop`) has stopped, whatever the outcome. Infeasible trials are listed with their
reasons. It reads the sweeper's settings (`config`, `register_best`,
`family_search`, `n_trials`, `study_name`) and names (`_registry_name`).
"""

from __future__ import annotations

import json
import logging
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from omegaconf import OmegaConf
from optuna.trial import TrialState

from ..cli import log_to_files
from ..errors import LatentSweepError
from ..tracking.registry import register_best_model
from ..tracking.sweep_runs import finish_sweep_run
from . import families as fam
from . import leaderboard
from .storage import ask_lock, redact

log = logging.getLogger("latentsweep.sweeps")

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


def infeasible_trials(trials: Sequence[optuna.trial.FrozenTrial]) -> list[dict[str, Any]]:
    """Trials whose sampled sizes the data could not take (PRUNED as infeasible), with the reason."""
    return [{"trial": t.number, "reason": t.user_attrs.get("fail_reason")} for t in trials
            if t.user_attrs.get("fail_cause") == "infeasible"]


def infeasible_lines(found: Sequence[dict[str, Any]], shown: int = 10) -> list[str]:
    """The summary's lines for infeasible trials: how many, and each one's reason."""
    if not found:
        return []
    lines = [f"{len(found)} infeasible trial(s), pruned (their sizes do not fit the data):"]
    lines += [f"  trial {f['trial']}: {f['reason']}" for f in found[-shown:]]
    return lines + ([f"  ... and {len(found) - shown} more (user attribute fail_reason)"] if len(found) > shown else [])


def tied_with_best(trials: Sequence[optuna.trial.FrozenTrial], best: optuna.trial.FrozenTrial) -> list[int]:
    """The other complete trials whose value equals the best one's exactly.

    Why: on small data a discrete score ties often (trustworthiness on 36 series moves in steps of
    1/5040; a cross-validated accuracy in steps of one series), and the study then names one of the
    tied trials by its storage's order, not by the score. The summary says so, so that a user can
    look at the others before trusting the registered one."""
    return [t.number for t in trials if t.state == TrialState.COMPLETE and t.number != best.number
            and t.values == best.values]


def best_value_line(best: optuna.trial.FrozenTrial, tied: Sequence[int], shown: int = 10) -> str:
    """'best value: 0.9899 (trial 2; tied with trials 15, 25)': the summary's line for the best trial."""
    more = f" and {len(tied) - shown} more" if len(tied) > shown else ""
    tie = f"; tied with trial{'s' * (len(tied) > 1)} {', '.join(map(str, tied[:shown]))}{more}" if tied else ""
    return f"best value: {best.value:.6g} (trial {best.number}{tie})"


def parent_run_status(trials: Sequence[optuna.trial.FrozenTrial], status: str) -> str | None:
    """How a finishing sweeper ends the study's shared MLflow parent run: `status` (its own outcome,
    FINISHED / FAILED / KILLED), or None to leave the run RUNNING.

    Several sweepers may work on one study (two `make sweep`s on one storage, a resume while the
    first still runs) and they share its parent run. Rule: the run is ended only when no trial of
    the study is RUNNING any more (call this after telling or failing this sweeper's own trials),
    so the last sweeper to finish ends it, with its status and the study's final counts; an earlier
    finisher, also a crashing or failing one, writes nothing to it (it prints its own summary): what
    it would write is stale by the time it lands and could overwrite the last finisher's counts.

    Caveats, all settled by the next finisher (`sweep_parent_run` reopens the run at every start):
    a sibling between two batches, or one with a larger n_trials, may find the run ended already
    and ends it again when it finishes; a sibling killed with SIGKILL keeps its trials RUNNING
    until they are failed as stale (heartbeats; without them, for good), and the run with them.
    """
    return None if any(t.state == TrialState.RUNNING for t in trials) else status


@dataclass
class Ending:
    """What `_finish` found in the study, shared by the results file, the parent run and the terminal."""

    study: optuna.Study
    trials: list[optuna.trial.FrozenTrial]
    counts: dict[str, int]
    best: optuna.trial.FrozenTrial | None
    pareto: list[dict[str, Any]] | None
    best_run: str | None
    infeasible: list[dict[str, Any]] = field(default_factory=list)
    tied: list[int] = field(default_factory=list)  # other trials with the best value (tied_with_best)
    version: str | None = None
    board: Any = None  # the family leaderboard (a DataFrame)
    results: dict[str, Any] = field(default_factory=dict)


class SweepSummary:
    """What a sweeper does once its loop has stopped (see the module docstring)."""

    family_search: fam.FamilySearch | None = None  # the sweeper sets it for model=choice(...) sweeps

    def _finish(self, study: optuna.Study, url: str, uri: str | None, parent: str | None,
                done: list[TrialState], status: str) -> None:
        """Summarise the study: results file, parent run (ended by the last sweeper), terminal."""
        end = self._ending(study, url, uri, parent, status)
        end.results = self._results(end, url, uri, parent, done)
        try:
            Path(self.config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
            OmegaConf.save(OmegaConf.create(end.results), f"{self.config.hydra.sweep.dir}/optimization_results.yaml")
        except OSError as exc:  # a read-only or full disk: the summary still goes to MLflow and the terminal
            log.warning("optimization_results.yaml not written in %s: %s", self.config.hydra.sweep.dir, exc)
        if parent:
            self._end_parent_run(end, uri, parent, status)
        lines = self._lines(end, url, uri, parent)
        for line in lines:  # printed once on the terminal, kept in the sweep's log file
            log_to_files(log, logging.INFO, line)
        print("\n".join(lines), flush=True)

    def _ending(self, study: optuna.Study, url: str, uri: str | None, parent: str | None, status: str) -> Ending:
        """What the study holds now: counts, best trial (or Pareto front), registry, leaderboard."""
        trials = study.get_trials(deepcopy=False)
        counts = {s.name.lower(): sum(t.state == s for t in trials) for s in (*FINISHED, TrialState.RUNNING)}
        multi = len(study.directions) > 1
        complete = any(t.state == TrialState.COMPLETE for t in trials)
        best = study.best_trial if complete and not multi else None  # several objectives: a Pareto front
        pareto = [{"trial": t.number, "values": list(t.values), "params": dict(t.params),
                   "mlflow_run": t.user_attrs.get("mlflow_run_id")} for t in study.best_trials] if multi else None
        end = Ending(study, trials, counts, best, pareto, best.user_attrs.get("mlflow_run_id") if best else None,
                     infeasible=infeasible_trials(trials), tied=tied_with_best(trials, best) if best else [])
        register = bool(parent and self.register_best and status == "FINISHED")
        if best and end.best_run and register:
            with ask_lock(url):  # two workers finishing together register one version
                end.version = self._register(study, best, end.best_run, uri)
        if self.family_search is not None and not multi:  # leaderboard + each family's best registered
            end.board = self._family_board(study, trials, url, uri, register=register)
        return end

    def _results(self, end: Ending, url: str, uri: str | None, parent: str | None,
                 done: list[TrialState]) -> dict[str, Any]:
        best, board = end.best, end.board
        return {"name": "optuna", "study_name": end.study.study_name, "storage": redact(url),
                "n_trials": {**end.counts, "infeasible": len(end.infeasible)}, "infeasible_trials": end.infeasible,
                "this_run": {s.name.lower(): done.count(s) for s in FINISHED},
                "best_value": best.value if best else None, "best_params": dict(best.params) if best else None,
                "best_trial": best.number if best else None, "best_mlflow_run": end.best_run,
                "best_tied_with": end.tied,
                "mlflow_parent_run": parent, "tracking_uri": uri,
                "registered_model": f"{self._registry_name()}@best (v{end.version})" if end.version else None,
                **({"pareto_front": end.pareto} if end.pareto is not None else {}),
                **({"leaderboard": json.loads(board.to_json(orient="records")),
                    "winning_family": leaderboard.winner(board)} if board is not None else {})}

    def _end_parent_run(self, end: Ending, uri: str | None, parent: str, status: str) -> None:
        end_as = parent_run_status(end.trials, status)
        if end_as is None:
            log.info("MLflow parent run %s stays RUNNING: %d trials of the study still run in another "
                     "sweeper: the last one to finish ends it and writes the study's summary",
                     parent, end.counts["running"])
            return
        best, board = end.best, end.board
        figures = self._figures(end.study)
        texts = {"optimization_results.json": json.dumps(end.results, indent=1)}
        if board is not None:
            figures["figures/family_best_so_far.png"] = leaderboard.best_so_far_figure(
                end.trials, self.family_search.families, end.study.direction.name.lower(), str(self.config.objective))
            texts["leaderboard.csv"] = board.to_csv(index=False)
            texts["leaderboard.md"] = self._board_markdown(board, end.trials)
        tags = {**({"best_params": json.dumps(best.params), "best_trial": best.number,
                    "best_run_id": end.best_run or ""} if best else {}),
                **({"pareto_trials": json.dumps([p["trial"] for p in end.pareto])} if end.pareto is not None else {}),
                **({"winning_family": leaderboard.winner(board) or ""} if board is not None else {})}
        metrics = {**({"best_value": best.value} if best else {}), **{f"n_{k}": v for k, v in end.counts.items()},
                   "n_infeasible": len(end.infeasible)}
        try:
            finish_sweep_run(uri, parent, metrics=metrics, tags=tags, figures=figures, texts=texts, status=end_as)
        except Exception as exc:  # noqa: BLE001 - logged: the sweep's results are saved and printed anyway
            log.warning("could not finish the MLflow parent run %s: %s: %s", parent, type(exc).__name__, exc)
        finally:
            import matplotlib.pyplot as plt

            for fig in figures.values():
                plt.close(fig)

    def _lines(self, end: Ending, url: str, uri: str | None, parent: str | None) -> list[str]:
        best, board = end.best, end.board
        lines = [f"study {end.study.study_name} in {redact(url)}: "
                 + ", ".join(f"{v} {k}" for k, v in end.counts.items() if v)]
        if best:
            lines += [best_value_line(best, end.tied),
                      f"best params: {json.dumps(best.params)}"]
        elif end.pareto:
            lines.append(f"Pareto front ({len(end.pareto)} trials, objectives {self.config.objective}):")
            lines += [f"  trial {p['trial']}: values {p['values']} params {json.dumps(p['params'])} "
                      f"run {p['mlflow_run']}" for p in end.pareto]
        else:
            lines.append("no trial completed yet")
        lines += infeasible_lines(end.infeasible)
        if board is not None:
            lines += [f"winning family: {leaderboard.winner(board) or 'none yet'}", "",
                      self._board_markdown(board, end.trials)]
        if parent:
            lines.append(f"MLflow: parent run {parent}, best model run {end.best_run} | store {uri}")
        if end.version:
            lines.append(f"registered model: models:/{self._registry_name()}@best (version {end.version})")
        return lines

    def _register(self, study: optuna.Study, best: optuna.trial.FrozenTrial, best_run: str, uri: str | None,
                  name: str | None = None, key: str = ""):
        """Register the best trial's model unless this very trial is already the registered one.

        `name` (default `latentsweep-<model>`) and `key` (suffix of the study attributes that remember
        it) let a family sweep register each family's best next to the overall winner."""
        name = name or self._registry_name()
        attrs = optuna.load_study(study_name=study.study_name, storage=study._storage).user_attrs
        if attrs.get(f"registered_best_trial{key}") == best.number:
            return attrs.get(f"registered_version{key}")
        try:
            version = register_best_model(
                uri, best_run, name, "best",
                tags={"optuna_study": study.study_name, "optuna_trial": best.number, "value": best.value,
                      **({"family": fam.family_of(best)} if fam.family_of(best) else {})})
        except LatentSweepError as exc:
            log.warning("best model not registered: %s", exc)
            return None
        study.set_user_attr(f"registered_best_trial{key}", best.number)
        study.set_user_attr(f"registered_version{key}", version)
        return version

    def _family_board(self, study: optuna.Study, trials, url: str, uri: str | None, register: bool):
        """The family leaderboard; with `register`, each family's best becomes `latentsweep-<family>@best`
        (with `-<task>` for other tasks, as for one-model sweeps)."""
        direction = study.direction.name.lower()
        board = leaderboard.leaderboard(trials, self.family_search.families, direction,
                                        run_link=lambda run_id: f"runs:/{run_id}")
        if not register:
            return board
        suffix = self._registry_name()[len("latentsweep-families"):]
        for _, row in board[board["objective"].notna()].iterrows():
            best = next(t for t in trials if t.number == row["trial"])
            run_id = best.user_attrs.get("mlflow_run_id")
            if run_id:
                name = f"latentsweep-{row['family']}{suffix}"
                with ask_lock(url):
                    version = self._register(study, best, run_id, uri, name=name, key=f"/{row['family']}")
                if version:
                    log.info("%s's best (trial %d) is models:/%s@best (version %s)", row["family"],
                             best.number, name, version)
        return board

    def _board_markdown(self, board, trials) -> str:
        budget = (f"{len(trials)} trials of n_trials={self.n_trials}, "
                  f"trainer.max_epochs={self.config.trainer.get('max_epochs')}, study {self.study_name}")
        return leaderboard.markdown(board, str(self.config.objective), budget)

    def _figures(self, study: optuna.Study) -> dict[str, Any]:
        """Optuna's matplotlib plots; each one is skipped (with a note) when the study cannot draw it."""
        from optuna.visualization import matplotlib as ovm

        complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        if len(study.directions) > 1:  # history / importances need one target; the front says it all
            return self._draw({"figures/pareto_front.png": ovm.plot_pareto_front}, study) \
                if len(study.directions) <= 3 and complete else {}
        plots = {"figures/optimization_history.png": ovm.plot_optimization_history}
        if len(complete) >= 2:
            plots["figures/parallel_coordinate.png"] = ovm.plot_parallel_coordinate
            varying = {k for t in complete for k in t.params if t.params[k] != complete[0].params.get(k)}
            if varying:
                plots["figures/param_importances.png"] = ovm.plot_param_importances
        if any(t.intermediate_values for t in study.get_trials(deepcopy=False)):
            plots["figures/intermediate_values.png"] = ovm.plot_intermediate_values
        return self._draw(plots, study)

    @staticmethod
    def _draw(plots: dict[str, Any], study: optuna.Study) -> dict[str, Any]:
        out = {}
        for name, plot in plots.items():
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    axes = plot(study)
                ax = axes.flat[0] if hasattr(axes, "flat") else axes
                out[name] = ax.figure
            except Exception as exc:
                log.info("figure %s skipped: %s", name, exc)
        return out
