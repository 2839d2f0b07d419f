"""Turning user-fixable errors into one line and a non-zero exit, for the Hydra entry points."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from .errors import LatentSweepError, mark_origin

log = logging.getLogger("latentsweep")


def _in_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:  # "HydraConfig was not set": not inside a Hydra app
        return False


def _file_handlers(logger: logging.Logger) -> list[logging.Handler]:
    """The file handlers a record of `logger` would reach (Hydra's `<job>.log` in a run)."""
    found: list[logging.Handler] = []
    current: logging.Logger | None = logger
    while current is not None:
        found += [h for h in current.handlers if isinstance(h, logging.FileHandler) and h not in found]
        current = current.parent if current.propagate else None
    return found


def log_to_files(logger: logging.Logger, level: int, message: str) -> None:
    """Write `message` to the log file(s) `logger` reaches, not to its console handler: for text
    that is also printed, so the terminal shows it once and the run's log still holds it."""
    record = logger.makeRecord(logger.name, level, __file__, 0, "%s", (message,), None)
    for handler in _file_handlers(logger):
        if record.levelno >= handler.level:
            with contextlib.suppress(OSError, ValueError):  # a closed or full log file: the terminal has it
                handler.handle(record)


def report_error(exc: BaseException, logger: logging.Logger = log) -> None:
    """Show a user error once: `error: <message>` on stderr, and an ERROR record in the log file."""
    log_to_files(logger, logging.ERROR, str(exc))
    print(f"error: {exc}", file=sys.stderr, flush=True)


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """In a single run, print `error: <message>` once (also written to the run's log file) and exit 1
    instead of a traceback.

    In a sweep the exception propagates, so the sweeper records the trial as failed and goes on.
    HYDRA_FULL_ERROR=1 keeps the traceback everywhere.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except LatentSweepError as exc:
            if _in_multirun() or os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            report_error(exc)
            sys.exit(1)
        except Exception as exc:  # a bug: the sweeper tells ours from a library's by where it was raised
            if _in_multirun():
                mark_origin(exc)
            raise

    return wrapper
