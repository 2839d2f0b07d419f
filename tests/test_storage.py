"""The study storage's helpers: URLs in logs never show a password; the ask lock serialises."""

from __future__ import annotations

import threading
import time

from latentsweep.sweeps.storage import ask_lock, redact


def test_a_storage_url_in_logs_hides_its_password_and_keeps_the_rest():
    assert redact("postgresql://user:s3cret@db-host:5432/optuna") == "postgresql://user:***@db-host:5432/optuna"
    assert redact("postgresql+psycopg://u:p%40ss@h/d") == "postgresql+psycopg://u:***@h/d"  # an escaped @
    assert redact("sqlite:////tmp/sweeps/optuna.db") == "sqlite:////tmp/sweeps/optuna.db"
    assert "s3cret" not in redact("not a url user:s3cret@host")


def test_the_sqlite_ask_lock_lets_one_holder_in_at_a_time(tmp_path):
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    events: list[str] = []

    def second_worker() -> None:
        with ask_lock(url):
            events.append("second in")

    with ask_lock(url):
        worker = threading.Thread(target=second_worker)
        worker.start()
        time.sleep(0.3)
        events.append("first out")
    worker.join(timeout=10)
    assert events == ["first out", "second in"]
    assert (tmp_path / "optuna.db.lock").exists()
