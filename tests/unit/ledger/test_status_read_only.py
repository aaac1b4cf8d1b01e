"""``status`` on the ledger changes nothing: a real ledger service, real SQLite, real sockets.

The periodic work (re-publishing the kill flag, TRADE_ENABLED and commit health) belongs to
the heartbeat (``on_heartbeat``); ``status`` only reads what the ledger holds in memory.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from testkit import eventually, scratch_shm_dir

from pipeline.config import load_config
from pipeline.control import EventSubscriber
from pipeline.killflag import flag_path
from pipeline.ledger.process import LedgerService
from pipeline.runtime import Runtime


@pytest.fixture
def ledger(tmp_path: Path) -> Iterator[tuple[Runtime, LedgerService]]:
    with scratch_shm_dir() as shm:
        config = load_config(environ={}, overrides={"data_dir": str(tmp_path / "var"),
                                                    "rings": {"shm_dir": str(shm)}})
        runtime = Runtime.build(config, "ledger", to_stderr=False)
        service = LedgerService(runtime)
        try:
            yield runtime, service
        finally:
            service.close()
            runtime.close()


def _database_state(path: Path) -> list[object]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [conn.execute("SELECT * FROM config ORDER BY key").fetchall(),
                conn.execute("SELECT count(*) FROM audit_log").fetchone()]
    finally:
        conn.close()


def test_status_many_times_publishes_writes_and_reads_nothing(
        ledger: tuple[Runtime, LedgerService]) -> None:
    runtime, service = ledger
    config = runtime.config
    events = EventSubscriber(runtime.zmq_context, config.paths.run_dir, ["ledger"])
    try:
        def heard_a_heartbeat() -> bool:
            service.on_heartbeat()
            return bool(events.receive(timeout_ms=20))
        eventually(heard_a_heartbeat, timeout_s=10)  # the subscription is live
        while events.receive(timeout_ms=50):
            pass
        database = config.paths.database
        before = _database_state(database)
        flag = flag_path(Path(config.rings.shm_dir), config.paths.ring_prefix)
        flag.unlink()  # a heartbeat re-creates it; a status must not
        locker = sqlite3.connect(database, isolation_level=None)
        locker.execute("BEGIN IMMEDIATE")  # any database access by status would now wait
        try:
            started = time.monotonic()
            answers = [service.heartbeat() for _ in range(200)]
            elapsed_s = time.monotonic() - started
        finally:
            locker.execute("ROLLBACK")
            locker.close()
        assert elapsed_s < 1.0, "status waited for the database"
        assert all(a == answers[0] for a in answers)
        assert not flag.exists()
        assert _database_state(database) == before
        service.on_heartbeat()  # what is published now is the heartbeat's, nothing before it
        heard: list[str] = []
        eventually(lambda: heard.extend(t for t, _ in events.receive(timeout_ms=20)) is None
                   and len(heard) >= 2, timeout_s=5)
        assert sorted(heard) == ["config.TRADE_ENABLED", "ledger.health"]
        assert flag.exists()
    finally:
        events.close()
