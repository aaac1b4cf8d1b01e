"""What a backup reads from SQLite and how a restore writes it back.

Snapshot: SQLite's online backup API copies every page inside one read transaction, so
the copy is the database as of one commit even while the ledger keeps writing (WAL
readers never block the writer).

Increment: what changed since the previous object of the chain, read in ONE read
transaction (so it is as of one commit too). The ledger's tables fall in three kinds:
- append-only (fills, balances, audit_log: triggers forbid DELETE and UPDATE of money):
  rows with ``id`` above the previous watermark;
- orders: new rows (``id`` above the watermark) plus every order that was still open at
  the previous watermark, since only open orders change (triggers allow nothing else);
  the set of open orders is bounded by ``executor.max_pending``;
- small state tables (positions, config, ring_cursors, meta, alembic_version): whole;
- keyed, never deleted, small (kill_switch_nonces, one row per kill-switch change): shipped
  whole, inserted if missing (a restore without them would accept a replayed signature).
Which kind a table is comes from the models (``{"backup": kind}`` in each table's info), so
a new table cannot silently drop out of the backups: one that declares no kind stops this
module at import. ``"excluded"`` (with ``backup_excluded_because``) is the explicit way out.
Watermarks (max ids, open order ids) travel in each object, and every object carries row
counts, so a restore proves it rebuilt exactly what the ledger had.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Final

from pipeline.ledger import models  # noqa: F401  (registers every table in the metadata)
from pipeline.ledger.base import ModelBase

KINDS: Final = ("append_only", "orders", "whole", "insert_only", "excluded")


def backup_kinds() -> dict[str, str]:
    """Table name -> backup kind for every table of the models, in dependency order.

    Raises RuntimeError for a table that declares no kind, or excludes itself without
    saying why: a programming error this module refuses to paper over."""
    kinds: dict[str, str] = {}
    for table in ModelBase.metadata.sorted_tables:
        kind = table.info.get("backup")
        if kind not in KINDS:
            raise RuntimeError(f"ledger table {table.name} declares no backup kind (one of "
                               f"{', '.join(KINDS)} in its table info): backups would miss it")
        if kind == "excluded" and not str(table.info.get("backup_excluded_because", "")).strip():
            raise RuntimeError(f"ledger table {table.name} is excluded from backups without "
                               "a reason (backup_excluded_because)")
        kinds[table.name] = kind
    return kinds


def _of_kind(kind: str) -> tuple[str, ...]:
    return tuple(name for name, k in backup_kinds().items() if k == kind)


if _of_kind("orders") != ("orders",):  # its capture reads orders.status_rank by name
    raise RuntimeError("the backup kind 'orders' belongs to the orders table alone")
APPEND_ONLY: Final = _of_kind("append_only")
# alembic_version is alembic's own table, not a model: the schema version travels whole.
WHOLE: Final = (*_of_kind("whole"), "alembic_version")
INSERT_ONLY: Final = _of_kind("insert_only")
COUNTED: Final = ("orders", *APPEND_ONLY, *WHOLE, *INSERT_ONLY)


def open_read_only(path: Path) -> sqlite3.Connection:
    """A read-only connection that never creates the file."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None,
                           check_same_thread=False)
    conn.execute("PRAGMA busy_timeout = 5000")
    return conn


def watermarks(conn: sqlite3.Connection) -> dict[str, Any]:
    """Max id per history table and the ids of open orders."""
    marks: dict[str, Any] = {t: conn.execute(f"SELECT coalesce(max(id), 0) FROM {t}")
                             .fetchone()[0] for t in ("orders", *APPEND_ONLY)}
    marks["open_orders"] = [row[0] for row in
                            conn.execute("SELECT id FROM orders WHERE status_rank < 2")]
    return marks


def row_counts(conn: sqlite3.Connection) -> dict[str, int]:
    return {t: int(conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]) for t in COUNTED}


