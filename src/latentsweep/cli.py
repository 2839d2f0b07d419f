"""Turning user-fixable errors into one line and a non-zero exit, for the Hydra entry points."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

from .errors import LatentSweepError

log = logging.getLogger("latentsweep")


def _in_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:
        return False


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """In a single run, print `error: <message>` and exit 1 instead of a traceback.

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
            log.error("%s", exc)
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(1)

    return wrapper
