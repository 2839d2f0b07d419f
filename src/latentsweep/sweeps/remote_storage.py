"""Studies beyond one machine without an RDB URL: a journal file on a shared filesystem, or
Optuna's gRPC storage proxy.

- `journal:///shared/path/study.log`: Optuna's `JournalStorage` on its file backend. SQLite's
  locking is unreliable on network filesystems; the journal appends under Optuna's own lock (a
  symlink, `JournalFileSymlinkLock`, atomic on NFS), so sweep commands on several nodes share one study.
- `grpc://host:port`: `GrpcStorageProxy`, a client of Optuna's `run_grpc_proxy_server` running in
  front of PostgreSQL/MySQL, so hundreds of workers do not each hold database connections.

Neither storage implements Optuna's heartbeats, which the sweeper needs to tell a trial whose
process died (continue it from its checkpoint) from one still training. Both get them here the
same way: a beat is a trial system attribute holding the writer's clock (`time.time()`), and a
RUNNING trial is stale when its last beat (or its start, before the first beat) is older than the
grace period. Nodes sharing a study need clocks within a few seconds of each other (NTP).
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import optuna
from optuna.storages import BaseStorage
from optuna.storages._heartbeat import BaseHeartbeat
from optuna.trial import FrozenTrial, TrialState

from ..errors import ConfigError

JOURNAL = "journal://"
GRPC = "grpc://"
BEAT_ATTR = "latentsweep:heartbeat"  # trial system attr: the last beat, seconds since the epoch
GRPC_CONNECT_TIMEOUT_S = 30


def is_remote(url: str) -> bool:
    """True for the storages this module opens (journal file, gRPC proxy)."""
    return str(url).startswith((JOURNAL, GRPC))


def journal_path(url: str) -> Path:
    """The journal file of a `journal:///abs/path` URL; a relative path is a config error (every
    node and every job must name the same file)."""
    path = str(url)[len(JOURNAL):]
    if not path.startswith("/"):
        raise ConfigError(f"hydra.sweeper.storage={url} is not an absolute path — write "
                          "journal:///shared/path/study.log (three slashes, a path every node sees)")
    return Path(path)


def grpc_address(url: str) -> tuple[str, int]:
    host, _, port = str(url)[len(GRPC):].rstrip("/").rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(f"hydra.sweeper.storage={url} names no host:port — write grpc://<proxy host>:<port>, "
                          "e.g. grpc://db-host:13000")
    return host, int(port)


def normalize_remote(url: str) -> str:
    """Check the URL; for a journal, create its folder (like a new SQLite file's)."""
    if str(url).startswith(GRPC):
        grpc_address(url)
        return str(url)
    path = journal_path(url)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create {path.parent} for the journal ({exc.strerror}) — set "
                          "hydra.sweeper.storage=journal:///<writable shared path>/study.log") from exc
    return JOURNAL + str(path)


class _AttrHeartbeat(BaseHeartbeat):
    """Heartbeats as trial system attributes (see the module docstring)."""

    _heartbeat_interval: int | None = None
    _grace_period: int | None = None

    def record_heartbeat(self, trial_id: int) -> None:
        self.set_trial_system_attr(trial_id, BEAT_ATTR, time.time())

    def _get_stale_trial_ids(self, study_id: int) -> list[int]:
        interval = self.get_heartbeat_interval()
        if not interval:
            return []
        grace = self._grace_period or 2 * interval  # RDBStorage's default
        now = time.time()
        return [t._trial_id for t in self.get_all_trials(study_id, deepcopy=False, states=(TrialState.RUNNING,))
                if now - last_beat(t) > grace]

    def get_heartbeat_interval(self) -> int | None:
        return self._heartbeat_interval

    def get_heartbeat_stale_trial_callback(self) -> Callable[[optuna.Study, FrozenTrial], None] | None:
        return None


def last_beat(trial: FrozenTrial) -> float:
    """The trial's last heartbeat, or its start when it has not beaten yet."""
    beat = trial.system_attrs.get(BEAT_ATTR)
    if beat is not None:
        return float(beat)
    start = trial.datetime_start or datetime.now(tz=timezone.utc)
    return (start if start.tzinfo else start.astimezone()).timestamp()


class HeartbeatJournalStorage(optuna.storages.JournalStorage, _AttrHeartbeat):
    """`JournalStorage` with heartbeats."""


class HeartbeatGrpcStorageProxy(optuna.storages.GrpcStorageProxy, _AttrHeartbeat):
    """`GrpcStorageProxy` with heartbeats."""


def open_remote(url: str, heartbeat_interval: int | None = None, grace_period: int | None = None) -> BaseStorage:
    """The storage of a `journal://` or `grpc://` URL, heartbeats on when `heartbeat_interval`."""
    url = normalize_remote(url)
    if url.startswith(JOURNAL):
        from optuna.storages.journal import JournalFileBackend

        storage = HeartbeatJournalStorage(JournalFileBackend(str(journal_path(url))))
    else:
        try:
            import grpc  # noqa: F401
        except ImportError as exc:
            raise ConfigError("the gRPC storage needs grpcio — pip install 'latentsweep[grpc]'") from exc
        host, port = grpc_address(url)
        with warnings.catch_warnings():  # "experimental" since Optuna 4.2: we pin and test it
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
            storage = HeartbeatGrpcStorageProxy(host=host, port=port)
        try:
            storage.wait_server_ready(timeout=GRPC_CONNECT_TIMEOUT_S)
        except ConnectionError as exc:
            raise ConfigError(f"no Optuna gRPC proxy answers at {host}:{port} within {GRPC_CONNECT_TIMEOUT_S} s — "
                              "start it (docs/cluster.md) or fix hydra.sweeper.storage") from exc
    storage._heartbeat_interval = heartbeat_interval or None
    storage._grace_period = grace_period or None
    return storage


@functools.lru_cache(maxsize=8)
def shared_client(url: str) -> BaseStorage:
    """One storage per process and URL for the ask lock (`sweeps.token_lock`)."""
    return open_remote(url)
