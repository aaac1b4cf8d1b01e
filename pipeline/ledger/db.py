"""Engines and schema: the one place that opens the ledger database.

Every connection gets its pragmas from a SQLAlchemy ``connect`` event (pragmas are
per-connection in SQLite, so setting them once on "the database" is not enough). The
pysqlite driver's own implicit transactions are switched off and SQLAlchemy emits ``BEGIN``
itself (the recipe in SQLAlchemy's SQLite dialect docs): the writer takes the write lock at
``BEGIN IMMEDIATE`` so it can never fail half-way through a transaction on lock upgrade.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event, insert, select
from sqlalchemy.engine import URL, Connection

from pipeline.errors import OperationalError
from pipeline.ledger.base import ModelBase
from pipeline.ledger.config import SYNCHRONOUS_MODES, LedgerConfig
from pipeline.ledger.models import AuditLog, Balance, ConfigEntry, Meta

SCHEMA_VERSION: Final = "1"
TRADE_ENABLED: Final = "TRADE_ENABLED"

# History is never deleted, and money already booked never changes. These hold for any
# writer, including an operator with the sqlite3 shell.
_TRIGGERS: Final = (
    *(f"CREATE TRIGGER IF NOT EXISTS {table}_no_delete BEFORE DELETE ON {table} "
      f"BEGIN SELECT RAISE(ABORT, '{table} is history: DELETE is not allowed'); END"
      for table in ("orders", "fills", "balances", "audit_log")),
    "CREATE TRIGGER IF NOT EXISTS orders_forward_only BEFORE UPDATE ON orders "
    "WHEN NEW.status_rank < OLD.status_rank "
    "OR (NEW.status_rank = OLD.status_rank AND NEW.status IS NOT OLD.status) "
    "OR NEW.client_order_id IS NOT OLD.client_order_id OR NEW.symbol IS NOT OLD.symbol "
    "OR NEW.side IS NOT OLD.side OR NEW.quantity IS NOT OLD.quantity "
    "OR NEW.limit_price IS NOT OLD.limit_price "
    "BEGIN SELECT RAISE(ABORT, 'orders change only by moving status_rank upwards'); END",
    "CREATE TRIGGER IF NOT EXISTS fills_money_frozen BEFORE UPDATE ON fills "
    "WHEN NEW.client_order_id IS NOT OLD.client_order_id OR NEW.symbol IS NOT OLD.symbol "
    "OR NEW.side IS NOT OLD.side OR NEW.quantity IS NOT OLD.quantity "
    "OR NEW.price IS NOT OLD.price OR NEW.fee IS NOT OLD.fee "
    "BEGIN SELECT RAISE(ABORT, 'fills are booked money: UPDATE is not allowed'); END",
    "CREATE TRIGGER IF NOT EXISTS balances_money_frozen BEFORE UPDATE ON balances "
    "WHEN NEW.asset IS NOT OLD.asset OR NEW.amount IS NOT OLD.amount "
    "BEGIN SELECT RAISE(ABORT, 'balances are append-only: UPDATE is not allowed'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_log_no_update BEFORE UPDATE ON audit_log "
    "BEGIN SELECT RAISE(ABORT, 'audit_log is history: UPDATE is not allowed'); END",
)


def utc_now() -> datetime:
    """Naive UTC wall time, the form every ``*_at`` / ``ts`` column holds."""
    return datetime.now(UTC).replace(tzinfo=None)


def sql_datetime(moment: datetime) -> str:
    """``moment`` in the text form SQLAlchemy's SQLite DateTime stores, for raw executemany."""
    return moment.strftime("%Y-%m-%d %H:%M:%S.%f")


def make_engine(
    path: str | Path,
    *,
    read_only: bool = False,
    synchronous: str = "FULL",
    busy_timeout_ms: int = 5000,
) -> Engine:
    """An engine on the SQLite file at ``path``; read-only engines cannot write at all."""
    if synchronous not in SYNCHRONOUS_MODES:
        raise ValueError(f"synchronous must be one of {SYNCHRONOUS_MODES}, got {synchronous!r}")
    if busy_timeout_ms < 0:
        raise ValueError(f"busy_timeout_ms must be >= 0, got {busy_timeout_ms}")
    if read_only:
        # mode=ro makes SQLite itself refuse writes, whatever SQL a reader sends.
        url = URL.create("sqlite", database=f"file:{path}", query={"mode": "ro", "uri": "true"})
    else:
        url = URL.create("sqlite", database=str(path))
    engine = create_engine(url)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # SQLAlchemy emits BEGIN itself, see _on_begin
        cur = dbapi_conn.cursor()
        try:
            cur.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
            cur.execute("PRAGMA foreign_keys = ON")
            cur.execute(f"PRAGMA synchronous = {synchronous}")
            if read_only:
                cur.execute("PRAGMA query_only = ON")
            else:
                mode = cur.execute("PRAGMA journal_mode = WAL").fetchone()[0]
                if str(mode).lower() != "wal":
                    raise OperationalError(
                        f"{path}: SQLite refused WAL mode (got {mode!r}); "
                        "put the database on a local filesystem"
                    )
        finally:
            cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")

    return engine


def init_db(engine: Engine, environment: str, config: LedgerConfig) -> bool:
    """Create the schema; seed a new database; refuse one that belongs elsewhere.

    Returns True when this call initialised the database. Seeding (TRADE_ENABLED and the
    starting balances) happens only then, with an audit row, so restarts never reset money.
    """
    if not environment:
        raise OperationalError("init_db: environment must be a non-empty name")
    with engine.begin() as conn:
        ModelBase.metadata.create_all(conn)
        for ddl in _TRIGGERS:
            conn.exec_driver_sql(ddl)
        meta = dict(conn.execute(select(Meta.key, Meta.value)).all())
        if "environment" in meta:
            _check_meta(engine, meta, environment)
            return False
        now = utc_now()
        trade_enabled = "true" if config.trade_enabled_default else "false"
        conn.execute(insert(Meta), [
            {"key": "environment", "value": environment},
            {"key": "schema_version", "value": SCHEMA_VERSION},
        ])
        conn.execute(insert(ConfigEntry), [
            {"key": TRADE_ENABLED, "value": trade_enabled, "updated_at": now},
        ])
        if config.initial_balances:
            conn.execute(insert(Balance), [
                {"asset": asset, "amount": amount, "ts": now, "reason": "initial"}
                for asset, amount in sorted(config.initial_balances.items())
            ])
        detail = {
            "environment": environment,
            "schema_version": SCHEMA_VERSION,
            "initial_balances": dict(sorted(config.initial_balances.items())),
            TRADE_ENABLED: trade_enabled,
        }
        conn.execute(insert(AuditLog), [{
            "ts": now, "actor": "ledger", "action": "ledger.init",
            "detail": json.dumps(detail, sort_keys=True),
        }])
    return True


def _check_meta(engine: Engine, meta: dict[str, str], environment: str) -> None:
    if meta["environment"] != environment:
        raise OperationalError(
            f"{engine.url.database}: database belongs to environment "
            f"{meta['environment']!r}, not {environment!r}; point this environment at its "
            "own database file"
        )
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise OperationalError(
            f"{engine.url.database}: schema_version {meta.get('schema_version')!r} but this "
            f"code expects {SCHEMA_VERSION!r}; migrate the database or use a new file"
        )
