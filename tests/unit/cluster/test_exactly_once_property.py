"""Property: however the rows are split into batches and wherever the consolidator dies
(inside a transaction, between its statements, after a commit), shipping until a pass
completes gives exactly the host's rows: nothing lost, nothing twice, no order behind."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from ledgerkit import new_ledger, reports
from pg_server import PostgresServer
from sqlalchemy import Engine, create_engine, select, text

from pipeline.cluster.consolidator import Consolidator
from pipeline.ledger.backup.capture import backup_kinds
from pipeline.ledger.base import ModelBase
from pipeline.ledger.db import make_engine
from pipeline.records import OrderStatus

HOST = "prop"


class CrashError(Exception):
    """What the fault hook raises: the process dying at that point."""


def _copy(source: Path, dest: Path) -> None:
    """A consistent single-file copy (SQLite's backup API), as of one commit."""
    src, dst = sqlite3.connect(source), sqlite3.connect(dest)
    try:
        src.backup(dst)
    finally:
        dst.close()
        src.close()


@pytest.fixture(scope="module")
def phases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The same ledger twice: after phase 1 (orders still open) and after phase 2."""
    base = tmp_path_factory.mktemp("phases")
    store = new_ledger(base / "work.db")
    store.apply(reports(list(range(1, 26)), status=OrderStatus.NEW), {})
    store.apply(reports(list(range(1, 11)), price=101.0), {})
    store.set_config("TRADE_ENABLED", "false", actor="test")
    _copy(base / "work.db", base / "phase1.db")
    store.apply(reports(list(range(11, 21)), side=-1, price=99.0), {})
    store.apply(reports(list(range(21, 26)), status=OrderStatus.CANCELLED), {})
    store.apply(reports(list(range(26, 41)), status=[OrderStatus.NEW, OrderStatus.FILLED] * 7
                        + [OrderStatus.NEW], side=-1, price=98.0), {})
    store.audit("test", "phase2")
    _copy(base / "work.db", base / "phase2.db")
    return base / "phase1.db", base / "phase2.db"


@pytest.fixture(scope="module")
def pg(postgres_server: PostgresServer) -> Iterator[Engine]:
    engine = create_engine(postgres_server.create_database("exactly_once"))
    yield engine
    engine.dispose()


def _rows(engine: Engine, schema_map: dict[str | None, str] | None = None) -> dict[str, set]:
    """Every row of every ledger table, per table."""
    tables = ModelBase.metadata.tables
    conn_engine = engine.execution_options(schema_translate_map=schema_map or {})
    with conn_engine.connect() as conn:
        return {name: {tuple(r) for r in conn.execute(select(tables[name]))}
                for name in backup_kinds()}


def _ship_through_crashes(path: Path, pg: Engine, batch_rows: int, crash_at: set[int],
                          calls: list[int]) -> None:
    """Restart a consolidator after every crash until one pass completes."""

    def fault(_table: str, _point: str) -> None:
        calls[0] += 1
        if calls[0] in crash_at:
            raise CrashError(calls[0])

    for _ in range(len(crash_at) + 1):
        consolidator = Consolidator(HOST, path, pg, batch_rows=batch_rows, fault=fault)
        try:
            consolidator.start()
            consolidator.ship_once()
            return
        except CrashError:
            continue
        finally:
            consolidator.close()
    raise AssertionError("more crashes than planned")


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=st.tuples(st.integers(1, 30), st.integers(1, 30),
                     st.sets(st.integers(1, 80), max_size=5)))
def test_any_batches_any_crashes_same_rows(phases: tuple[Path, Path], pg: Engine,
                                           tmp_path: Path,
                                           plan: tuple[int, int, set[int]]) -> None:
    """``plan``: batch sizes of the two phases, and which fault-hook calls crash."""
    batch_rows, second_batch_rows, crash_at = plan
    phase1, phase2 = phases
    work = tmp_path / "host.db"
    with pg.begin() as conn:  # a clean slate: this host never shipped
        conn.execute(text(f"DROP SCHEMA IF EXISTS {HOST} CASCADE"))
        if conn.scalar(text("SELECT 1 FROM pg_namespace WHERE nspname = 'cluster'")):
            conn.execute(text("DELETE FROM cluster.cursors"))
            conn.execute(text("DELETE FROM cluster.hosts"))
    calls = [0]
    shutil.copyfile(phase1, work)
    _ship_through_crashes(work, pg, batch_rows, crash_at, calls)
    shutil.copyfile(phase2, work)  # the host wrote on: same rows and more
    _ship_through_crashes(work, pg, second_batch_rows, crash_at, calls)
    lite = make_engine(work, read_only=True)
    try:
        assert _rows(pg, {None: HOST}) == _rows(lite)
    finally:
        lite.dispose()