def snapshot(source: Path, dest: Path) -> dict[str, Any]:
    """Copy ``source`` to ``dest`` online; returns the copy's watermarks and row counts."""
    src = open_read_only(source)
    dst = sqlite3.connect(dest, isolation_level=None)
    try:
        src.backup(dst)  # pages=-1: one step, one read transaction, one consistent state
        dst.execute("PRAGMA journal_mode = DELETE")  # a single self-contained file
        return {"watermarks": watermarks(dst), "row_counts": row_counts(dst)}
    finally:
        dst.close()
        src.close()


def _rows(conn: sqlite3.Connection, sql: str, args: tuple[Any, ...] = ()) -> dict[str, Any]:
    cur = conn.execute(sql, args)
    return {"columns": [d[0] for d in cur.description], "rows": [list(r) for r in cur]}


def increment(conn: sqlite3.Connection, since: dict[str, Any]) -> tuple[dict[str, Any],
                                                                       dict[str, Any]]:
    """(tables, info) of changes after ``since``; info has the new watermarks and counts."""
    conn.execute("BEGIN")
    try:
        # .get: a chain written before a table existed has no watermark for it yet.
        tables = {t: _rows(conn, f"SELECT * FROM {t} WHERE id > ? ORDER BY id",
                           (since.get(t, 0),)) for t in APPEND_ONLY}
        tables["orders"] = _rows(
            conn, "SELECT * FROM orders WHERE id > ? OR id IN (SELECT value FROM json_each(?)) "
                  "ORDER BY id", (since["orders"], _json_ids(since["open_orders"])))
        for table in (*WHOLE, *INSERT_ONLY):
            tables[table] = _rows(conn, f"SELECT * FROM {table}")
        marks = watermarks_after(tables, since)
        counts = row_counts(conn)
    finally:
        conn.execute("COMMIT")
    return tables, {"watermarks": marks, "row_counts": counts}


def watermarks_after(tables: dict[str, Any], since: dict[str, Any]) -> dict[str, Any]:
    """Watermarks once ``tables`` are applied on top of ``since`` (no extra scan needed)."""
    marks: dict[str, Any] = {}
    for table in ("orders", *APPEND_ONLY):
        ids = [row[0] for row in tables[table]["rows"]]
        marks[table] = max([since.get(table, 0), *ids])
    rank = tables["orders"]["columns"].index("status_rank")
    marks["open_orders"] = [row[0] for row in tables["orders"]["rows"] if row[rank] < 2]
    return marks


def _json_ids(ids: list[int]) -> str:
    return "[" + ",".join(str(int(i)) for i in ids) + "]"


def apply_increment(conn: sqlite3.Connection, tables: dict[str, Any]) -> None:
    """Write an increment into a restored database, in one transaction.

    Append-only rows are plain INSERTs (an overlap is an error, never silently merged);
    orders are upserted, which the forward-only trigger checks like any other update.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        for table in (*WHOLE,):
            conn.execute(f"DELETE FROM {table}")
        for table in ("orders", *APPEND_ONLY, *WHOLE):
            data = tables.get(table)  # absent from increments written before it existed
            if not data or not data["rows"]:
                continue
            columns = data["columns"]
            quoted = ", ".join(f'"{c}"' for c in columns)
            marks = ", ".join("?" for _ in columns)
            sql = f"INSERT INTO {table} ({quoted}) VALUES ({marks})"
            if table == "orders":
                updates = ", ".join(f'"{c}" = excluded."{c}"' for c in columns if c != "id")
                sql += f" ON CONFLICT(id) DO UPDATE SET {updates}"
            conn.executemany(sql, data["rows"])
        for table in INSERT_ONLY:
            data = tables.get(table)  # absent from increments written before it existed
            if data and data["rows"]:
                quoted = ", ".join(f'"{c}"' for c in data["columns"])
                marks = ", ".join("?" for _ in data["columns"])
                conn.executemany(f"INSERT OR IGNORE INTO {table} ({quoted}) VALUES ({marks})",
                                 data["rows"])
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
