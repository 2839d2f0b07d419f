"""Where studies live: an RDB storage (SQLite by default, PostgreSQL/MySQL alike) with heartbeats,
or beyond one machine a journal file or Optuna's gRPC proxy (`sweeps.remote_storage`).

SQLite is shared by the sweeper and every parallel job, so connections wait on a lock (busy
timeout) instead of failing with "database is locked"; the ask step is serialised with a file lock
(`filelock`: flock on POSIX, msvcrt on Windows) so several sweeps on one SQLite study never
overshoot `n_trials`.
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Iterator
from pathlib import Path

import optuna
from filelock import FileLock

from ..errors import ConfigError
from .remote_storage import is_remote, normalize_remote, open_remote, shared_client
from .token_lock import token_lock

SQLITE = "sqlite:///"
SQLITE_BUSY_TIMEOUT_S = 120


def normalize_url(url: str) -> str:
    """Make a relative SQLite path absolute (against the launch folder) and create its folder.

    Jobs may run in another working directory (hydra.job.chdir, other machines' launchers), so
    the sweeper hands them the absolute URL.
    """
    url = str(url)
    if is_remote(url):  # journal:///abs/path, grpc://host:port
        return normalize_remote(url)
    if url.startswith("postgres://"):  # SQLAlchemy 2 only knows the long scheme name
        url = "postgresql://" + url[len("postgres://"):]
    if not url.startswith(SQLITE) or url == SQLITE + ":memory:":
        return url
    path = Path(url[len(SQLITE):]).expanduser()
    path = path if path.is_absolute() else Path.cwd() / path
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {path.parent} for the Optuna storage ({exc.strerror}) — "
                          "set hydra.sweeper.storage=sqlite:///<writable path>/optuna.db") from exc
    return SQLITE + str(path.resolve())


def sqlite_path(url: str) -> Path | None:
    return Path(url[len(SQLITE):]) if url.startswith(SQLITE) else None


def redact(url: str) -> str:
    """The URL without its password, for logs, tags and params (SQLAlchemy's own rendering)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(str(url)).render_as_string(hide_password=True)
    except ArgumentError:  # not a URL SQLAlchemy reads: show none of it, it may hold a password
        return "<unreadable storage URL>"


def make_storage(url: str, heartbeat_interval: int | None = None,
                 grace_period: int | None = None) -> optuna.storages.BaseStorage:
    url = normalize_url(url)
    if is_remote(url):
        return open_remote(url, heartbeat_interval, grace_period)
    engine_kwargs = {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}} if url.startswith(SQLITE) else {
        "pool_pre_ping": True}
    def open_storage() -> optuna.storages.RDBStorage:
        with ask_lock(url):  # two processes creating one new SQLite file race on its schema tables
            return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs,
                                              heartbeat_interval=heartbeat_interval or None,
                                              grace_period=grace_period or None)

    try:
        try:
            return open_storage()
        except Exception as exc:
            # A process outside our lock (optuna-dashboard, a script reading the study) created the
            # schema at the same moment: the tables exist now, so opening again succeeds.
            if not any(m in str(exc) for m in ("UNIQUE constraint failed", "already exists")):
                raise
            time.sleep(0.5)
            return open_storage()
    except ImportError as exc:
        raise ConfigError(f"the driver for {redact(url)} is not installed ({exc}) — for PostgreSQL "
                          "pip install 'latentsweep[postgres]'") from exc
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot open the Optuna storage {redact(url)}: {first} — check "
                          "hydra.sweeper.storage") from exc


@contextlib.contextmanager
def ask_lock(url: str) -> Iterator[None]:
    """Serialise count-then-ask across processes sharing one study.

    SQLite: a file lock beside the database. PostgreSQL: a session advisory lock, so
    workers on many machines never overshoot `n_trials` or race to create the schema. Other
    servers: no lock (a few extra trials are possible when workers ask at the same instant).
    Journal file and gRPC proxy: a token trial in a side study (`sweeps.token_lock`).
    """
    if is_remote(url):
        with token_lock(shared_client(url)):
            yield
        return
    path = sqlite_path(url)
    if path is not None:
        with FileLock(str(path) + ".lock"):
            yield
        return
    if url.startswith("postgresql"):
        from sqlalchemy import text

        with _engine(url).connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": PG_LOCK_KEY})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": PG_LOCK_KEY})
                conn.commit()
        return
    yield


PG_LOCK_KEY = 0x4C61_7465_6E74  # "Latent": one advisory lock for latentsweep's ask step


@functools.lru_cache(maxsize=8)
def _engine(url: str):
    from sqlalchemy import create_engine

    return create_engine(url, pool_pre_ping=True)
