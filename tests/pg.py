"""A throwaway PostgreSQL server for tests: Debian's binaries on a tmp data dir and a free loopback port.

Why not a container or a shared server: the tests must prove our Optuna storage works against a
real PostgreSQL, on a CI box with no network beyond the package mirrors. `initdb` refuses to run
as root, so as root the server runs as the `postgres` system user (created by the Debian package);
the data folder is made over to that user. `pg_available()` says why not when it cannot run.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

SERVICE_USER = "postgres"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pg_bindir() -> Path | None:
    """The newest `/usr/lib/postgresql/<version>/bin` that holds initdb and pg_ctl."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if not found:
        on_path = shutil.which("initdb")
        return Path(on_path).parent if on_path and shutil.which("pg_ctl") else None
    return Path(found[-1]).parent


def pg_available() -> str | None:
    """None when a server can be started, else the reason (for pytest.skip)."""
    if pg_bindir() is None:
        return "PostgreSQL binaries missing (apt-get install -y postgresql)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "psycopg 3 missing (pip install 'latentsweep[postgres]')"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            return f"running as root and no {SERVICE_USER!r} user to run initdb as"
        if not shutil.which("runuser"):
            return "running as root and no runuser to drop privileges for initdb"
    return None


def _as_service_user(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", SERVICE_USER, "--", *cmd] if os.geteuid() == 0 else cmd


@contextmanager
def postgres_server(database: str = "optuna") -> Iterator[str]:
    """Start a server on a fresh folder, yield a SQLAlchemy URL to `database`; stop and delete after.

    The folder is its own `mkdtemp` under the system tmp dir (not pytest's tmp_path, which is
    private to root): as root it is handed to the service user, nothing else changes owner.
    """
    bindir = pg_bindir()
    folder = Path(tempfile.mkdtemp(prefix="latentsweep-pg-"))
    data, sock = folder / "data", folder / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        entry = pwd.getpwnam(SERVICE_USER)
        for path in (folder, sock):
            os.chown(path, entry.pw_uid, entry.pw_gid)
    port = free_port()
    user = SERVICE_USER if os.geteuid() == 0 else pwd.getpwuid(os.geteuid()).pw_name
    subprocess.run(_as_service_user([str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", user,
                                     "--no-sync", "-E", "UTF8"]),
                   check=True, capture_output=True, timeout=120)
    opts = f"-c listen_addresses=127.0.0.1 -p {port} -k {sock} -c fsync=off -c max_connections=60"
    subprocess.run(_as_service_user([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts,
                                     "-l", str(folder / "server.log"), "-w", "-t", "60", "start"]),
                   check=True, capture_output=True, timeout=90)
    try:
        import psycopg

        deadline = time.time() + 30
        while True:
            try:
                with psycopg.connect(f"host=127.0.0.1 port={port} user={user} dbname=postgres",
                                     autocommit=True) as conn:
                    conn.execute(f'CREATE DATABASE "{database}"')
                break
            except psycopg.OperationalError:
                if time.time() > deadline:
                    raise
                time.sleep(0.2)
        yield f"postgresql+psycopg://{user}@127.0.0.1:{port}/{database}"
    finally:
        subprocess.run(_as_service_user([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w",
                                         "stop"]), capture_output=True, timeout=60)
        shutil.rmtree(folder, ignore_errors=True)
