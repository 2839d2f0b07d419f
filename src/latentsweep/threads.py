"""How many torch CPU threads one run takes, so that runs sharing a machine never oversubscribe it.

Why: torch's default is one OpenMP thread per core. Two runs with the defaults on 2 cores each
start 2 threads that spin against the other run's, and both slowed down 8-15x in our runs
(issue 21: 18-33 s per epoch instead of 2.2 s). The rule, from `benchmarks/bench_sharing.py`
(figures in benchmarks/results/bench-quick/sharing.json, docs/shared-machine.md):

- each run gets its share of the cores, cores // runs on this machine, so runs never hold more
  threads than there are cores between them;
- capped where more threads buy little (`MAX_THREADS`): rnn_ae and vrae at 2 (a second thread
  bought 1.08-1.15x in most runs on an AMD EPYC runner, 0.94x in one, and nothing on an Intel Xeon
  one: a small GRU gains no more from a third), highway_ae at 1 (0.95x with a second thread in
  both committed tables);
- conv_ae, transformer_ae and mlp_ae are not capped: their convolutions and matrix products
  split (1.10-1.64x from a second core in at least one committed table);
- a run on a GPU gets 1: its CPU only launches kernels.

"Runs on this machine" is the larger of what the sweep's launcher says it runs at once
(`sweep.parallel_trials`) and a machine-wide count: each live run holds a file in a lease folder
(one per user, under the temp dir; files of dead processes are ignored and removed). A run checks
the count again after every epoch, so a run that started alone gives its second thread back
when another starts. `trainer.num_threads` overrides all of it.

OpenMP's wait policy is left at its default (spin a little, then sleep): with this rule no run
holds more threads than its share of cores, so nothing spins against another run, and
OMP_WAIT_POLICY=PASSIVE made a run alone 2.3x slower (5 s vs 2.2 s per epoch, issue 21).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import uuid
from pathlib import Path

from .parallel import available_cores

# The most threads a run of these model classes takes, whatever its share of the cores:
# bench_sharing.py's threads table (bench-quick/sharing.json). On 2 cores a second thread gave
# rnn_ae 1.15x, 1.12x and 0.94x, vrae 1.08-1.15x on AMD EPYC (2026-12-02), both 1.00x on Intel Xeon
# (the session before). highway_ae: 0.95-1.00x, then 1.06x and 1.10x in two AMD EPYC runs, then 0.95x
# in both committed tables (bench-quick-1thread/ on AMD EPYC, bench-quick/ of 2026-12-06 on Intel
# Xeon): capped at 1 again, as the committed tables say (tests/test_threads.py holds the rule to them).
MAX_THREADS = {"RNNAutoencoder": 2, "VRAE": 2, "HighwayAutoencoder": 1}

LEASE_DIR_ENV = "LATENTSWEEP_LEASE_DIR"


def threads_for_run(model_class: str, device_type: str, cores: int, runs_on_machine: int) -> int:
    """Torch intra-op threads for one run: its share of the cores, capped where more buy nothing."""
    if device_type != "cpu":
        return 1
    share = max(1, cores // max(1, runs_on_machine))
    return min(share, MAX_THREADS.get(model_class, share))


def lease_dir() -> Path:
    """Where live runs hold their files: $LATENTSWEEP_LEASE_DIR, else one folder per user in /tmp."""
    override = os.environ.get(LEASE_DIR_ENV)
    if override:
        return Path(override)
    user = os.getuid() if hasattr(os, "getuid") else os.environ.get("USERNAME", "user")
    return Path(tempfile.gettempdir()) / f"latentsweep-runs-{user}"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OSError:  # e.g. Windows without that pid
        return False
    return True


def live_runs(directory: Path) -> int:
    """Runs whose process is alive and holds a lease in `directory`; stale files are removed."""
    count = 0
    with contextlib.suppress(FileNotFoundError):
        for path in directory.glob("*.run"):
            try:
                pid = int(path.name.split("-", 1)[0])
            except ValueError:
                continue
            if _alive(pid):
                count += 1
            else:  # a killed run: it no longer counts
                with contextlib.suppress(OSError):
                    path.unlink()
    return count


class RunLease:
    """This run's file in the lease folder while it trains (a context manager)."""

    def __init__(self, directory: Path | None = None):
        self.directory = Path(directory) if directory is not None else lease_dir()
        self.path: Path | None = None

    def __enter__(self) -> RunLease:
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            path = self.directory / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.run"
            path.write_text(str(os.getpid()))
            self.path = path
        except OSError:  # an unwritable temp dir must not stop training; the run just isn't counted
            self.path = None
        return self

    def __exit__(self, *exc) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.path = None

    def runs_on_machine(self) -> int:
        """Live runs holding a lease, this one included."""
        return max(1, live_runs(self.directory) + (0 if self.path is not None else 1))


class ThreadPolicy:
    """Applies the rule to this process, and again after every epoch (an epoch callback)."""

    def __init__(self, model_class: str, device_type: str, override: int | None = None,
                 launcher_runs: int = 1, lease: RunLease | None = None, cores: int | None = None):
        self.model_class, self.device_type = model_class, device_type
        self.override, self.launcher_runs, self.lease = override, max(1, int(launcher_runs)), lease
        self.cores = available_cores() if cores is None else cores
        self.threads: int | None = None

    def wanted(self) -> int:
        if self.override:
            return int(self.override)
        runs = max(self.launcher_runs, self.lease.runs_on_machine() if self.lease else 1)
        return threads_for_run(self.model_class, self.device_type, self.cores, runs)

    def apply(self) -> int:
        import torch

        wanted = self.wanted()
        if wanted != self.threads:
            torch.set_num_threads(wanted)
            if self.threads is None:  # inter-op threads can be set once, before any inter-op work
                with contextlib.suppress(RuntimeError):
                    torch.set_num_interop_threads(wanted)
            self.threads = wanted
        return wanted

    def __call__(self, epoch: int, metrics: dict) -> None:
        if not self.override:
            self.apply()
