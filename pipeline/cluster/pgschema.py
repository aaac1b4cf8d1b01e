"""The consolidated ledger's layout in PostgreSQL: one schema per host, plus ``cluster``.

Each host gets a schema named after it, made by the ledger's own alembic migrations run
with that schema as ``search_path``: the copy has the ledger's tables, ids and triggers
(history cannot be deleted, orders only move forward), and ids of different hosts never
meet. The ``cluster`` schema holds what is about all hosts: ``hosts`` (which schemas are
ledger copies, and of which environment), ``cursors`` (how far each host's history is
shipped, written in the same transaction as the rows) and the views of
:mod:`pipeline.cluster.views`, rebuilt whenever a host is added.

DDL runs under one transaction-scoped advisory lock, so consolidators of different hosts
starting together do not race on ``CREATE SCHEMA`` or the views.
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import text
from sqlalchemy.engine import Connection

from pipeline.cluster.config import host_name_problem
from pipeline.cluster.views import refresh_views
from pipeline.errors import OperationalError
from pipeline.ledger.migrate import upgrade

CLUSTER: Final = "cluster"
_DDL_LOCK: Final = 0x6C656467  # any constant key, the same in every consolidator
_HOST_LOCKS: Final = 0x686F7374  # the (int, int) lock space of the per-host locks

_CLUSTER_DDL: Final = (
    f"CREATE SCHEMA IF NOT EXISTS {CLUSTER}",
    f"""CREATE TABLE IF NOT EXISTS {CLUSTER}.hosts (
        host TEXT PRIMARY KEY, environment TEXT NOT NULL,
        added_at TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'UTC'))""",
    f"""CREATE TABLE IF NOT EXISTS {CLUSTER}.cursors (
        host TEXT NOT NULL REFERENCES {CLUSTER}.hosts (host), table_name TEXT NOT NULL,
        last_id BIGINT NOT NULL, shipped_at TIMESTAMP NOT NULL,
        PRIMARY KEY (host, table_name))""",
)


def validate_host(name: str) -> str:
    """``name`` if it can be a host's schema name; OperationalError saying why not."""
    problem = host_name_problem(name)
    if problem is not None:
        raise OperationalError(f"host name {name!r}: {problem}")
    return name


def lock_host(conn: Connection, host: str) -> None:
    """Take ``host``'s shipping lock until the transaction ends: shippers of one host take
    turns (a second consolidator started by mistake waits, then finds the rows shipped)."""
    conn.execute(text("SELECT pg_advisory_xact_lock(:space, hashtext(:host))"),
                 {"space": _HOST_LOCKS, "host": host})


def ensure_host(conn: Connection, host: str, environment: str) -> bool:
    """Make ``host``'s schema (migrated to head) and the cluster views, in the caller's
    transaction. Returns True if the host is new. Refuses a host name already used by a
    ledger of another environment: paper rows must never add up with mainnet ones."""
    validate_host(host)
    conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _DDL_LOCK})
    for ddl in _CLUSTER_DDL:
        conn.execute(text(ddl))
    known = conn.scalar(text(f"SELECT environment FROM {CLUSTER}.hosts WHERE host = :host"),
                        {"host": host})
    if known is not None and known != environment:
        raise OperationalError(
            f"host {host!r} is consolidated as environment {known!r}, but this ledger is "
            f"{environment!r}: give this ledger a host name of its own")
    if known is None:
        exists = conn.scalar(text("SELECT 1 FROM pg_namespace WHERE nspname = :host"),
                             {"host": host})
        if exists:
            raise OperationalError(f"schema {host!r} exists in PostgreSQL but is no host's "
                                   "ledger copy: choose another host name")
        conn.execute(text(f'CREATE SCHEMA "{host}"'))
    # The ledger's migrations, unqualified, land in the first schema of the search path.
    conn.execute(text(f'SET LOCAL search_path TO "{host}"'))
    upgrade(conn, f"postgresql schema {host}")
    conn.execute(text("SET LOCAL search_path TO DEFAULT"))
    if known is None:
        conn.execute(text(f"INSERT INTO {CLUSTER}.hosts (host, environment) "
                          "VALUES (:host, :environment)"),
                     {"host": host, "environment": environment})
        hosts = list(conn.scalars(text(f"SELECT host FROM {CLUSTER}.hosts ORDER BY host")))
        refresh_views(conn, hosts)
    return known is None
