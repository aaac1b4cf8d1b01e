"""The ledger's migrations on SQLite and PostgreSQL: same schema, same protections.

Each dialect gets one migrated, seeded database per module (a SQLite file, a database on the
session's throwaway PostgreSQL server). Refused statements fail and roll back; allowed ones
run in a transaction rolled back after the check, so the seeded rows never change.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from pg_server import PostgresServer, running_postgres
from sqlalchemy import Engine, create_engine, insert, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from pipeline.ledger.base import ModelBase
from pipeline.ledger.config import LedgerConfig
from pipeline.ledger.db import init_db, make_engine
from pipeline.ledger.migrate import alembic_config, current_revision, upgrade
from pipeline.ledger.models import (
    AuditLog,
    Balance,
    ChainBalance,
    Fill,
    KillSwitchNonce,
    Meta,
    Order,
    OrderSignature,
    to_stored,
    to_u64,
)
from pipeline.ledger.schema import SCHEMA_VERSION

WHEN = datetime(2026, 11, 29, 12, 30, 45, 123456)  # naive UTC with microseconds
NO_DELETE = ("orders", "fills", "balances", "audit_log", "kill_switch_nonces",
             "order_signatures", "chain_balances")
FORWARD_ONLY = "orders change only by moving status_rank upwards"
# sqlite_master after 0001-0004, as those revisions emitted it before PostgreSQL support.
SQLITE_MASTER_0004 = Path(__file__).with_name("sqlite_master_0004.json")


def _migrate(engine: Engine) -> Engine:
    with engine.begin() as conn:
        upgrade(conn, str(engine.url.database))
    with engine.begin() as conn:
        _seed(conn)
    return engine


def _seed(conn: Connection) -> None:
    """One row in every protected table, about order 7."""
    run = conn.execute
    run(insert(Order), {
        "client_order_id": 7, "symbol": "SOL/USDT", "side": "buy", "quantity": 1.0,
        "limit_price": 100.0, "status": "new", "status_rank": 1, "filled_qty": 0.0,
        "avg_price": 0.0, "fee": 0.0, "tick_seq": 7, "tick_ingest_ns": 1, "decision_ns": 2,
        "send_ns": 3, "tick_to_order_ns": 2, "venue_ref": "sig7", "created_at": WHEN,
        "updated_at": WHEN})
    run(insert(Fill), {
        "client_order_id": 7, "symbol": "SOL/USDT", "side": "buy", "quantity": 1.0,
        "price": 100.0, "fee": 0.1, "venue_ref": "sig7", "venue_ts_ns": 5, "created_at": WHEN})
    run(insert(OrderSignature), {
        "signature": "sig7", "client_order_id": 7, "last_valid_block_height": 9,
        "created_at": WHEN})
    run(insert(Balance), {"asset": "USDT", "amount": 1000.0, "ts": WHEN, "reason": "initial"})
    run(insert(ChainBalance), {"asset": "USDT", "amount": 1000.0, "ledger_amount": 1000.0,
                               "ts": WHEN, "reason": "start"})
    run(insert(AuditLog), {"ts": WHEN, "actor": "test", "action": "seed", "detail": "{}"})
    run(insert(KillSwitchNonce), {"nonce": "n1", "expires_at": WHEN, "used_at": WHEN})


@pytest.fixture(scope="module")
def sqlite_ledger(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """The ledger's own kind of engine on a fresh file, migrated and seeded."""
    path: Path = tmp_path_factory.mktemp("dialects") / "ledger.db"
    engine = _migrate(make_engine(path))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def postgresql_ledger(postgres_server: PostgresServer) -> Iterator[Engine]:
    """A fresh database on the session's PostgreSQL server, migrated and seeded."""
    engine = _migrate(create_engine(postgres_server.create_database("schema_dialects")))
    yield engine
    engine.dispose()


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def ledger_db(request: pytest.FixtureRequest) -> Engine:
    engine: Engine = request.getfixturevalue(f"{request.param}_ledger")
    return engine


