"""Consolidator: two real ledgers (written through LedgerStore) shipped into a real
PostgreSQL; counts, views, forward-only orders, refusals, and the host file left alone."""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from ledgerkit import new_ledger, reports
from pg_server import PostgresServer
from sqlalchemy import Engine, create_engine, text

from pipeline.cluster.consolidator import Consolidator
from pipeline.cluster.pgschema import validate_host
from pipeline.errors import OperationalError
from pipeline.ledger.backup.capture import COUNTED
from pipeline.ledger.config import LedgerConfig
from pipeline.ledger.db import init_db, make_engine
from pipeline.ledger.store import LedgerStore
from pipeline.records import OrderStatus

TABLES = tuple(t for t in COUNTED if t != "alembic_version")
_databases = itertools.count()


@pytest.fixture
def pg(postgres_server: PostgresServer) -> Iterator[Engine]:
    """A fresh database per test: hosts and views of one test do not leak into another."""
    engine = create_engine(postgres_server.create_database(f"cons{next(_databases)}"))
    yield engine
    engine.dispose()


def _trade(store: LedgerStore, first_id: int, n: int, *, side: int, price: float,
           symbol_id: int = 1) -> None:
    ids = list(range(first_id, first_id + n))
    store.apply(reports(ids, status=OrderStatus.NEW, side=side, symbol_id=symbol_id), {})
    store.apply(reports(ids, side=side, price=price, symbol_id=symbol_id), {})


def sqlite_counts(path: Path) -> dict[str, int]:
    engine = make_engine(path, read_only=True)
    with engine.connect() as conn:
        counts = {t: int(conn.scalar(text(f"SELECT count(*) FROM {t}")) or 0) for t in TABLES}
    engine.dispose()
    return counts


def pg_counts(pg: Engine, host: str) -> dict[str, int]:
    with pg.connect() as conn:
        return {t: int(conn.scalar(text(f'SELECT count(*) FROM "{host}".{t}')) or 0)
                for t in TABLES}


def _other_environment(path: Path) -> Path:
    engine = make_engine(path)
    init_db(engine, "devnet", LedgerConfig())
    engine.dispose()
    return path


def ship(host: str, path: Path, pg: Engine, **kw: int) -> dict[str, int]:
    consolidator = Consolidator(host, path, pg, **kw)
    try:
        consolidator.start()
        return consolidator.ship_once()
    finally:
        consolidator.close()


def test_two_hosts_shipped_counts_and_views(tmp_path: Path, pg: Engine) -> None:
    a, b = new_ledger(tmp_path / "a.db"), new_ledger(tmp_path / "b.db")
    _trade(a, 1, 30, side=1, price=100.0)
    _trade(a, 31, 10, side=-1, price=110.0)  # realises 10 x 10 on host a
    _trade(b, 1, 5, side=-1, price=90.0)  # same ids as host a: its own schema
    _trade(b, 100, 7, side=1, price=2.0, symbol_id=2)
    a.set_config("TRADE_ENABLED", "false", actor="test")
    for host, path in (("host_a", tmp_path / "a.db"), ("host_b", tmp_path / "b.db")):
        ship(host, path, pg, batch_rows=7)  # many batches per table
        assert pg_counts(pg, host) == sqlite_counts(path)
    with pg.connect() as conn:
        totals = {r.symbol: r for r in conn.execute(text("SELECT * FROM cluster.positions_total"))}
        per_host = conn.execute(text("SELECT host, count(*) FROM cluster.orders GROUP BY host "
                                     "ORDER BY host")).all()
        pnl = dict(conn.execute(text("SELECT host, realized_pnl FROM cluster.pnl")).all())
        from_fills = {(r.host, r.symbol): r for r in conn.execute(
            text("SELECT * FROM cluster.pnl_by_symbol"))}
        balances = dict(conn.execute(text("SELECT asset, amount FROM cluster.balances_total"))
                        .all())
        config = conn.scalar(text("SELECT value FROM host_a.config WHERE key = 'TRADE_ENABLED'"))
    assert per_host == [("host_a", 40), ("host_b", 12)]
    assert totals["SOL/USDT"].quantity == pytest.approx(30 - 10 - 5)
    assert totals["SOL/USDT"].hosts == 2
    assert totals["JUP/USDT"].quantity == pytest.approx(7)
    assert pnl == {"host_a": pytest.approx(100.0), "host_b": pytest.approx(0.0)}
    # The fills-derived PnL is the ledger's own average-cost result, number for number.
    for host, store in (("host_a", a), ("host_b", b)):
        for symbol, position in store.positions().items():
            row = from_fills[(host, symbol)]
            assert (row.quantity, row.avg_price, row.realized_pnl, row.fees) == (
                position.quantity, position.avg_price, position.realized_pnl, position.fees)
    expected = {}
    for store in (a, b):
        for asset, amount in store.balances().items():
            expected[asset] = expected.get(asset, 0.0) + amount
    assert balances == pytest.approx(expected)
    assert config == "false"


