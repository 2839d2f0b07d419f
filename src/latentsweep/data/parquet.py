"""The user's own series from parquet: long format or one row per series with list columns.

Long format: one row per time step, `id_column` names the series, `time_column` (optional)
orders the steps, `value_columns` (default: every other numeric column) are the channels,
`label_column` (optional) is constant within a series. Wide format (`list_column` set): one row
per series, each value column holds a list (or array) with the whole series.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import DataError
from .series import SeriesSet


def _read_table(path: Path) -> pd.DataFrame:
    if not path.exists():
        raise DataError(f"parquet file not found: {path} — set data.path to an existing file")
    if path.is_file() and path.stat().st_size == 0:
        raise DataError(f"parquet file is empty (0 bytes): {path} — re-export the data")
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for damaged files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"cannot read parquet {path}: {first} — is the file complete and in "
                        "parquet format?") from exc
    frame = table.to_pandas()
    if len(frame) == 0:
        raise DataError(f"parquet file has no rows: {path} — it holds no series")
    return frame


def _require_columns(frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(f"column(s) {missing} not in {path} (it has {list(frame.columns)}) — "
                        "set data.id_column / data.value_columns / data.label_column to match")


def _check_numeric(frame: pd.DataFrame, columns: list[str], path: Path) -> None:
    bad = [c for c in columns if not pd.api.types.is_numeric_dtype(frame[c])
           or pd.api.types.is_bool_dtype(frame[c])]
    if bad:
        kinds = {c: str(frame[c].dtype) for c in bad}
        raise DataError(f"value column(s) {kinds} in {path} are not numeric — convert them or "
                        "list only numeric columns in data.value_columns")


def load_parquet(
    path: str,
    id_column: str = "series_id",
    value_columns: list[str] | None = None,
    time_column: str | None = None,
    label_column: str | None = None,
    list_column: bool = False,
) -> SeriesSet:
    """Read series from `path`; see the module docstring for the two layouts."""
    path = Path(path).expanduser()
    frame = _read_table(path)
    wanted = [id_column] + ([time_column] if time_column else []) + ([label_column] if label_column else [])
    _require_columns(frame, wanted + list(value_columns or []), path)
    if not value_columns:
        value_columns = [c for c in frame.columns if c not in wanted]
        if not value_columns:
            raise DataError(f"no value columns left in {path} after {wanted} — add data.value_columns")
    if list_column:
        return _from_wide(frame, path, id_column, list(value_columns), label_column)
    _check_numeric(frame, list(value_columns), path)
    return _from_long(frame, path, id_column, list(value_columns), time_column, label_column)


def _from_long(frame, path, id_column, value_columns, time_column, label_column) -> SeriesSet:
    if time_column:
        dup = frame.duplicated([id_column, time_column])
        if dup.any():
            first = frame.loc[dup, id_column].iloc[0]
            raise DataError(f"{int(dup.sum())} duplicate ({id_column}, {time_column}) rows in {path} "
                            f"(first in series {first!r}) — deduplicate or aggregate them first")
        frame = frame.sort_values([id_column, time_column], kind="stable")
    groups = frame.groupby(id_column, sort=True)
    series, ids, labels = [], [], []
    for sid, group in groups:
        series.append(group[value_columns].to_numpy(dtype=np.float64))
        ids.append(str(sid))
        if label_column:
            values = group[label_column].dropna().unique()
            if len(values) != 1:
                raise DataError(f"series {sid!r} in {path} has {len(values)} labels in "
                                f"{label_column!r} — a series needs exactly one label")
            labels.append(values[0])
    return SeriesSet.from_arrays(series, ids=ids, labels=labels if label_column else None)


def _from_wide(frame, path, id_column, value_columns, label_column) -> SeriesSet:
    series, ids = [], []
    for row in frame.itertuples(index=False):
        record = row._asdict()
        try:
            channels = [np.asarray(record[c], dtype=np.float64) for c in value_columns]
        except (TypeError, ValueError) as exc:
            raise DataError(f"series {record[id_column]!r} in {path}: list column holds non-numeric "
                            "values — store lists of numbers") from exc
        if any(ch.ndim != 1 for ch in channels) or len({len(ch) for ch in channels}) != 1:
            raise DataError(f"series {record[id_column]!r} in {path}: list columns "
                            f"{value_columns} must be 1-D lists of equal length")
        series.append(np.stack(channels, axis=1))
        ids.append(str(record[id_column]))
    if len(set(ids)) != len(ids):
        raise DataError(f"duplicate {id_column!r} values in {path} — one row per series in list format")
    labels = frame[label_column].tolist() if label_column else None
    return SeriesSet.from_arrays(series, ids=ids, labels=labels)
