"""make_engine pragmas, init_db seeding and environment checks, history-protecting triggers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy.exc
from sqlalchemy import Engine, func, select, text

from pipeline.errors import OperationalError
from pipeline.ledger.config import LedgerConfig
from pipeline.ledger.db import init_db, make_engine
from pipeline.ledger.models import AuditLog, Balance, ConfigEntry, Meta, Order
from pipeline.ledger.schema import SCHEMA_VERSION
from pipeline.ledger.store import LedgerStore
from pipeline.records import OrderStatus


@pytest.mark.parametrize(("mode", "level"), [("FULL", 2), ("NORMAL", 1)])
def test_pragmas_on_every_connection(db_path: Path, mode: str, level: int) -> None:
    engine = make_engine(db_path, synchronous=mode, busy_timeout_ms=1234)
    conns = [engine.raw_connection() for _ in range(3)]  # three distinct pooled connections
    try:
        for conn in conns:
            cur = conn.cursor()
            for pragma, expected in [("journal_mode", "wal"), ("foreign_keys", 1),
                                     ("synchronous", level), ("busy_timeout", 1234)]:
                assert cur.execute(f"PRAGMA {pragma}").fetchone()[0] == expected
            cur.close()
    finally:
        for conn in conns:
            conn.close()


def test_make_engine_refuses_bad_arguments(db_path: Path) -> None:
    with pytest.raises(ValueError, match="synchronous"):
        make_engine(db_path, synchronous="OFF")
    with pytest.raises(ValueError, match="busy_timeout_ms"):
        make_engine(db_path, busy_timeout_ms=-1)


def test_first_init_seeds_once(db_path: Path) -> None:
    engine = make_engine(db_path)
    config = LedgerConfig(initial_balances={"USDT": 500.0, "SOL": 2.0})
    assert init_db(engine, "paper", config) is True
    assert init_db(engine, "paper", LedgerConfig(initial_balances={"USDT": 1.0})) is False
    with engine.connect() as conn:
        meta = dict(conn.execute(select(Meta.key, Meta.value)).all())
        balances = conn.execute(select(Balance.asset, Balance.amount, Balance.reason)
                                .order_by(Balance.asset)).all()
        trade = conn.scalar(select(ConfigEntry.value).where(ConfigEntry.key == "TRADE_ENABLED"))
        audits = conn.execute(select(AuditLog.actor, AuditLog.action, AuditLog.detail)).all()
    assert meta == {"environment": "paper", "schema_version": SCHEMA_VERSION}
    assert [tuple(b) for b in balances] == [("SOL", 2.0, "initial"), ("USDT", 500.0, "initial")]
    assert trade == "false"
    assert len(audits) == 1
    assert audits[0].action == "ledger.init"
    assert json.loads(audits[0].detail)["initial_balances"] == {"SOL": 2.0, "USDT": 500.0}


def test_trade_enabled_default_seeds_true(db_path: Path, symbols: dict[int, tuple[str, str, str]]
                                          ) -> None:
    engine = make_engine(db_path)
    config = LedgerConfig(trade_enabled_default=True)
    init_db(engine, "paper", config)
    assert LedgerStore(engine, symbols, config).trade_enabled() is True


def test_environment_mismatch_refused(engine: Engine, config: LedgerConfig) -> None:
    with pytest.raises(OperationalError, match="belongs to environment 'paper', not 'mainnet'"):
        init_db(engine, "mainnet", config)


def test_schema_version_mismatch_refused(engine: Engine, config: LedgerConfig) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE meta SET value = '0' WHERE key = 'schema_version'"))
    with pytest.raises(OperationalError, match="schema_version"):
        init_db(engine, "paper", config)


def test_store_refuses_uninitialised_database(db_path: Path, config: LedgerConfig) -> None:
    engine = make_engine(db_path)
    init_db(engine, "paper", config)
    fresh = make_engine(db_path.with_name("other.db"))
    from pipeline.ledger.base import ModelBase
    ModelBase.metadata.create_all(fresh)
    with pytest.raises(OperationalError, match="not initialised"):
        LedgerStore(fresh, {1: ("SOL/USDT", "SOL", "USDT")}, config)


@pytest.fixture
def booked(store: LedgerStore, make_reports: Callable[..., np.ndarray]) -> LedgerStore:
    store.apply(make_reports([1, 2], status=[OrderStatus.FILLED, OrderStatus.NEW]), {})
    return store


@pytest.mark.usefixtures("booked")
@pytest.mark.parametrize("table", ["orders", "fills", "balances", "audit_log"])
def test_delete_is_aborted(engine: Engine, table: str) -> None:
    with pytest.raises(sqlalchemy.exc.IntegrityError, match="DELETE is not allowed"), \
            engine.begin() as conn:
        conn.execute(text(f"DELETE FROM {table}"))
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() > 0


@pytest.mark.usefixtures("booked")
@pytest.mark.parametrize("statement", [
    "UPDATE fills SET price = price + 1",
    "UPDATE fills SET quantity = 0",
    "UPDATE fills SET fee = 0",
    "UPDATE balances SET amount = amount + 1",
    "UPDATE balances SET asset = 'XYZ'",
    "UPDATE audit_log SET actor = 'someone else'",
    "UPDATE orders SET status = 'new', status_rank = 1 WHERE client_order_id = 1",
    "UPDATE orders SET status = 'cancelled' WHERE client_order_id = 1",
    "UPDATE orders SET quantity = 5 WHERE client_order_id = 2",
])
def test_money_and_history_updates_are_aborted(engine: Engine, statement: str) -> None:
    with pytest.raises(sqlalchemy.exc.IntegrityError), engine.begin() as conn:
        conn.execute(text(statement))


@pytest.mark.usefixtures("booked")
def test_allowed_updates_still_work(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("UPDATE orders SET status = 'cancelled', status_rank = 2 "
                          "WHERE client_order_id = 2"))
        conn.execute(text("UPDATE fills SET venue_ref = 'corrected'"))
        conn.execute(text("UPDATE balances SET reason = 'annotated'"))
    with engine.connect() as conn:
        assert conn.scalar(select(Order.status).where(Order.client_order_id == 2)) == "cancelled"


@pytest.mark.usefixtures("engine")
def test_read_only_engine_cannot_write(db_path: Path) -> None:
    reader = make_engine(db_path, read_only=True)
    with reader.connect() as conn:
        assert conn.scalar(select(Meta.value).where(Meta.key == "environment")) == "paper"
        assert conn.scalar(select(func.count()).select_from(Balance)) == 1
    with pytest.raises(sqlalchemy.exc.OperationalError, match="readonly"), \
            reader.begin() as conn:
        conn.execute(text("INSERT INTO meta (key, value) VALUES ('x', 'y')"))


def test_read_only_engine_does_not_create_a_database(tmp_path: Path) -> None:
    reader = make_engine(tmp_path / "missing.db", read_only=True)
    with pytest.raises(sqlalchemy.exc.OperationalError), reader.connect():
        pass
    assert not (tmp_path / "missing.db").exists()
