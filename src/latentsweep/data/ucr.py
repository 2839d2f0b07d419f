"""UCR/UEA time-series archive sets from `.ts` files (the sktime/aeon format).

A `.ts` file is a header of `@key value` lines (`@problemName`, `@timeStamps`, `@missing`,
`@univariate`, `@dimensions`, `@equalLength`, `@seriesLength`, `@classLabel true a b c` or
`@targetLabel true`), `#`/`%` comments, then `@data` and one series per line: channels
separated by ':', values by ',', `?` or `NaN` for a missing value, the class label last. With
`@timeStamps true` each value is `(timestamp,value)`; the order is kept, the stamps dropped.

Files are read directly (aeon is never imported): from `data.path`, or from the copies bundled
in an installed aeon package (`pip install .[ucr]`). TRAIN becomes split "train" and TEST
"test": `prepare()` carves validation out of TRAIN and holds TEST out of training and selection,
so `analyze.py`'s TEST scores compare with the archive's published results.

Missing values in the archive are mostly NaN padding that turns variable-length series into
equal-length rows, so trailing all-missing steps are always cut first (that is length, not
data). What is left is handled by `missing`: `interpolate` (linear per channel, edges held),
`drop` (drop the series), `error`, or `keep` (leave NaN for `data.drop_nonfinite` to decide).
"""

from __future__ import annotations

import importlib.util
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DataError
from .series import SeriesSet

log = logging.getLogger(__name__)

MISSING_POLICIES = ("interpolate", "drop", "error", "keep")
_BOOL_KEYS = ("timestamps", "missing", "univariate", "equallength", "targetlabel")
_INT_KEYS = ("dimensions", "serieslength")
_STAMPED = re.compile(r"\(([^()]*)\)")


@dataclass
class TsFile:
    """One parsed `.ts` file: raw series [T, C] (NaN kept), labels and where each row was."""

    path: Path
    header: dict = field(default_factory=dict)
    series: list[np.ndarray] = field(default_factory=list)
    labels: list[str] | None = None
    lines: list[int] = field(default_factory=list)
    class_names: list[str] | None = None


def _fail(path: Path, lineno: int, problem: str, fix: str) -> DataError:
    return DataError(f"{path}:{lineno}: {problem} — {fix}")


def _parse_header_line(path: Path, lineno: int, line: str, header: dict) -> None:
    tokens = line.split()
    key = tokens[0][1:].lower()
    args = tokens[1:]
    if key == "problemname":
        header[key] = " ".join(args)
    elif key == "classlabel":
        if not args or args[0].lower() not in ("true", "false"):
            raise _fail(path, lineno, f"malformed header {line!r}",
                        "write '@classLabel true <class> <class> ...' or '@classLabel false'")
        if args[0].lower() == "true" and len(args) < 2:
            raise _fail(path, lineno, "'@classLabel true' lists no classes",
                        "list the class values after 'true'")
        header[key] = args[1:] if args[0].lower() == "true" else None
    elif key in _BOOL_KEYS:
        if len(args) != 1 or args[0].lower() not in ("true", "false"):
            raise _fail(path, lineno, f"malformed header {line!r}", f"write '@{tokens[0][1:]} true' or 'false'")
        header[key] = args[0].lower() == "true"
    elif key in _INT_KEYS:
        if len(args) != 1 or not args[0].isdigit() or int(args[0]) < 1:
            raise _fail(path, lineno, f"malformed header {line!r}", f"'@{tokens[0][1:]}' needs a positive integer")
        header[key] = int(args[0])
    else:
        log.warning("%s:%d: ignoring unknown header %r", path, lineno, tokens[0])


def _split_fields(line: str) -> list[str]:
    """Split on ':' between channels, but not on the ':' inside `(2007-01-01 00:00:00,1.0)`."""
    if "(" not in line:
        return line.split(":")
    fields, depth, start = [], 0, 0
    for i, ch in enumerate(line):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == ":" and depth == 0:
            fields.append(line[start:i])
            start = i + 1
    fields.append(line[start:])
    return fields


