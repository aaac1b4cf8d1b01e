"""``pipeline consolidate`` as a real process, SIGKILLed again and again while the host's
ledger keeps writing, with its PostgreSQL stopped and started once: in the end PostgreSQL
has every row of the host exactly once and every order in the host's final status."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from ledgerkit import new_ledger, reports
from pg_server import PostgresServer, find_bin_dir, running_postgres
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError as SqlOperationalError
from sqlalchemy.exc import ProgrammingError
from testkit import eventually

from pipeline.ledger.backup.capture import COUNTED
from pipeline.ledger.db import make_engine
from pipeline.records import OrderStatus

pytestmark = pytest.mark.slow
HOST = "crashy"
KILLS = 4
TABLES = tuple(t for t in COUNTED if t != "alembic_version")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def own_postgres() -> Iterator[PostgresServer]:
    """A server of this test's own: it is stopped and started mid-test."""
    with running_postgres() as server:
        yield server


def _pg_ctl(data: str, action: str) -> None:
    """Stop or start the server of data directory ``data`` with the options it had."""
    bin_dir = find_bin_dir()
    assert bin_dir is not None
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if action == "stop":
        cmd = [str(bin_dir / "pg_ctl"), "-D", data, "-m", "fast", "-w", "stop"]
    else:
        opts = shlex.split(Path(data, "postmaster.opts").read_text())
        options = " ".join(shlex.quote(o) for o in opts[opts.index(data) + 1:])
        cmd = [str(bin_dir / "pg_ctl"), "-D", data, "-o", options, "-l",
               str(Path(data).parent / "server.log"), "-w", "start"]
    subprocess.run([*as_user, *cmd], check=True, capture_output=True, timeout=60,
                   cwd=Path(data).parent)


class Writer(threading.Thread):
    """The host's ledger at work: new orders, then fills or cancels, until stopped."""

    def __init__(self, path: Path) -> None:
        super().__init__(daemon=True)
        self.store = new_ledger(path)
        self.stop = threading.Event()
        self.next_id = 1
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                ids = list(range(self.next_id, self.next_id + 20))
                self.next_id += 20
                self.store.apply(reports(ids, status=OrderStatus.NEW), {})
                half = ids[:10]
                self.store.apply(reports(half, side=[1, -1] * 5, price=100.0 + len(ids) % 3),
                                 {})
                self.store.apply(reports(ids[10:15], status=OrderStatus.CANCELLED), {})
                # ids[15:] stay open until finish(): the consolidator must come back to them
        except BaseException as exc:  # reported by the test thread
            self.error = exc

    def finish(self) -> None:
        """Stop writing and close every still open order."""
        self.stop.set()
        self.join(timeout=30)
        assert self.error is None, self.error
        open_ids = [i for i in range(1, self.next_id) if (i - 1) % 20 >= 15]
        for start in range(0, len(open_ids), 500):
            self.store.apply(reports(open_ids[start:start + 500], side=-1, price=101.0), {})


def _start(database: Path, url: str, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PIPELINE_CLUSTER_POSTGRES_URL": url}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", "consolidate", "--host", HOST, "--database",
             str(database), "--interval-s", "0.05", "--batch-rows", "40"],
            env=env, stdout=out, stderr=subprocess.STDOUT, cwd=database.parent)


def _shipped(engine: Engine, table: str = "fills") -> int:
    try:
        with engine.connect() as conn:
            return int(conn.scalar(text("SELECT last_id FROM cluster.cursors WHERE host = "
                                        ":host AND table_name = :table"),
                                   {"host": HOST, "table": table}) or 0)
    except (SqlOperationalError, ProgrammingError):  # server down; no cluster schema yet
        return 0


def _host_state(database: Path) -> tuple[dict[str, int], dict[int, str]]:
    engine = make_engine(database, read_only=True)
    with engine.connect() as conn:
        counts = {t: int(conn.scalar(text(f"SELECT count(*) FROM {t}")) or 0) for t in TABLES}
        statuses = dict(conn.execute(text("SELECT id, status FROM orders")).all())
    engine.dispose()
    return counts, statuses


def _pg_state(engine: Engine) -> tuple[dict[str, int], dict[int, str]]:
    with engine.connect() as conn:
        counts = {t: int(conn.scalar(text(f"SELECT count(*) FROM {HOST}.{t}")) or 0)
                  for t in TABLES}
        statuses = dict(conn.execute(text(f"SELECT id, status FROM {HOST}.orders")).all())
    return counts, statuses


def test_sigkills_and_a_postgres_restart_lose_and_double_nothing(
        tmp_path: Path, own_postgres: PostgresServer) -> None:
    url = own_postgres.create_database("crash")
    engine = create_engine(url, pool_pre_ping=True)
    with engine.connect() as conn:
        data = str(conn.scalar(text("SHOW data_directory")))
    database = tmp_path / "host.db"
    log = tmp_path / "consolidate.log"
    writer = Writer(database)
    writer.start()
    proc = _start(database, url.render_as_string(hide_password=False), log)
    try:
        shipped = 0
        for _ in range(KILLS):
            eventually(lambda: _shipped(engine) > shipped, timeout_s=60,  # noqa: B023
                       message="the consolidator ships more fills")
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            shipped = _shipped(engine)
            proc = _start(database, url.render_as_string(hide_password=False), log)
        eventually(lambda: _shipped(engine) > shipped, timeout_s=60, message="ships again")
        engine.dispose()
        _pg_ctl(data, "stop")
        eventually(lambda: b"consolidate.postgres_lost" in log.read_bytes(), timeout_s=60,
                   message="the consolidator notices PostgreSQL is gone")
        assert proc.poll() is None, "it waits for PostgreSQL rather than dying"
        _pg_ctl(data, "start")
        shipped = _shipped(engine)
        eventually(lambda: _shipped(engine) > shipped, timeout_s=60,
                   message="ships again after PostgreSQL came back")
        writer.finish()
        host = _host_state(database)
        eventually(lambda: _pg_state(engine) == host, timeout_s=60,
                   message="PostgreSQL equals the host")
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        writer.stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
        engine.dispose()
    counts, statuses = _pg_state(engine)
    assert counts == host[0]
    assert statuses == host[1]
    assert set(statuses.values()) == {"filled", "cancelled"}
    with engine.connect() as conn:  # the views, keyed (host, id), hold each row once too
        for view in ("orders", "fills", "balances"):
            assert conn.scalar(text(f"SELECT count(*) - count(DISTINCT (host, id)) "
                                    f"FROM cluster.{view}")) == 0
    engine.dispose()
    assert own_postgres.password.encode() not in log.read_bytes()