def test_upgrade_reaches_the_head_and_again_is_a_no_op(ledger_db: Engine) -> None:
    with ledger_db.begin() as conn:
        assert current_revision(conn) == SCHEMA_VERSION
        assert upgrade(conn, "again") == (SCHEMA_VERSION, SCHEMA_VERSION)


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_init_db_migrates_and_seeds_once(dialect: str, tmp_path: Path,
                                          request: pytest.FixtureRequest) -> None:
    """The ledger's own start-up (migrate, check, seed) on a fresh database of each kind."""
    if dialect == "sqlite":
        engine = make_engine(tmp_path / "ledger.db")
    else:
        server: PostgresServer = request.getfixturevalue("postgres_server")
        engine = create_engine(server.create_database("init_db"))
    config = LedgerConfig()
    assert init_db(engine, "paper", config) is True
    assert init_db(engine, "paper", config) is False
    with engine.connect() as conn:
        assert dict(conn.execute(select(Meta.key, Meta.value)).all()) == {
            "environment": "paper", "schema_version": SCHEMA_VERSION}
        assert conn.scalars(select(AuditLog.action)).all() == ["ledger.init"]
    engine.dispose()


def test_migrated_schema_equals_the_models(ledger_db: Engine) -> None:
    with ledger_db.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), ModelBase.metadata) == []


