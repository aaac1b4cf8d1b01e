"""Engines and schema: the one place that opens the ledger database.

Every connection gets its pragmas from a SQLAlchemy ``connect`` event (pragmas are
per-connection in SQLite, so setting them once on "the database" is not enough). The
pysqlite driver's own implicit transactions are switched off and SQLAlchemy emits ``BEGIN``
itself (the recipe in SQLAlchemy's SQLite dialect docs): the writer takes the write lock at
``BEGIN IMMEDIATE`` so it can never fail half-way through a transaction on lock upgrade.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from sqlalchemy import Engine, create_engine, event, insert, select, update
from sqlalchemy.dialects.sqlite import insert as upsert
from sqlalchemy.engine import URL, Connection

from pipeline.errors import OperationalError
from pipeline.ledger.config import SYNCHRONOUS_MODES, LedgerConfig
from pipeline.ledger.migrate import upgrade
from pipeline.ledger.models import AuditLog, Balance, ConfigEntry, Meta

TRADE_ENABLED: Final = "TRADE_ENABLED"

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
    """Migrate the schema to head; seed a new database; refuse one that belongs elsewhere.

    Returns True when this call initialised the database. Seeding (TRADE_ENABLED and the
    starting balances) happens only then, with an audit row, so restarts never reset money.
    Migration, checks and seeding are one transaction: a failure leaves the file untouched.
    """
    if not environment:
        raise OperationalError("init_db: environment must be a non-empty name")
    database = str(engine.url.database)
    with engine.begin() as conn:
        before, after = upgrade(conn, database)
        meta = dict(conn.execute(select(Meta.key, Meta.value)).all())
        if "environment" in meta:
            _check_meta(engine, meta, environment, before)
            if meta.get("schema_version") != after:
                conn.execute(update(Meta).where(Meta.key == "schema_version")
                             .values(value=after))
                write_audit(conn, utc_now(), "ledger", "ledger.migrate",
                            {"from": before, "to": after})
            return False
        now = utc_now()
        trade_enabled = "true" if config.trade_enabled_default else "false"
        conn.execute(insert(Meta), [
            {"key": "environment", "value": environment},
            {"key": "schema_version", "value": after},
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
            "schema_version": after,
            "initial_balances": dict(sorted(config.initial_balances.items())),
            TRADE_ENABLED: trade_enabled,
        }
        write_audit(conn, now, "ledger", "ledger.init", detail)
    return True


def _check_meta(engine: Engine, meta: dict[str, str], environment: str,
                revision: str | None) -> None:
    if meta["environment"] != environment:
        raise OperationalError(
            f"{engine.url.database}: database belongs to environment "
            f"{meta['environment']!r}, not {environment!r}; point this environment at its "
            "own database file"
        )
    # meta.schema_version is written with each migration; disagreeing with alembic's own
    # record means someone edited one of them by hand: stop rather than guess.
    legacy = revision == "0001" and meta.get("schema_version") == "1"  # before alembic
    if meta.get("schema_version") != revision and not legacy:
        raise OperationalError(
            f"{engine.url.database}: meta.schema_version {meta.get('schema_version')!r} "
            f"disagrees with the migration revision {revision!r}; restore the database "
            "from a backup or fix the meta row after checking the schema"
        )


def write_audit(conn: Connection, now: datetime, actor: str, action: str,
                detail: Mapping[str, Any]) -> None:
    """Append one audit row inside the caller's transaction (the change it records)."""
    conn.execute(insert(AuditLog), {"ts": now, "actor": actor, "action": action,
                                    "detail": json.dumps(dict(detail), sort_keys=True)})


def write_config(conn: Connection, key: str, value: str, now: datetime) -> str | None:
    """Upsert one config row inside the caller's transaction; returns the previous value."""
    old = conn.scalar(select(ConfigEntry.value).where(ConfigEntry.key == key))
    stmt = upsert(ConfigEntry)
    conn.execute(stmt.on_conflict_do_update(
        index_elements=[ConfigEntry.key],
        set_={"value": stmt.excluded.value, "updated_at": stmt.excluded.updated_at},
    ), {"key": key, "value": value, "updated_at": now})
    return old