def _parse_values(path: Path, lineno: int, text: str, stamped: bool) -> np.ndarray:
    if stamped:
        tokens = [m.rsplit(",", 1)[-1] for m in _STAMPED.findall(text)]
        if not tokens and text.strip():
            raise _fail(path, lineno, "expected '(timestamp,value)' entries (@timeStamps true)",
                        "fix the row or the @timeStamps header")
    else:
        tokens = text.split(",")
        if len(tokens) > 1 and not tokens[-1].strip():
            tokens.pop()  # a trailing comma
    tokens = ["nan" if t.strip() == "?" else t for t in tokens]
    try:
        return np.array(tokens, dtype=np.float64)
    except ValueError:
        bad = next(t for t in tokens if not _is_number(t))
        raise _fail(path, lineno, f"value {bad.strip()!r} is not a number",
                    "values are numbers separated by ',', with '?' or NaN for missing") from None


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def read_ts(path: str | Path) -> TsFile:
    """Parse one `.ts` file; any malformed header or row is a DataError naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as exc:
        raise DataError(f"cannot read {path}: {exc.strerror or exc} — check the file") from exc
    out = TsFile(path=path)
    header, in_data, n_dims = out.header, False, None
    lineno, has_label, has_target = 0, False, False
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line[0] in "#%":
            continue
        if not in_data:
            if line[0] != "@":
                raise _fail(path, lineno, f"unexpected text before @data: {line[:40]!r}",
                            "header lines start with '@' and comments with '#'")
            if line.split()[0].lower() == "@data":
                in_data = True
                has_label = "classlabel" in header and header["classlabel"] is not None
                has_target = bool(header.get("targetlabel"))
                n_dims = header.get("dimensions") or (1 if header.get("univariate", False) else None)
                out.class_names = header.get("classlabel")
                out.labels = [] if has_label else None
            else:
                _parse_header_line(path, lineno, line, header)
            continue
        fields = _split_fields(line)
        n_extra = int(has_label or has_target)
        if n_dims is None:  # multivariate without @dimensions: the first row decides
            n_dims = max(len(fields) - n_extra, 1)
        if len(fields) != n_dims + n_extra:
            label_note = " plus the class label" if has_label else ""
            raise _fail(path, lineno, f"{len(fields) - n_extra} dimension(s), expected {n_dims}"
                        f"{label_note}", "channels are separated by ':', the label comes last")
        channels = [_parse_values(path, lineno, f, bool(header.get("timestamps"))) for f in fields[:n_dims]]
        lengths = {len(c) for c in channels}
        if len(lengths) != 1:
            raise _fail(path, lineno, f"channels have different lengths {sorted(lengths)}",
                        "give every channel of a series the same number of values ('?' for gaps)")
        expected = header.get("serieslength")
        if header.get("equallength") and expected and len(channels[0]) != expected:
            raise _fail(path, lineno, f"{len(channels[0])} values but @seriesLength {expected}",
                        "fix the row or the @equalLength/@seriesLength header")
        if has_label:
            label = fields[-1].strip()
            if label not in out.class_names:
                raise _fail(path, lineno, f"class label {label!r} is not declared in @classLabel "
                            f"{out.class_names}", "add it to the @classLabel line")
            out.labels.append(label)
        out.series.append(np.stack(channels, axis=1))
        out.lines.append(lineno)
    if lineno == 0:
        raise DataError(f"{path} is empty — copy the problem's .ts file again")
    if not in_data:
        raise _fail(path, lineno, "no @data line", "the header must end with a line '@data'")
    return out


def handle_missing(x: np.ndarray, policy: str, where: str) -> np.ndarray | None:
    """Cut trailing all-missing steps, then apply `policy`; None means "drop this series"."""
    present = ~np.isnan(x).all(axis=1)
    x = x[: int(np.flatnonzero(present)[-1]) + 1] if present.any() else x[:0]
    gaps = np.isnan(x)
    if not gaps.any() or policy == "keep":
        return x
    if policy == "drop":
        return None
    if policy == "error":
        t, c = (int(i) for i in np.argwhere(gaps)[0])
        raise DataError(f"{where}: missing value at step {t} of channel {c} — set "
                        "data.missing=interpolate, drop or keep")
    steps = np.arange(len(x))
    x = x.copy()
    for c in np.flatnonzero(gaps.any(axis=0)):
        seen = ~gaps[:, c]
        if not seen.any():
            raise DataError(f"{where}: channel {c} has no values to interpolate from — set "
                            "data.missing=drop to skip such series")
        x[:, c] = np.interp(steps, steps[seen], x[seen, c])
    return x


def find_ucr_folder(name: str, path: str | None) -> Path:
    """The folder with `<name>_TRAIN.ts`: data.path (or data.path/<name>), else aeon's copy."""
    train = f"{name}_TRAIN.ts"
    if path:
        base = Path(path).expanduser()
        for folder in (base, base / name):
            if (folder / train).is_file():
                return folder
        raise DataError(f"{train} not found in {base} (nor in {base / name}) — set data.path to the "
                        f"folder holding {name}_TRAIN.ts and {name}_TEST.ts")
    spec = importlib.util.find_spec("aeon")
    if spec is None or not spec.submodule_search_locations:
        raise DataError(f"data.path is null and aeon is not installed — pip install .[ucr] for its "
                        f"bundled sets (e.g. ArrowHead), or set data.path=<folder with {train}>")
    bundled = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data"
    if (bundled / name / train).is_file():
        return bundled / name
    elsewhere = sorted(bundled.glob(f"*/{train}"))  # variants such as PickupGestureWiimoteZ_eq
    if elsewhere:
        return elsewhere[0].parent
    have = sorted(p.name[: -len("_TRAIN.ts")] for p in bundled.glob("*/*_TRAIN.ts"))
    raise DataError(f"{name!r} is not bundled with aeon (bundled: {', '.join(have)}) — download it "
                    "from the UCR/UEA archive and set data.path=<its folder>")