def test_orders_move_forward_and_a_second_pass_ships_nothing(tmp_path: Path,
                                                             pg: Engine) -> None:
    store = new_ledger(tmp_path / "a.db")
    store.apply(reports([1, 2, 3], status=OrderStatus.NEW), {})
    consolidator = Consolidator("h1", tmp_path / "a.db", pg)
    consolidator.start()
    assert consolidator.ship_once()["orders"] == 3
    store.apply(reports([1, 3]), {})
    store.apply(reports([2], status=OrderStatus.CANCELLED), {})
    counts = consolidator.ship_once()
    assert (counts["orders_advanced"], counts["orders"], counts["fills"]) == (3, 0, 2)
    assert not any(consolidator.ship_once().values())
    consolidator.close()
    with pg.connect() as conn:
        statuses = dict(conn.execute(text("SELECT id, status FROM h1.orders")).all())
    assert statuses == {1: "filled", 2: "cancelled", 3: "filled"}


def test_the_host_file_is_only_read(tmp_path: Path, pg: Engine) -> None:
    store = new_ledger(tmp_path / "a.db")
    _trade(store, 1, 20, side=1, price=100.0)
    before = hashlib.sha256((tmp_path / "a.db").read_bytes()).hexdigest()
    ship("h1", tmp_path / "a.db", pg)
    assert hashlib.sha256((tmp_path / "a.db").read_bytes()).hexdigest() == before
    _trade(store, 21, 5, side=1, price=100.0)  # the ledger still writes after a pass


@pytest.mark.parametrize("name", ["", "A", "1host", "cluster", "public", "pg_x", "a-b",
                                  "a" * 32, "host;drop"])
def test_bad_host_names_are_refused(name: str) -> None:
    with pytest.raises(OperationalError, match="host name"):
        validate_host(name)


def test_a_replaced_ledger_and_another_environment_are_refused(tmp_path: Path,
                                                                pg: Engine) -> None:
    store = new_ledger(tmp_path / "a.db")
    _trade(store, 1, 10, side=1, price=100.0)
    ship("h1", tmp_path / "a.db", pg)
    new_ledger(tmp_path / "fresh.db")  # fewer rows than were shipped as h1
    with pytest.raises(OperationalError, match="replaced or restored"):
        ship("h1", tmp_path / "fresh.db", pg)
    other = new_ledger(tmp_path / "other.db")  # as many rows and more, but other ones
    _trade(other, 1001, 15, side=1, price=100.0)
    with pytest.raises(OperationalError, match="replaced or restored"):
        ship("h1", tmp_path / "other.db", pg)
    with pytest.raises(OperationalError, match="environment 'paper'"):
        ship("h1", _other_environment(tmp_path / "devnet.db"), pg)
    with pytest.raises(OperationalError, match="no ledger database"):
        Consolidator("h2", tmp_path / "missing.db", pg)


def test_an_older_snapshot_never_steps_positions_back(tmp_path: Path, pg: Engine) -> None:
    """A second shipper of the same host that reads an older commit ships nothing."""
    store = new_ledger(tmp_path / "a.db")
    _trade(store, 1, 10, side=1, price=100.0)
    src, dst = sqlite3.connect(tmp_path / "a.db"), sqlite3.connect(tmp_path / "old.db")
    src.backup(dst)
    dst.close()
    src.close()
    _trade(store, 11, 5, side=-1, price=120.0)
    ship("h1", tmp_path / "a.db", pg)
    stale = Consolidator("h1", tmp_path / "old.db", pg)  # start() would refuse it
    try:
        assert not any(stale.ship_once().values())
    finally:
        stale.close()
    with pg.connect() as conn:
        quantity, realized = conn.execute(text("SELECT quantity, realized_pnl FROM "
                                               "h1.positions")).one()
    position = store.positions()["SOL/USDT"]
    assert (quantity, realized) == (position.quantity, position.realized_pnl) == (5.0, 100.0)
