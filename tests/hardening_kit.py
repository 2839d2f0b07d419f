"""Helpers shared by the hardening, fault and UI tests: CLI runs, store digests, servers, read-only paths.

Kept out of conftest.py so only the tests that need subprocesses and servers import them.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import hashlib
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# A sweep small enough for 2 CPU cores: ~1 s per trial.
SWEEP_TINY = ["~search", "data.n_series=40", "data.shortest=10", "data.longest=20", "data.batch_size=16",
              "model.hidden_size=16", "model.latent_dim=4", "trainer.progress=false", "trainer.num_threads=1",
              "tracking.n_reconstructions=0", "hydra.sweeper.pruner.name=median", "hydra.sweeper.pruner.n_startup_trials=1",
              "hydra.sweeper.pruner.n_warmup_steps=0", "hydra.sweeper.register_best=false"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def cli_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI" and not k.startswith("MLFLOW_HTTP")}
    env.update(MPLBACKEND="Agg", GIT_PYTHON_REFRESH="quiet", PYTHONWARNINGS="ignore", **extra)
    return env


def train_cmd(*args: str, sweep: bool = False) -> list[str]:
    head = [sys.executable, str(ROOT / "train.py"), "model=rnn_ae"]  # the tests' sizes are rnn_ae's; model= wins
    return head + (["-m", "hydra/sweeper=optuna", *SWEEP_TINY] if sweep else []) + list(args)


def run_cli(cwd: Path, *args: str, sweep: bool = False, timeout: float = 180, env=None):
    """`python train.py [-m hydra/sweeper=optuna ...] args` in `cwd`: CompletedProcess."""
    return subprocess.run(train_cmd(*args, sweep=sweep), cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env or cli_env())


def error_line(stderr: str) -> str:
    """The one line a failed start printed: `error: <message>` (single runs) or, from Hydra's
    sweep launcher, the last line `<module>.<Error>: <message>`."""
    lines = [line for line in stderr.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("error: "):
            return line[len("error: "):]
    return lines[-1].split(": ", 1)[-1] if lines else ""


def digest(*folders: Path) -> dict[str, str]:
    """sha256 per file under `folders` (names relative to each folder): 'nothing stored changed'."""
    out = {}
    for folder in folders:
        for f in sorted(Path(folder).rglob("*")):
            if f.is_file() and not f.name.endswith(".lock"):
                out[f"{folder.name}/{f.relative_to(folder)}"] = hashlib.sha256(f.read_bytes()).hexdigest()
    return out


def wait_for(predicate, timeout: float, what: str, interval: float = 0.02):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what}")


def running_trials(db: Path, study_name: str = "rnn_ae-synthetic") -> list | None:
    """The trials of a study a running sweep writes to, or None while it has no study yet.

    Opens the database the way the sweep does (`make_storage`, under its schema lock): a poll
    that opened a new SQLite file bare could create the schema tables at the same instant as the
    sweep, and one of the two would fail with "table ... already exists".
    """
    import optuna

    from latentsweep.sweeps.storage import make_storage

    if not db.exists():  # (opening a missing SQLite file would create it)
        return None
    try:
        return optuna.load_study(study_name=study_name, storage=make_storage(f"sqlite:///{db}")).trials
    except KeyError:  # the database exists, the study not yet
        return None


@functools.lru_cache(maxsize=1)
def _store_template() -> Path:
    """An empty, migrated MLflow SQLite store, made once per session (migrations take ~5 s)."""
    from mlflow.tracking import MlflowClient

    folder = Path(tempfile.mkdtemp(prefix="latentsweep-store-"))
    atexit.register(shutil.rmtree, folder, True)
    MlflowClient(f"sqlite:///{folder / 'mlflow.db'}").search_experiments()
    return folder / "mlflow.db"


def empty_store(folder: Path) -> str:
    """A fresh MLflow store in `folder` (a copy of the template); returns its tracking URI."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(_store_template(), folder / "mlflow.db")
    return f"sqlite:///{folder / 'mlflow.db'}"


# --- read-only paths, also as root -------------------------------------------------------------

def _writable(path: Path) -> bool:
    probe = path / ".probe" if path.is_dir() else path
    try:
        if path.is_dir():
            probe.write_text("x")
            probe.unlink()
        else:
            with open(path, "a"):
                pass
        return True
    except OSError:
        return False


