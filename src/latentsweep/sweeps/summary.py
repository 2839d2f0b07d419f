"""The end of a sweep: the study's summary as YAML, on its MLflow parent run (figures, a family
leaderboard) and on the console, and the best trial's model registered.

`SweepSummary` is a base of `sweeps.sweeper.LatentSweepImpl`, whose ask/launch/tell loop calls
`_finish` once, whatever the outcome. It reads the sweeper's settings (`config`, `register_best`,
`family_search`, `n_trials`, `study_name`) and names (`_registry_name`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Sequence
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


def parent_run_status(trials: Sequence[optuna.trial.FrozenTrial], status: str) -> str | None:
    """How a finishing sweeper ends the study's shared MLflow parent run: `status` (its own outcome,
    FINISHED / FAILED / KILLED), or None to leave the run RUNNING.

    Several sweepers may work on one study (two `make sweep`s on one storage, a resume while the
    first still runs) and they share its parent run. Rule: the run is ended only when no trial of
    the study is RUNNING any more (call this after telling or failing this sweeper's own trials),
    so the last sweeper to finish ends it, with its status; an earlier finisher, also a crashing or
    failing one, only writes its summary and leaves the run to the siblings still at work.

    Caveats, all settled by the next finisher (`sweep_parent_run` reopens the run at every start):
    a sibling between two batches, or one with a larger n_trials, may find the run ended already
    and ends it again when it finishes; a sibling killed with SIGKILL keeps its trials RUNNING
    until they are failed as stale (heartbeats; without them, for good), and the run with them.
    """
    return None if any(t.state == TrialState.RUNNING for t in trials) else status


class SweepSummary:
    """What a sweeper does once its loop has stopped (see the module docstring)."""

    family_search: fam.FamilySearch | None = None  # the sweeper sets it for model=choice(...) sweeps

    def _finish(self, study: optuna.Study, url: str, uri: str | None, parent: str | None,
                done: list[TrialState], status: str) -> None:
        trials = study.get_trials(deepcopy=False)
        counts = {s.name.lower(): sum(t.state == s for t in trials) for s in (*FINISHED, TrialState.RUNNING)}
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        multi = len(study.directions) > 1
        best = study.best_trial if complete and not multi else None  # several objectives: a Pareto front
        pareto = [{"trial": t.number, "values": list(t.values), "params": dict(t.params),
                   "mlflow_run": t.user_attrs.get("mlflow_run_id")} for t in study.best_trials] if multi else None
        best_run = best.user_attrs.get("mlflow_run_id") if best else None
        version = None
        if best and best_run and parent and self.register_best and status == "FINISHED":
            with ask_lock(url):  # two workers finishing together register one version
                version = self._register(study, best, best_run, uri)
        board = None
        if self.family_search is not None and not multi:  # leaderboard + each family's best registered
            board = self._family_board(study, trials, url, uri, register=bool(parent and self.register_best
                                                                               and status == "FINISHED"))
        results = {"name": "optuna", "study_name": study.study_name, "storage": redact(url),
                   "n_trials": counts, "this_run": {s.name.lower(): done.count(s) for s in FINISHED},
                   "best_value": best.value if best else None, "best_params": dict(best.params) if best else None,
                   "best_trial": best.number if best else None, "best_mlflow_run": best_run,
                   "mlflow_parent_run": parent, "tracking_uri": uri,
                   "registered_model": f"{self._registry_name()}@best (v{version})" if version else None,
                   **({"pareto_front": pareto} if multi else {}),
                   **({"leaderboard": json.loads(board.to_json(orient="records")),
                       "winning_family": leaderboard.winner(board)} if board is not None else {})}
        with contextlib.suppress(Exception):
            Path(self.config.hydra.sweep.dir).mkdir(parents=True, exist_ok=True)
            OmegaConf.save(OmegaConf.create(results), f"{self.config.hydra.sweep.dir}/optimization_results.yaml")
        if parent:
            end_as = parent_run_status(trials, status)
            if end_as is None:
                log.info("MLflow parent run %s stays RUNNING: %d trials of the study still run in another "
                         "sweeper: the last one to finish ends it", parent, counts["running"])
            figures = self._figures(study)
            texts = {"optimization_results.json": json.dumps(results, indent=1)}
            if board is not None:
                figures["figures/family_best_so_far.png"] = leaderboard.best_so_far_figure(
                    trials, self.family_search.families, study.direction.name.lower(), str(self.config.objective))
                texts["leaderboard.csv"] = board.to_csv(index=False)
                texts["leaderboard.md"] = self._board_markdown(board, trials)
            try:
                finish_sweep_run(
                    uri, parent,
                    metrics={**({"best_value": best.value} if best else {}),
                             **{f"n_{k}": v for k, v in counts.items()}},
                    tags={**({"best_params": json.dumps(best.params), "best_trial": best.number,
                              "best_run_id": best_run or ""} if best else {}),
                          **({"pareto_trials": json.dumps([p["trial"] for p in pareto])} if multi else {}),
                          **({"winning_family": leaderboard.winner(board) or ""} if board is not None else {})},
                    figures=figures, texts=texts,
                    status=end_as)
            except Exception as exc:
                log.warning("could not finish the MLflow parent run %s: %s", parent, exc)
            finally:
                import matplotlib.pyplot as plt

                for fig in figures.values():
                    plt.close(fig)
        lines = [f"study {study.study_name} in {redact(url)}: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v)]
        if best:
            lines += [f"best value: {best.value:.6g} (trial {best.number})",
                      f"best params: {json.dumps(best.params)}"]
        elif multi and pareto:
            lines.append(f"Pareto front ({len(pareto)} trials, objectives {self.config.get('objective')}):")
            lines += [f"  trial {p['trial']}: values {p['values']} params {json.dumps(p['params'])} "
                      f"run {p['mlflow_run']}" for p in pareto]
        else:
            lines.append("no trial completed yet")
        if board is not None:
            lines += [f"winning family: {leaderboard.winner(board) or 'none yet'}", "",
                      self._board_markdown(board, trials)]
        if parent:
            lines.append(f"MLflow: parent run {parent}, best model run {best_run} | store {uri}")
        if version:
            lines.append(f"registered model: models:/{self._registry_name()}@best (version {version})")
        for line in lines:  # printed once on the terminal, kept in the sweep's log file
            log_to_files(log, logging.INFO, line)
        print("\n".join(lines), flush=True)

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
