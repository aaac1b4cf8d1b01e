"""``orders`` and ``fills``: recent ledger rows, read through a read-only connection.

The admin tool never writes the database: the connection is opened with ``mode=ro`` so
SQLite itself refuses any write, and each query is one short read transaction (a long one
would hold back WAL checkpoints of the running ledger).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from pipeline.errors import OperationalError

_QUERIES: Final = {
    "orders": ("SELECT id, client_order_id, symbol, side, quantity, limit_price, status, "
               "filled_qty, avg_price, reject_reason, tick_to_order_ns, created_at "
               "FROM orders ORDER BY id DESC LIMIT ?"),
    "fills": ("SELECT id, client_order_id, symbol, side, quantity, price, fee, venue_ref, "
              "created_at FROM fills ORDER BY id DESC LIMIT ?"),
}


Rows = Sequence[Sequence[object]]


def recent_rows(database: Path, table: str, limit: int) -> tuple[list[str], Rows]:
    """(column names, newest rows first) of ``orders`` or ``fills``."""
    if not database.exists():
        raise OperationalError(f"{database}: no ledger database (wrong --env or --data-dir?)")
    conn = sqlite3.connect(f"file:{database}?mode=ro", uri=True, timeout=5.0)
    try:
        cursor = conn.execute(_QUERIES[table], (limit,))
        columns = [d[0] for d in cursor.description]
        return columns, cursor.fetchall()
    except sqlite3.Error as exc:
        raise OperationalError(f"{database}: cannot read {table}: {exc}") from exc
    finally:
        conn.close()


def format_table(columns: list[str], rows: Rows) -> str:
    """Plain aligned columns, the way an operator reads them in a terminal."""
    cells = [columns, *[["" if v is None else str(v) for v in row] for row in rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip()
                     for row in cells)
