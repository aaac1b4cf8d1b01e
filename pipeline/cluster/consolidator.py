"""Ship one host's SQLite ledger into its PostgreSQL schema, each row exactly once.

The host's ledger is read through a ``mode=ro`` engine (SQLite itself refuses writes) in
ONE read transaction per pass: WAL readers never block the ledger's writer, and every row
of a pass comes from one commit of the ledger, so fills never reach PostgreSQL before the
orders they reference, and positions are written as of the same commit as the fills. (The
price: while a pass catches up a backlog, about 15 s per million rows here, the ledger's
WAL cannot be checkpointed past that commit; it is never blocked.)

How each table travels (its kind comes from the models, see
:mod:`pipeline.ledger.backup.capture`, so a new table cannot be forgotten here either):

- history (fills, balances, audit_log, order_signatures, chain_balances; no UPDATE of money
  and no DELETE): rows above the host's cursor for that table, in id order, in batches.
  Each batch is one PostgreSQL transaction holding the rows (COPY into a staging table,
  then ``INSERT ... ON CONFLICT DO NOTHING`` keyed by the host's schema, the table and the
  row id) AND the cursor: a crash of anything before COMMIT ships the batch again, after
  COMMIT never again.
- orders: new ones like history, plus the orders still open in PostgreSQL re-read each pass
  (at most the executor's pending orders) and upserted only where the host's
  ``status_rank`` is higher, so a replay never moves an order back and the forward-only
  trigger on the copy stays satisfied.
- state (positions, config, ring_cursors, meta): replaced when they differ; small.
- kill_switch_nonces: inserted if missing (never updated or deleted on the host).

Ids never collide across hosts because every host has its own schema. Shippers of one host
take turns on an advisory lock and re-read the cursor under it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

import psycopg
from sqlalchemy import Column, Engine, MetaData, Row, Table, delete, func, insert, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Connection

from pipeline.cluster.pgschema import CLUSTER, ensure_host, lock_host, validate_host
from pipeline.errors import OperationalError
from pipeline.ledger.backup.capture import backup_kinds
from pipeline.ledger.base import ModelBase
from pipeline.ledger.db import make_engine
from pipeline.ledger.migrate import current_revision, head_revision
from pipeline.ledger.models import Meta
from pipeline.ledger.reports import RANK_FINAL

DEFAULT_BATCH_ROWS: Final = 5000
# A test seam: called with (table, point) at "rows" (inside the transaction, rows written),
# "cursor" (inside, cursor written) and "committed"; raising there simulates a crash.
Fault = Callable[[str, str], None]


def _no_fault(_table: str, _point: str) -> None:
    return None


class Consolidator:
    """Ships the ledger at ``database`` into schema ``host`` of the ``postgres`` engine."""

    def __init__(self, host: str, database: Path, postgres: Engine, *,
                 batch_rows: int = DEFAULT_BATCH_ROWS, fault: Fault = _no_fault) -> None:
        self.host = validate_host(host)
        if batch_rows < 1:
            raise ValueError(f"batch_rows must be >= 1, got {batch_rows}")
        if not database.is_file():
            raise OperationalError(f"{database}: no ledger database there (wrong --database?)")
        self._batch_rows = batch_rows
        self._fault = fault
        self._database = database
        self._lite = make_engine(database, read_only=True)
        # Model tables are unqualified: they render as "<host>".<table> on this engine.
        self._pg = postgres.execution_options(schema_translate_map={None: host})
        self._tables = ModelBase.metadata.tables
        self._kinds = backup_kinds()
        self._stages: dict[str, Table] = {}

    def close(self) -> None:
        """Release the SQLite engine (the PostgreSQL engine is the caller's)."""
        self._lite.dispose()

    def start(self) -> bool:
        """Check the host ledger and make its PostgreSQL schema; True if the host is new.

        Refuses a ledger of another schema revision (its columns differ from the copy) and
        one that is not the ledger shipped so far: a replaced or restored file, whose rows
        at the shipped ids are missing or other rows (shipping on would skip or mix)."""
        with self._lite.connect() as lite, lite.begin():
            revision = current_revision(lite)
            environment = lite.scalar(select(Meta.value).where(Meta.key == "environment"))
        if environment is None:
            raise OperationalError(f"{self._database}: not an initialised ledger database")
        if revision != head_revision():
            raise OperationalError(
                f"{self._database}: ledger schema revision {revision!r}, this code ships "
                f"{head_revision()!r}: run the same version on the host and here")
        with self._pg.begin() as pg:
            new = ensure_host(pg, self.host, environment)
            shipped = {t: self._last_shipped(pg, t) for t in self._history()}
        with self._lite.connect() as lite, lite.begin():
            for table, (last_id, row) in shipped.items():
                if row is not None and self._last_shipped(lite, table, last_id)[1] != row:
                    raise OperationalError(
                        f"{self._database}: {table} id {last_id} is not the row shipped as "
                        f"host {self.host!r} (the file was replaced or restored): "
                        "consolidate it under a new host name")
        return new

    def _last_shipped(self, conn: Connection, name: str,
                      last_id: int | None = None) -> tuple[int, tuple[Any, ...] | None]:
        """(id, identity) of the last row shipped of ``name``: the cursor's row on ``conn``
        (PostgreSQL) or row ``last_id`` (the host). Orders are identified by what never
        changes; history rows never change at all."""
        if last_id is None:
            last_id = self._cursor(conn, name)
        table = self._tables[name]
        columns = ([table.c.client_order_id, table.c.created_at] if name == "orders"
                   else list(table.columns))
        row = conn.execute(select(*columns).where(table.c.id == last_id)).first()
        return last_id, None if row is None else tuple(row)

    def ship_once(self) -> dict[str, int]:
        """One pass: every table up to one commit of the ledger; rows written per table."""
        counts: dict[str, int] = {}
        with self._lite.connect() as lite, lite.begin():  # one snapshot for the whole pass
            counts["orders_advanced"] = self._advance_open_orders(lite)
            for table in self._history():
                counts[table] = self._ship_history(lite, table)
            counts.update(self._replace_state(lite))
        return counts

    def _tops(self, lite: Connection) -> dict[str, int]:
        """The highest id of each history table in ``lite``'s snapshot."""
        return {t: int(lite.scalar(select(func.coalesce(func.max(self._tables[t].c.id), 0)))
                       or 0) for t in self._history()}

    def _history(self) -> tuple[str, ...]:
        """Tables shipped by id cursor, orders first (the others reference them)."""
        return tuple(t for t, kind in self._kinds.items() if kind in ("orders", "append_only"))

    def _cursor(self, pg: Connection, table: str) -> int:
        last = pg.scalar(text(f"SELECT last_id FROM {CLUSTER}.cursors "
                              "WHERE host = :host AND table_name = :table"),
                         {"host": self.host, "table": table})
        return int(last or 0)

    def _insert(self, table: Table, source: Table | None = None) -> Any:
        """The idempotent insert of ``table`` (of the rows of ``source`` if given, else of
        the parameters): orders only ever move forward."""
        stmt = pg_insert(table)
        if source is not None:
            stmt = stmt.from_select(table.c.keys(), select(source))
        if table.name != "orders":
            return stmt.on_conflict_do_nothing(index_elements=[table.c.id])
        return stmt.on_conflict_do_update(
            index_elements=[table.c.id],
            set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name != "id"},
            where=stmt.excluded.status_rank > table.c.status_rank)

    def _ship_history(self, lite: Connection, name: str) -> int:
        table = self._tables[name]
        shipped = 0
        while True:
            with self._pg.begin() as pg:
                lock_host(pg, self.host)
                last = self._cursor(pg, name)
                rows = lite.execute(select(table).where(table.c.id > last)
                                    .order_by(table.c.id).limit(self._batch_rows)).all()
                if not rows:
                    return shipped
                pg.execute(self._insert(table, self._copy_in(pg, table, rows)))
                self._fault(name, "rows")
                pg.execute(text(
                    f"INSERT INTO {CLUSTER}.cursors (host, table_name, last_id, shipped_at) "
                    "VALUES (:host, :table, :last_id, now() AT TIME ZONE 'UTC') "
                    "ON CONFLICT (host, table_name) DO UPDATE "
                    "SET last_id = excluded.last_id, shipped_at = excluded.shipped_at"),
                    {"host": self.host, "table": name, "last_id": rows[-1].id})
                self._fault(name, "cursor")
            self._fault(name, "committed")
            shipped += len(rows)
            if len(rows) < self._batch_rows:
                return shipped

    def _copy_in(self, pg: Connection, table: Table, rows: Sequence[Row[Any]]) -> Table:
        """COPY ``rows`` into a session-private staging copy of ``table``; returns it.

        COPY cannot say ON CONFLICT, so rows land in a temporary table emptied at the end
        of the transaction (whether it commits or not) and go on with one INSERT ... SELECT:
        several times the rows per second of executemany, same idempotence."""
        stage = self._stages.get(table.name)
        if stage is None:
            stage = Table(f"stage_{table.name}", MetaData(),
                          *(Column(c.name, c.type) for c in table.columns), schema="pg_temp")
            self._stages[table.name] = stage
        pg.execute(text(f'CREATE TEMPORARY TABLE IF NOT EXISTS {stage.name} '
                        f'(LIKE "{self.host}".{table.name}) ON COMMIT DELETE ROWS'))
        columns = ", ".join(f'"{c.name}"' for c in table.columns)
        driver = pg.connection.driver_connection
        if not isinstance(driver, psycopg.Connection):  # COPY is psycopg's own API
            raise OperationalError("the PostgreSQL URL must use the psycopg (3) driver")
        with driver.cursor() as cursor, cursor.copy(
                f"COPY pg_temp.{stage.name} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
        return stage

    def _advance_open_orders(self, lite: Connection) -> int:
        """Upsert the orders open in the copy whose status moved on the host."""
        orders = self._tables["orders"]
        advanced = 0
        with self._pg.begin() as pg:
            lock_host(pg, self.host)
            open_ranks = dict(pg.execute(select(orders.c.id, orders.c.status_rank)
                                         .where(orders.c.status_rank < RANK_FINAL)).all())
            ids = sorted(open_ranks)
            for start in range(0, len(ids), self._batch_rows):
                chunk = ids[start:start + self._batch_rows]
                rows = [dict(r) for r in lite.execute(
                    select(orders).where(orders.c.id.in_(chunk))).mappings()
                    if r["status_rank"] > open_ranks[r["id"]]]
                if rows:
                    pg.execute(self._insert(orders), rows)
                    advanced += len(rows)
            self._fault("orders", "advanced")
        return advanced

    def _replace_state(self, lite: Connection) -> dict[str, int]:
        """State tables replaced where they differ, nonces added: one transaction."""
        counts: dict[str, int] = {}
        tops = self._tops(lite)
        with self._pg.begin() as pg:
            lock_host(pg, self.host)
            if any(self._cursor(pg, t) > top for t, top in tops.items()):
                # Another shipper of this host (started by mistake) is past this snapshot:
                # its state is newer, and positions must never step back.
                return {}
            for name, kind in self._kinds.items():
                if kind == "whole":
                    counts[name] = self._replace(lite, pg, self._tables[name])
                elif kind == "insert_only":
                    counts[name] = self._add_missing(lite, pg, self._tables[name])
            self._fault("state", "rows")
        return {name: n for name, n in counts.items() if n}

    @staticmethod
    def _replace(lite: Connection, pg: Connection, table: Table) -> int:
        """Make the copy of ``table`` equal the host's; rows written (0: already equal)."""
        rows = [dict(r) for r in lite.execute(select(table)).mappings()]
        have = {tuple(r) for r in pg.execute(select(table))}
        if {tuple(r.values()) for r in rows} == have:
            return 0
        pg.execute(delete(table))
        if rows:
            pg.execute(insert(table), rows)
        return len(rows)

    @staticmethod
    def _add_missing(lite: Connection, pg: Connection, table: Table) -> int:
        """Insert the host's rows of ``table`` the copy lacks (keyed, never changed)."""
        (key,) = table.primary_key.columns
        have = set(pg.scalars(select(key)))
        rows = [dict(r) for r in lite.execute(select(table)).mappings() if r[key.name] not in have]
        if rows:
            pg.execute(pg_insert(table).on_conflict_do_nothing(), rows)
        return len(rows)
