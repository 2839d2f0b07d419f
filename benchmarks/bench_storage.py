"""Ask-and-tell latency per trial with 8 concurrent workers, by study storage (issue 28).

Eight worker processes share one study and each runs `TRIALS_PER_WORKER` trials of ask, one
suggest, tell (Optuna's RandomSampler: what is timed is the storage, not a sampler's model). Two
ways per storage:

- plain: `study.ask()` + `study.tell()`, what any Optuna worker does;
- as our sweeper asks: count the study's trials and ask under `sweeps.storage.ask_lock` (file lock
  on SQLite, advisory lock on PostgreSQL, the token trial on journal and gRPC), then tell.

Storages: SQLite file, journal file (`journal:///...`), Optuna's gRPC proxy
(`sweeps.grpc_proxy`) in front of PostgreSQL, and PostgreSQL direct (the throwaway server of
tests/pg.py, fsync off; both rows are left out where PostgreSQL is not installed).

    python -m benchmarks.bench_storage      # -> benchmarks/results/cluster/storage.json
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import optuna

from latentsweep.tables import markdown_table

from .common import ROOT, save_results, set_run

WORKERS = 8
TRIALS_PER_WORKER = int(os.environ.get("BENCH_STORAGE_TRIALS", 25))
STUDY = "bench"


def _worker(url: str, name: str, locked: bool, seed: int, barrier, results) -> None:
    import warnings

    warnings.filterwarnings("ignore")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    from latentsweep.sweeps.storage import ask_lock, make_storage

    study = optuna.load_study(study_name=name, storage=make_storage(url),
                              sampler=optuna.samplers.RandomSampler(seed=seed))
    lock = (lambda: ask_lock(url)) if locked else contextlib.nullcontext
    barrier.wait()
    latencies = []
    for _ in range(TRIALS_PER_WORKER):
        t0 = time.perf_counter()
        with lock():
            if locked:
                len(study.get_trials(deepcopy=False))  # the sweeper counts before it asks
            trial = study.ask()
        study.tell(trial, trial.suggest_float("x", 0.0, 1.0))
        latencies.append(time.perf_counter() - t0)
    results.put(latencies)


def measure(url: str, locked: bool, name: str) -> dict:
    """Per-trial latency (median, p90, ms) and trials/s of 8 workers on a fresh study at `url`."""
    from latentsweep.sweeps.storage import make_storage

    optuna.create_study(study_name=name, storage=make_storage(url))
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(WORKERS + 1), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, name, locked, i, barrier, results))
             for i in range(WORKERS)]
    for proc in procs:
        proc.start()
    barrier.wait()
    t0 = time.perf_counter()
    latencies = sorted(x for _ in procs for x in results.get(timeout=600))
    wall = time.perf_counter() - t0
    for proc in procs:
        proc.join(30)
    return {"median_ms": 1000 * statistics.median(latencies),
            "p90_ms": 1000 * latencies[int(0.9 * (len(latencies) - 1))],
            "trials_per_s": len(latencies) / wall, "n_trials": len(latencies)}


@contextlib.contextmanager
def grpc_proxy(storage_url: str) -> Iterator[str]:
    from tests.pg import free_port

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "latentsweep.sweeps.grpc_proxy", "--storage", storage_url,
                             "--host", "127.0.0.1", "--port", str(port)], stderr=subprocess.DEVNULL)
    try:
        yield f"grpc://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


def run() -> dict:
    sys.path.insert(0, str(ROOT))
    from tests.pg import pg_available, postgres_server

    figures = {}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        pg = pg_available()  # None: a server can be started
        storages = {"SQLite file": f"sqlite:///{tmp}/optuna.db", "journal file": f"journal://{tmp}/study.log"}
        if pg is None:  # the proxy fronts a database server (sweeps.grpc_proxy refuses SQLite)
            pg_url = stack.enter_context(postgres_server())
            storages["gRPC proxy -> PostgreSQL"] = stack.enter_context(grpc_proxy(pg_url))
            storages["PostgreSQL direct"] = pg_url
        else:
            print(f"no PostgreSQL ({pg}): the gRPC proxy and PostgreSQL rows are left out")
        for label, url in storages.items():
            for locked in (False, True):
                # a study per measurement (the proxy and PostgreSQL direct share one database)
                result = measure(url, locked, f"{STUDY}-{len(figures)}")
                figures[f"{label} | {'sweeper' if locked else 'plain'}"] = result
    payload = {"workers": WORKERS, "trials_per_worker": TRIALS_PER_WORKER, "sampler": "RandomSampler",
               "postgresql": pg or "tests/pg.py throwaway server, fsync=off", "load_average_at_end": os.getloadavg(),
               "results": figures}
    save_results("storage", payload)
    print(docs_table(payload))
    return payload


def docs_table(payload: dict) -> str:
    """The table of docs/cluster.md (tests/test_cluster.py checks it is the committed results')."""
    rows = []
    for key, result in payload["results"].items():
        label, mode = key.split(" | ")
        rows.append([label, "ask, tell" if mode == "plain" else "count + ask under the ask lock, tell",
                     f"{result['median_ms']:.0f}", f"{result['p90_ms']:.0f}", f"{result['trials_per_s']:.1f}"])
    return markdown_table(["storage", "per trial", "median ms", "p90 ms", "trials/s, 8 workers together"], rows)


if __name__ == "__main__":
    set_run("cluster", "python -m benchmarks.bench_storage")
    run()