def _chattr(path: Path, flag: str) -> bool:
    if not shutil.which("chattr"):
        return False
    return subprocess.run(["chattr", flag, str(path)], capture_output=True).returncode == 0


def _read_only_bind_mount(path: Path) -> bool:
    """Bind-mount `path` onto itself, then remount that read-only (root with CAP_SYS_ADMIN only)."""
    if not shutil.which("mount"):
        return False
    if subprocess.run(["mount", "--bind", str(path), str(path)], capture_output=True).returncode != 0:
        return False
    if subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", str(path)], capture_output=True)
        return False
    return True


READ_ONLY_METHODS = ("chmod", "chattr +i", "read-only bind mount")


@contextlib.contextmanager
def read_only(path: Path, methods: tuple[str, ...] = READ_ONLY_METHODS) -> Iterator[str]:
    """Make `path` (file or folder) unwritable for this process; yield how (one of `methods`).

    Root ignores permission bits, so as root (how CI runs) the immutable attribute is tried next,
    then a read-only bind mount of the path onto itself. Where none of them holds (an unprivileged
    container on overlayfs) the test is skipped with the reason; docs/troubleshooting.md says which rows that hits.
    """
    mode = path.stat().st_mode
    done: list[str] = []
    try:
        for how in methods:
            if how == "chmod":
                path.chmod(0o500 if path.is_dir() else 0o444)
                done.append(how)
            elif how == "chattr +i" and _chattr(path, "+i"):
                done.append(how)
            elif how == "read-only bind mount" and _read_only_bind_mount(path):
                done.append(how)
            if done and done[-1] == how and not _writable(path):
                break
        else:
            pytest.skip(f"cannot make {path} read-only here ({', '.join(methods)} did not hold: running as root "
                        "without chattr +i or mount privileges?)")
        yield done[-1]
    finally:
        if "read-only bind mount" in done:
            subprocess.run(["umount", str(path)], capture_output=True)
        if "chattr +i" in done:
            _chattr(path, "-i")
        path.chmod(mode)


# --- an MLflow server -----------------------------------------------------------------------------

def mlflow_bin() -> str:
    return str(Path(sys.executable).parent / "mlflow")


@contextlib.contextmanager
def mlflow_servers(folder: Path, count: int = 1, command: str = "server") -> Iterator[list[tuple[str, subprocess.Popen]]]:
    """`count` x `mlflow server` (or `mlflow ui`) over `folder`/mlflow.db, each on a free loopback port.

    Started together and awaited together: one start-up costs ~10 s on 2 busy cores. Yields
    [(url, process)]; every process (and its workers) is killed on exit.
    """
    folder.mkdir(parents=True, exist_ok=True)
    servers = []
    try:
        for _ in range(count):
            port = free_port()
            log_path = folder / f"server-{port}.log"
            cmd = [mlflow_bin(), command, "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
                   "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
                   "--port", str(port), "--workers", "1"]
            with open(log_path, "ab") as log:
                proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=cli_env(),
                                        start_new_session=True)
            servers.append((f"http://127.0.0.1:{port}", proc, log_path))
        for url, proc, log_path in servers:
            def up(url=url, proc=proc, log_path=log_path) -> bool:
                if proc.poll() is not None:
                    pytest.fail(f"mlflow {command} exited: {log_path.read_text()[-2000:]}")
                try:
                    with urllib.request.urlopen(f"{url}/health", timeout=1) as resp:
                        return resp.status == 200
                except OSError:
                    return False

            wait_for(up, 120, f"mlflow {command} on {url}", interval=0.2)
        yield [(url, proc) for url, proc, _ in servers]
    finally:
        for _, proc, _ in servers:
            stop_group(proc)


@contextlib.contextmanager
def mlflow_server(folder: Path, command: str = "server") -> Iterator[tuple[str, subprocess.Popen]]:
    """One server: (url, process)."""
    with mlflow_servers(folder, 1, command) as servers:
        yield servers[0]


def _descendants(pid: int) -> list[int]:
    """Every live process below `pid`, read from /proc (MLflow 3's job runner starts its huey
    consumers in sessions of their own, so killing the server's group alone leaves them running)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_group(proc: subprocess.Popen, sig: int = 9) -> None:
    """Kill a server started with start_new_session=True, its group and every process below it."""
    doomed = _descendants(proc.pid)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, sig)
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
    proc.wait(timeout=30)
