"""The ledger's writes: a batch of execution reports, its effects and the ring cursor, atomically.

``apply`` runs ONE transaction per batch. It books each report only if it moves its order
up the lifecycle (first report inserts, a final report finalises a new order); anything
else is a duplicate (a replay after a crash, or a second final report) and is counted, not
written. Because the ring cursor commits with the rows, a crash before commit replays the
batch and a crash after it does not: either way nothing is booked twice.

Positions and latest balances are cached in memory (loaded at construction) so a batch
needs no reads beyond the order ranks; caches change only after a commit succeeds.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from sqlalchemy import Engine, Select, UpdateBase, bindparam, func, insert, select, update
from sqlalchemy.dialects.sqlite import insert as upsert
from sqlalchemy.engine import Connection

from pipeline.errors import BadInputError, OperationalError
from pipeline.ledger.accounting import PositionState, apply_fills, balance_deltas
from pipeline.ledger.config import LedgerConfig
from pipeline.ledger.db import TRADE_ENABLED, sql_datetime, utc_now, write_audit, write_config
from pipeline.ledger.models import (
    Balance,
    ChainBalance,
    ConfigEntry,
    Fill,
    Meta,
    Order,
    OrderSignature,
    Position,
    RingCursor,
)
from pipeline.ledger.reports import Booking, Columns, book, validate

SymbolMap = Mapping[int, tuple[str, str, str]]  # symbol_id -> (name, base, quote)


@dataclasses.dataclass(frozen=True)
class CommitResult:
    """What one ``apply`` wrote; rows_written feeds the WAL estimate of the pacer."""

    rows_written: int  # order inserts + updates, fills, positions, balances, cursors
    duplicates: int  # reports that changed nothing (replays, second final reports)
    fills: int
    commit_seconds: float  # BEGIN to COMMIT, including the fsync
    balances_changed: int  # assets whose balance moved (fills, network fees)
    unknown_outcomes: int = 0  # orders reported with an unknown outcome (chain venues)
    settled_signed: int = 0  # orders that had signed a transaction and are now final
    signed: int = 0  # transactions named by NEW reports (chain venues)


class _CompiledStatements:
    """Core statements compiled once per column set: compiling costs more than executing.

    Statements are compiled from the Core constructs (so the models stay the single source
    of the SQL) but executed as positional tuples on the driver: SQLAlchemy's per-row
    parameter processing would otherwise cost more than SQLite's own work. Values are
    already in their stored form (ids as int64, times as text from ``sql_datetime``).
    """

    def __init__(self) -> None:
        self.insert_order = insert(Order)
        self.update_order = update(Order).where(
            Order.client_order_id == bindparam("b_client_order_id"))
        self.insert_fill = insert(Fill)
        self.insert_signature = insert(OrderSignature).prefix_with("OR IGNORE")  # replays
        self.insert_balance = insert(Balance)
        position = upsert(Position)
        self.upsert_position = position.on_conflict_do_update(
            index_elements=[Position.symbol],
            set_={c: position.excluded[c] for c in
                  ("quantity", "avg_price", "realized_pnl", "fees", "updated_at")})
        cursor = upsert(RingCursor)
        self.upsert_cursor = cursor.on_conflict_do_update(
            index_elements=[RingCursor.ring],
            set_={"instance_id": cursor.excluded.instance_id, "cursor": cursor.excluded.cursor})
        # One JSON parameter instead of thousands of bound parameters in an IN list.
        wanted = func.json_each(bindparam("ids")).table_valued("value")
        self.stored_ranks = select(Order.client_order_id, Order.status_rank).where(
            Order.client_order_id.in_(select(wanted.c.value)))
        self._compiled: dict[tuple[int, tuple[str, ...]], tuple[str, list[str]]] = {}

    def executemany(self, conn: Connection, stmt: UpdateBase, columns: Columns) -> int:
        """Run ``stmt`` once per row of ``columns``; returns the row count."""
        rows = len(next(iter(columns.values()), []))
        if not rows:
            return 0
        sql, order = self._compile(conn, stmt, tuple(columns))
        conn.exec_driver_sql(sql, list(zip(*(columns[k] for k in order), strict=True)))
        return rows

    def query(self, conn: Connection, stmt: Select[Any, Any],
              params: Mapping[str, Any]) -> list[Any]:
        """The rows of ``stmt`` with ``params`` bound, as plain tuples."""
        sql, order = self._compile(conn, stmt, tuple(params))
        return list(conn.exec_driver_sql(sql, tuple(params[k] for k in order)).all())

    def _compile(self, conn: Connection, stmt: UpdateBase | Select[Any, Any],
                 keys: tuple[str, ...]) -> tuple[str, list[str]]:
        entry = self._compiled.get((id(stmt), keys))
        if entry is None:
            compiled = stmt.compile(dialect=conn.dialect, column_keys=list(keys))
            entry = (str(compiled), list(compiled.positiontup or []))
            self._compiled[(id(stmt), keys)] = entry
        return entry


class LedgerStore:
    """The ledger's write side; the only object in the pipeline that writes the database."""

    def __init__(self, engine: Engine, symbols: SymbolMap, config: LedgerConfig,
                 native_asset: str | None = None) -> None:
        """``native_asset`` is the asset network fees are paid in (chain venues only)."""
        self._sql = _CompiledStatements()
        if not symbols:
            raise OperationalError("LedgerStore: no symbols configured")
        names = [name for name, _, _ in symbols.values()]
        if len(set(names)) != len(names):
            raise OperationalError(f"LedgerStore: duplicate symbol names in {dict(symbols)}")
        self._engine = engine
        self._max_batch = config.max_batch
        self._symbols = dict(symbols)
        self._assets = {sym_id: (base, quote) for sym_id, (_, base, quote) in symbols.items()}
        self._native_asset = native_asset
        with engine.connect() as conn:
            if conn.scalar(select(Meta.value).where(Meta.key == "environment")) is None:
                raise OperationalError(
                    f"{engine.url.database}: ledger database not initialised; run init_db first"
                )
            self._positions = {
                row.symbol: PositionState(row.quantity, row.avg_price, row.realized_pnl, row.fees)
                for row in conn.execute(select(Position))
            }
            latest = select(func.max(Balance.id)).group_by(Balance.asset)
            self._balances: dict[str, float] = dict(
                conn.execute(select(Balance.asset, Balance.amount).where(Balance.id.in_(latest)))
                .all()
            )

    def apply(self, reports: np.ndarray, cursors: Mapping[str, tuple[str, int]]) -> CommitResult:
        """Book a batch of REPORT_DTYPE records and store the ring cursors, in one transaction.

        Raises BadInputError (and writes nothing) if any report is malformed or the batch is
        larger than ``max_batch`` (commit latency and the WAL estimate assume that bound).
        """
        validate(reports, self._symbols)
        if len(reports) > self._max_batch:
            raise BadInputError(f"batch of {len(reports)} reports exceeds max_batch "
                                f"{self._max_batch}")
        for ring, (instance_id, cursor) in cursors.items():
            if not instance_id or cursor < 0:
                raise BadInputError(f"ring cursor {ring}={(instance_id, cursor)!r} is invalid")
        started_s = time.perf_counter()
        now = utc_now()
        stamp = sql_datetime(now)
        with self._engine.begin() as conn:
            booking = book(reports, self._stored_ranks(conn, reports), self._symbols, stamp)
            rows = self._write_orders(conn, booking)
            positions, balances = self._write_money(conn, booking, stamp)
            for coid, signature in zip(booking.unknowns["client_order_id"],
                                       booking.unknowns["signature"], strict=True):
                # The moment the books stopped knowing: the order stays open meanwhile.
                write_audit(conn, now, "executor", "order.outcome_unknown", {
                    "client_order_id": coid % (1 << 64), "signature": signature})
            self._sql.executemany(conn, self._sql.upsert_cursor, {
                "ring": list(cursors), "instance_id": [i for i, _ in cursors.values()],
                "cursor": [c for _, c in cursors.values()]})
        latency_s = time.perf_counter() - started_s
        self._positions.update(positions)
        self._balances.update(balances)
        return CommitResult(
            rows_written=rows + len(positions) + len(balances) + len(cursors),
            duplicates=booking.duplicates,
            fills=len(booking.fill_records),
            commit_seconds=latency_s,
            balances_changed=len(balances),
            unknown_outcomes=len(booking.unknowns["client_order_id"]),
            settled_signed=booking.settled_signed,
            signed=len(booking.signatures["signature"]),
        )

    def _stored_ranks(self, conn: Connection, reports: np.ndarray) -> np.ndarray:
        """status_rank already stored for each report's order (0 if unknown), one query."""
        ids = reports["client_order_id"].view(np.int64)
        if len(ids) == 0:
            return np.zeros(0, dtype=np.int64)
        unique_ids = np.unique(ids)
        found = self._sql.query(conn, self._sql.stored_ranks,
                                {"ids": json.dumps(unique_ids.tolist())})
        known = np.zeros(len(unique_ids), dtype=np.int64)
        if found:
            found_ids, found_ranks = np.asarray(found, dtype=np.int64).T
            known[np.searchsorted(unique_ids, found_ids)] = found_ranks
        return known[np.searchsorted(unique_ids, ids)]

    def _write_orders(self, conn: Connection, booking: Booking) -> int:
        sql = self._sql
        return (sql.executemany(conn, sql.insert_order, booking.order_inserts)
                + sql.executemany(conn, sql.update_order, booking.order_updates)
                + sql.executemany(conn, sql.insert_fill, booking.fills)
                + sql.executemany(conn, sql.insert_signature, booking.signatures))

    def _write_money(
        self, conn: Connection, booking: Booking, stamp: str
    ) -> tuple[dict[str, PositionState], dict[str, float]]:
        """Upsert changed positions and append balance rows stamped ``stamp`` (the
        commit's time, stored form); returns the new cache entries.

        Network fees (native SOL of chain venues) come off ``native_asset``, also for
        orders whose transaction failed on chain: the chain charged them all the same.
        """
        fills = booking.fill_records
        positions: dict[str, PositionState] = {}
        deltas: dict[str, float] = {}
        if len(fills):
            signed_qty = fills["filled_qty"] * fills["side"].astype(np.float64)
            names = [self._symbols[s][0] for s in fills["symbol_id"].tolist()]
            positions = apply_fills(self._positions, names, signed_qty, fills["avg_price"],
                                    fills["fee"])
            states = list(positions.values())
            self._sql.executemany(conn, self._sql.upsert_position, {
                "symbol": list(positions), "quantity": [p.quantity for p in states],
                "avg_price": [p.avg_price for p in states],
                "realized_pnl": [p.realized_pnl for p in states],
                "fees": [p.fees for p in states], "updated_at": [stamp] * len(states)})
            deltas = balance_deltas(fills["symbol_id"], signed_qty, fills["avg_price"],
                                    fills["fee"], self._assets)
        if booking.network_fee:
            if self._native_asset is None:
                raise BadInputError("a report carries a network fee but this ledger has no "
                                    "native asset (not a chain venue)")
            deltas[self._native_asset] = deltas.get(self._native_asset, 0.0) \
                - booking.network_fee
        if not deltas:
            return positions, {}
        balances = {asset: self._balances.get(asset, 0.0) + d for asset, d in deltas.items()}
        reason = "fills" if len(fills) else "network fees"
        assets = sorted(balances)
        self._sql.executemany(conn, self._sql.insert_balance, {
            "asset": assets, "amount": [balances[a] for a in assets],
            "ts": [stamp] * len(assets), "reason": [reason] * len(assets)})
        return positions, balances

    def cursor(self, ring: str, instance_id: str) -> int | None:
        """The stored cursor of ``ring``, or None if none is stored for this ring instance."""
        with self._engine.connect() as conn:
            row = conn.execute(
                select(RingCursor.instance_id, RingCursor.cursor).where(RingCursor.ring == ring)
            ).first()
        return int(row.cursor) if row is not None and row.instance_id == instance_id else None

    def trade_enabled(self) -> bool:
        """The kill switch; False unless the database says exactly "true"."""
        with self._engine.connect() as conn:
            value = conn.scalar(select(ConfigEntry.value).where(ConfigEntry.key == TRADE_ENABLED))
        return value == "true"

    def set_config(self, key: str, value: str, actor: str,
                   detail: Mapping[str, Any] | None = None) -> None:
        """Set a config row and record who did it, in one transaction."""
        if key == TRADE_ENABLED and value not in ("true", "false"):
            raise BadInputError(f"{TRADE_ENABLED} must be 'true' or 'false', got {value!r}")
        now = utc_now()
        with self._engine.begin() as conn:
            old = write_config(conn, key, value, now)
            write_audit(conn, now, actor, "config.set",
                        {"key": key, "old": old, "new": value, **(detail or {})})

    def audit(self, actor: str, action: str, detail: Mapping[str, Any] | None = None) -> None:
        """Append one audit row."""
        with self._engine.begin() as conn:
            write_audit(conn, utc_now(), actor, action, detail or {})

    def open_orders(self) -> int:
        """Orders still NEW: with a chain venue, transactions that may be landing now."""
        with self._engine.connect() as conn:
            return int(conn.scalar(select(func.count()).select_from(Order)
                                   .where(Order.status == "new")) or 0)

    def chain_assets_read(self) -> set[str]:
        """Assets the chain has ever been read for (opening balances are taken only once)."""
        with self._engine.connect() as conn:
            return set(conn.scalars(select(ChainBalance.asset).distinct()))

    def record_chain_balances(self, chain: Mapping[str, float], reason: str, *,
                              opening: Mapping[str, float] | None = None,
                              reopened_by: Mapping[str, str] | None = None) -> None:
        """Store one chain reading next to the ledger's amounts, in one transaction.

        ``opening``: assets whose ledger balance is set to the chain's (the first reading
        of an asset opens its account; an operator's re-open, ``reopened_by``, all of
        them), audited with the ledger's amount before.
        """
        now = utc_now()
        opening = dict(opening or {})
        with self._engine.begin() as conn:
            if opening:
                kind = "re-opened (chain)" if reopened_by else "opening balance (chain)"
                conn.execute(insert(Balance), [
                    {"asset": asset, "amount": amount, "ts": now, "reason": kind}
                    for asset, amount in sorted(opening.items())])
                write_audit(conn, now, (reopened_by or {}).get("operator", "ledger"),
                            "balances.reopened" if reopened_by else "balances.opening", {
                                **(reopened_by or {}),
                                "chain": dict(sorted(opening.items())),
                                "ledger_before": {a: self._balances.get(a)
                                                  for a in sorted(opening)}})
            ledger = {**self._balances, **opening}
            conn.execute(insert(ChainBalance), [
                {"asset": asset, "amount": amount, "ledger_amount": ledger.get(asset, 0.0),
                 "ts": now, "reason": reason}
                for asset, amount in sorted(chain.items())])
        self._balances.update(opening)

    def positions(self) -> dict[str, PositionState]:
        """Current position per symbol, as of the last commit (no database read)."""
        return dict(self._positions)

    def balances(self) -> dict[str, float]:
        """Current amount per asset, as of the last commit (no database read)."""
        return dict(self._balances)

    def summary(self) -> dict[str, Any]:
        """Orders by status, fill count, positions and latest balances, for status lines."""
        with self._engine.connect() as conn:
            by_status = dict(conn.execute(
                select(Order.status, func.count()).group_by(Order.status)).all())
            fills = conn.scalar(select(func.count()).select_from(Fill)) or 0
        return {
            "orders": by_status,
            "fills": fills,
            "positions": {s: dataclasses.asdict(p) for s, p in sorted(self._positions.items())},
            "balances": dict(sorted(self._balances.items())),
        }
