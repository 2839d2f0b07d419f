"""Where one run's wall time goes: start-up, epochs, checkpoints, objective, label-free scores, logging.

Small trials spend a visible share of their time outside the epochs (issue 29). `train()` fills a
`PhaseClock`, logs it as one line (`timing: ...`) and as `time_<phase>_s` metrics, and
`benchmarks.bench_sweep` reads that line to record a per-trial breakdown, so the next regression shows.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

# startup: train() to the first training step; epochs: the epochs' own time (the loop's `epoch_time_s`);
# checkpoints: the rest of the loop (checkpoint writes, pruning reports); logging: MLflow (per epoch,
# figures, model files, the run's end)
PHASES = ("startup", "epochs", "checkpoints", "objective", "label_free", "logging")
LINE_PREFIX = "timing:"  # what benchmarks.bench_sweep looks for in a sweep's output


class PhaseClock:
    """Wall seconds per phase of one run."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.seconds = dict.fromkeys(PHASES, 0.0)

    def mark_startup(self) -> None:
        """The first training step is next: everything since the clock started was start-up."""
        self.seconds["startup"] = time.perf_counter() - self.started

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - start

    def timed(self, name: str, callback: Callable[..., Any]) -> Callable[..., Any]:
        """`callback`, its time counted in `name` (a loop callback: moved out of `train`)."""

        def call(*args: Any, **kwargs: Any) -> Any:
            with self.phase(name):
                return callback(*args, **kwargs)

        return call

    def split_loop(self, loop_s: float, epochs_s: float) -> None:
        """The loop took `loop_s`, its epochs `epochs_s` and its logging callback what `logging` holds
        so far: the rest of it was checkpoints (and pruning reports)."""
        self.seconds["epochs"] = epochs_s
        self.seconds["checkpoints"] = max(0.0, loop_s - epochs_s - self.seconds["logging"])

    def metrics(self) -> dict[str, float]:
        return {f"time_{name}_s": value for name, value in self.seconds.items()}

    def line(self) -> str:
        """`timing: startup 0.61 s, epochs 8.12 s, ...`: the form `parse_line` reads back."""
        return LINE_PREFIX + " " + ", ".join(f"{name} {value:.3f} s" for name, value in self.seconds.items())


def parse_line(text: str) -> dict[str, float] | None:
    """The phases of a `PhaseClock.line()` found in `text` (a log line), else None."""
    if LINE_PREFIX not in text:
        return None
    out = {}
    for part in text.split(LINE_PREFIX, 1)[1].split(","):
        name, value, *_ = part.split()
        out[name] = float(value)
    return out
