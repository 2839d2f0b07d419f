"""Markdown tables: the one renderer for the benchmarks, the family leaderboard and analyze.py's report.

tabulate's GitHub format (as pandas' `to_markdown`): cells are shown as given, floats at four
significant digits, a missing value as "-", and a `|` inside a cell escaped so it can't split it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tabulate import tabulate


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|")


def markdown_table(headers: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str:
    return tabulate([[_cell(v) for v in row] for row in rows], headers=[_cell(h) for h in headers],
                    tablefmt="github", disable_numparse=True)
