"""`python -m latentsweep.sweeps.grpc_proxy --storage postgresql://... --port 13000`: Optuna's gRPC
storage proxy in front of an RDB, for sweeps with many workers (`hydra.sweeper.storage=grpc://host:port`).

Each worker then holds one gRPC channel instead of its own database connections, and the proxy
caches finished trials. This is Optuna's `run_grpc_proxy_server` over `get_storage` (the cached RDB
storage, as Optuna's docs advise), with the URL checks and errors of our own storages.
"""

from __future__ import annotations

import argparse
import logging
import sys

import optuna

from ..cli import report_error
from ..errors import ConfigError
from .storage import normalize_url, redact

log = logging.getLogger("latentsweep.sweeps")


def serve(storage_url: str, host: str = "0.0.0.0", port: int = 13000) -> None:
    """Serve `storage_url` over gRPC until killed."""
    url = normalize_url(storage_url)
    if not url.startswith(("postgresql", "mysql")):
        # the sweepers' ask lock (sweeps.token_lock) needs the row locks of a database server:
        # behind a proxy, SQLite lets two workers take one token
        raise ConfigError(f"--storage {redact(url)}: the proxy fronts a database server — give a "
                          "postgresql://user:pw@host/db (or mysql://) URL")
    storage = optuna.storages.get_storage(url)
    log.info("Optuna gRPC proxy for %s on %s:%d", redact(url), host, port)
    optuna.storages.run_grpc_proxy_server(storage, host=host, port=port)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", required=True, help="the RDB URL the proxy fronts (postgresql://...)")
    parser.add_argument("--host", default="0.0.0.0", help="address to listen on (default: every interface)")
    parser.add_argument("--port", type=int, default=13000)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        serve(args.storage, args.host, args.port)
    except ConfigError as exc:
        report_error(exc, log)
        sys.exit(1)


if __name__ == "__main__":
    main()
