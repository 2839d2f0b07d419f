"""Shared helpers: config composition, timing, JSON results with machine facts."""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = ROOT / "benchmarks" / "results"


def compose_train(overrides: Sequence[str]):
    from latentsweep.config import register_configs

    register_configs()
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(ROOT / "conf")):
        return compose("train", overrides=list(overrides))


def median_time(fn: Callable[[], Any], repeats: int = 3) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.rstrip() if out.returncode == 0 else None  # rstrip: porcelain lines start with a space


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """Where and when a figure was measured: CPU, cores, GPU, library versions, date, git commit.

    `commit_dirty` lists the changed tracked files (results files aside): figures measured on
    uncommitted code say so.
    """
    import torch

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # macOS
        usable = os.cpu_count()
    dirty = _git("status", "--porcelain", "--untracked-files=no")
    info = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git("rev-parse", "HEAD"),
        "commit_dirty": [line[3:] for line in (dirty or "").splitlines()
                         if not line[3:].startswith("benchmarks/results/")],
        "cpu": _cpu_model(), "cpu_count": os.cpu_count(), "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "load_avg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(), "platform": platform.platform(),
        "torch": torch.__version__, "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu": ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
                if torch.cuda.is_available() else []),
    }
    return info


# Where `save_results` writes: benchmarks/results/<run>/<section>.json. `benchmarks.run` sets the
# run to "bench-quick" or "bench", `gpu_check` to "gpu-check"; a section run on its own writes
# under "adhoc" (git-ignored, like "tiny": toy sizes that only check the code runs). One folder per kind of run, so a quick run never
# overwrites the full run's figures.
_RUN: dict[str, Any] = {"name": "adhoc", "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
                        "dir": RESULTS_DIR, "written": []}


def set_run(name: str, command: str, results_dir: Path | None = None) -> Path:
    """Name the run (and the command that started it) whose figures the following `save_results`
    calls write; returns its folder."""
    _RUN.update(name=name, command=command, dir=Path(results_dir) if results_dir else RESULTS_DIR, written=[])
    return run_dir()


def run_dir() -> Path:
    return Path(_RUN["dir"]) / str(_RUN["name"])


def written_files() -> list[Path]:
    """The files `save_results` wrote since `set_run`, in order."""
    return list(_RUN["written"])


def _plain(value: Any) -> Any:
    """JSON-ready numbers: numpy/torch scalars become floats/ints; anything else that is not a
    number, string, bool, None, list or dict is refused (a figure, never its type or repr)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    import numpy as np
    import torch

    if isinstance(value, np.generic) or (isinstance(value, torch.Tensor) and value.dim() == 0):
        return value.item()
    raise TypeError(f"save_results: {type(value).__name__} is not a figure — store numbers, strings, "
                    "lists or dicts")


def save_results(name: str, payload: dict[str, Any]) -> Path:
    """Write benchmarks/results/<run>/<name>.json: the figures plus where, when and how they were measured."""
    folder = run_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    body = {"section": name, "run": _RUN["name"], "command": _RUN["command"], "machine": machine(),
            **_plain(payload)}
    path.write_text(json.dumps(body, indent=1) + "\n")
    _RUN["written"].append(path)
    return path
