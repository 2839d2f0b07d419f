"""The end of a family sweep: the best trial of each family as a table and a figure.

The table (one row per family: objective, parameters, MLflow run, epochs, wall time, trial
counts) goes on the study's parent MLflow run as `leaderboard.csv` and `leaderboard.md`; the
figure shows each family's best-so-far objective against the study's trial number, which says
whether a family was still improving when the budget ran out.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pandas as pd
from optuna.trial import FrozenTrial, TrialState

from ..tables import markdown_table
from .families import family_of, plain_params

COLUMNS = ["rank", "family", "objective", "trial", "epochs", "wall_s", "complete", "pruned", "failed",
           "mlflow_run", "params"]


def _better(direction: str):
    return min if direction == "minimize" else max


def leaderboard(trials: Sequence[FrozenTrial], families: Sequence[str], direction: str,
                run_link=lambda run_id: run_id) -> pd.DataFrame:
    """One row per family, best first; a family without a completed trial comes last with no value.

    `run_link(run_id)` turns a trial's MLflow run id into what the table shows (a UI address).
    """
    rows = []
    for family in families:
        own = [t for t in trials if family_of(t) == family]
        done = [t for t in own if t.state == TrialState.COMPLETE and t.value is not None]
        row: dict[str, Any] = {"family": family, "objective": None, "trial": None, "epochs": None,
                               "wall_s": None, "mlflow_run": None, "params": None,
                               "complete": len(done), "pruned": sum(t.state == TrialState.PRUNED for t in own),
                               "failed": sum(t.state == TrialState.FAIL for t in own)}
        if done:
            best = _better(direction)(done, key=lambda t: t.value)
            wall = (best.datetime_complete - best.datetime_start).total_seconds() \
                if best.datetime_complete and best.datetime_start else None
            run = best.user_attrs.get("mlflow_run_id")
            row.update(objective=float(best.value), trial=best.number,
                       epochs=len(best.intermediate_values) or None, wall_s=wall,
                       mlflow_run=run_link(run) if run else None,
                       params=json.dumps(plain_params(best), sort_keys=True))
        rows.append(row)
    frame = pd.DataFrame(rows)
    ranked = frame["objective"].notna()
    order = frame[ranked].sort_values("objective", ascending=direction == "minimize")
    frame = pd.concat([order, frame[~ranked]], ignore_index=True)
    frame.insert(0, "rank", [i + 1 if ok else None for i, ok in enumerate(frame["objective"].notna())])
    for column in ("rank", "trial", "epochs"):
        frame[column] = frame[column].astype("Int64")  # integers with gaps, not floats
    return frame[COLUMNS]


def winner(board: pd.DataFrame) -> str | None:
    """The family of the best row, or None when no family completed a trial."""
    ranked = board[board["objective"].notna()]
    return str(ranked.iloc[0]["family"]) if len(ranked) else None


def markdown(board: pd.DataFrame, objective: str, budget: str) -> str:
    """The table as markdown, headed by what was optimised and on which budget."""
    rows = [[None if pd.isna(row[c]) else row[c] for c in COLUMNS] for _, row in board.iterrows()]
    return f"objective: {objective} ({budget})\n\n{markdown_table(COLUMNS, rows)}\n"


def best_so_far_figure(trials: Sequence[FrozenTrial], families: Sequence[str], direction: str, objective: str):
    """Each family's best-so-far objective against the study's trial number (steps)."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    better = _better(direction)
    for family in families:
        done = sorted((t for t in trials if family_of(t) == family and t.state == TrialState.COMPLETE
                       and t.value is not None), key=lambda t: t.number)
        if not done:
            continue
        xs, ys, best = [], [], None
        for t in done:
            best = t.value if best is None else better(best, t.value)
            xs.append(t.number)
            ys.append(best)
        ax.step(xs, ys, where="post", marker="o", label=f"{family} ({len(done)})")
    ax.set_xlabel("trial number")
    ax.set_ylabel(f"best {objective} so far")
    ax.set_title("family sweep: best so far per family")
    ax.legend(title="family (completed trials)")
    fig.tight_layout()
    return fig