def test_sqlite_ddl_of_existing_revisions_is_unchanged(tmp_path: Path) -> None:
    """Ledgers already migrated must equal new ones: SQLite text of 0001-0004 is frozen."""
    engine = make_engine(tmp_path / "ledger.db")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0004")
    with engine.connect() as conn:
        rows = [list(row) for row in conn.execute(text(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name"))]
    engine.dispose()
    assert rows == json.loads(SQLITE_MASTER_0004.read_text())


def test_partial_index_on_open_orders(ledger_db: Engine) -> None:
    """Autogenerate does not compare index predicates: check this one directly."""
    with ledger_db.connect() as conn:
        if ledger_db.dialect.name == "sqlite":
            ddl = conn.scalar(text("SELECT sql FROM sqlite_master WHERE name = 'ix_orders_open'"))
        else:
            ddl = conn.scalar(text("SELECT indexdef FROM pg_indexes "
                                   "WHERE indexname = 'ix_orders_open'"))
    assert ddl is not None
    assert "WHERE" in ddl
    assert "'new'" in ddl


def test_postgresql_has_the_sqlite_triggers_and_truncate_guards(
        sqlite_ledger: Engine, postgresql_ledger: Engine) -> None:
    with sqlite_ledger.connect() as conn:
        lite = set(conn.scalars(text("SELECT name FROM sqlite_master WHERE type = 'trigger'")))
    with postgresql_ledger.connect() as conn:
        pg = set(conn.scalars(text("SELECT tgname FROM pg_trigger WHERE NOT tgisinternal")))
    assert lite <= pg
    assert pg - lite == {f"{table}_no_truncate" for table in NO_DELETE}


REFUSED = [
    *(pytest.param(f"DELETE FROM {table}", f"{table} is history: DELETE is not allowed",
                   id=f"{table}-delete") for table in NO_DELETE),
    pytest.param("UPDATE orders SET status_rank = 0", FORWARD_ONLY, id="orders-rank-down"),
    pytest.param("UPDATE orders SET status = 'cancelled'", FORWARD_ONLY,
                 id="orders-status-same-rank"),
    *(pytest.param(f"UPDATE orders SET status_rank = 2, {change}", FORWARD_ONLY,
                   id=f"orders-{change.split()[0]}")
      for change in ("client_order_id = 8", "symbol = 'JUP/USDT'", "side = 'sell'",
                     "quantity = 2", "limit_price = 101")),
    *(pytest.param(f"UPDATE fills SET {change}",
                   "fills are booked money: UPDATE is not allowed", id=f"fills-{change.split()[0]}")
      for change in ("symbol = 'JUP/USDT'", "side = 'sell'", "quantity = 2", "price = 101",
                     "fee = 0.2")),
    *(pytest.param(f"UPDATE balances SET {change}",
                   "balances are append-only: UPDATE is not allowed",
                   id=f"balances-{change.split()[0]}")
      for change in ("asset = 'SOL'", "amount = 1")),
    pytest.param("UPDATE audit_log SET detail = '[]'",
                 "audit_log is history: UPDATE is not allowed", id="audit_log-update"),
    pytest.param("UPDATE order_signatures SET wallet_slot = 1",
                 "order_signatures is history: UPDATE is not allowed",
                 id="order_signatures-update"),
    pytest.param("UPDATE chain_balances SET reason = 'other'",
                 "chain_balances is history: UPDATE is not allowed", id="chain_balances-update"),
]


@pytest.mark.parametrize(("statement", "message"), REFUSED)
def test_protection_refuses(ledger_db: Engine, statement: str, message: str) -> None:
    with pytest.raises(IntegrityError, match=message), ledger_db.begin() as conn:
        conn.execute(text(statement))
    with ledger_db.connect() as conn:  # the statement changed nothing
        assert conn.scalar(select(Order.status_rank)) == 1
        assert conn.scalar(text("SELECT count(*) FROM audit_log")) == 1


@pytest.mark.parametrize("ledger_db", ["postgresql"], indirect=True)
@pytest.mark.parametrize("table", NO_DELETE)
def test_truncate_is_refused_on_postgresql(ledger_db: Engine, table: str) -> None:
    """TRUNCATE skips row triggers: PostgreSQL has statement triggers for it."""
    with pytest.raises(IntegrityError, match=f"{table} is history: TRUNCATE is not allowed"), \
            ledger_db.begin() as conn:
        conn.execute(text(f"TRUNCATE {table} CASCADE"))


ALLOWED = [
    pytest.param("UPDATE orders SET status = 'filled', status_rank = 2, filled_qty = 1, "
                 "avg_price = 100", id="orders-rank-up"),
    pytest.param("UPDATE orders SET fee = 0.1, network_fee = 0.000005", id="orders-same-rank"),
    pytest.param("UPDATE fills SET venue_ref = 'other'", id="fills-venue_ref"),
    pytest.param("UPDATE balances SET reason = 'other'", id="balances-reason"),
    pytest.param("UPDATE kill_switch_nonces SET used_at = expires_at", id="nonces-update"),
]


@pytest.mark.parametrize("statement", ALLOWED)
def test_protection_allows(ledger_db: Engine, statement: str) -> None:
    with ledger_db.connect() as conn, conn.begin() as transaction:
        assert conn.execute(text(statement)).rowcount == 1
        transaction.rollback()  # keep the module's seeded rows as they are


def test_u64_ids_and_naive_utc_times_round_trip(ledger_db: Engine) -> None:
    """u64 ids are stored as same-bits int64 (BigInteger on both): the extremes fit."""
    u64s = [0, 2**63 - 1, 2**63, 2**64 - 1]
    with ledger_db.connect() as conn, conn.begin() as transaction:
        conn.execute(insert(KillSwitchNonce), [
            {"nonce": f"u{u}", "expires_at": WHEN, "used_at": WHEN} for u in u64s])
        for u in u64s:
            conn.execute(insert(OrderSignature), {
                "signature": f"u64-{u}", "client_order_id": 7, "last_valid_block_height": 1,
                "created_at": WHEN, "wallet_slot": to_stored(u)})
        stored = conn.scalars(select(OrderSignature.wallet_slot)
                              .where(OrderSignature.signature.like("u64-%"))
                              .order_by(OrderSignature.id)).all()
        times = set(conn.scalars(select(KillSwitchNonce.used_at)))
        transaction.rollback()
    assert [to_u64(s) for s in stored] == u64s
    assert times == {WHEN}


def test_missing_postgresql_fails_naming_dev_sh(tmp_path: Path) -> None:
    """CI runs ./dev.sh test, which installs PostgreSQL: missing binaries fail, not skip."""
    (tmp_path / "15" / "bin").mkdir(parents=True)  # a version dir without the server
    with pytest.raises(pytest.fail.Exception, match=r"run the tests with \./dev\.sh test"), \
            running_postgres(tmp_path):
        pass