def load_ucr(name: str = "ArrowHead", path: str | None = None, missing: str = "interpolate",
             official_split: bool = True) -> SeriesSet:
    """`<name>_TRAIN.ts` (split "train") and `<name>_TEST.ts` (split "test") as one SeriesSet."""
    if missing not in MISSING_POLICIES:
        raise DataError(f"unknown data.missing={missing!r} — use one of {MISSING_POLICIES}")
    folder = find_ucr_folder(name, path)
    files = [("train", read_ts(folder / f"{name}_TRAIN.ts"))]
    if (folder / f"{name}_TEST.ts").is_file():
        files.append(("test", read_ts(folder / f"{name}_TEST.ts")))
    else:
        log.warning("no %s_TEST.ts in %s: no held-out TEST; validation is a seeded data.val_fraction "
                    "split of TRAIN", name, folder)
    dims = {f.path.name: f.series[0].shape[1] for _, f in files if f.series}
    if len(set(dims.values())) > 1:
        raise DataError(f"{name}: the files have different numbers of dimensions {dims} — use the "
                        "TRAIN/TEST pair of one problem")
    labelled = all(f.labels is not None for _, f in files)
    class_names: list[str] = []
    for _, f in files:
        class_names += [c for c in (f.class_names or []) if c not in class_names]
    series, ids, labels, split = [], [], [], []
    n_dropped = n_filled = 0
    for tag, f in files:
        prefix = "train" if tag == "train" else "test"
        for i, (x, lineno) in enumerate(zip(f.series, f.lines)):
            cleaned = handle_missing(x, missing, f"{f.path}:{lineno}")
            if cleaned is None:
                n_dropped += 1
                continue
            n_filled += int(np.isnan(x[: len(cleaned)]).sum()) if missing == "interpolate" else 0
            series.append(cleaned)
            ids.append(f"{name}-{prefix}-{i:04d}")
            split.append(tag)
            if labelled:
                labels.append(f.labels[i])
    if n_dropped:
        log.warning("%s: dropped %d series with missing values (data.missing=drop)", name, n_dropped)
    if n_filled:
        log.info("%s: interpolated %d missing values", name, n_filled)
    if not series:
        raise DataError(f"{name}: no series left in {folder} — the files hold no data rows, or "
                        "data.missing=drop dropped them all")
    return SeriesSet.from_arrays(series, ids=ids, labels=labels if labelled else None,
                                 class_names=class_names if labelled else None,
                                 split=split if official_split else None)
