"""The ledger's tables as typed SQLAlchemy 2.x models.

Identifiers: ``client_order_id`` and ``tick_seq`` are u64 in the records but SQLite integers
(and PostgreSQL's BIGINT, in a consolidated copy of this schema) are signed 64-bit. They
are stored as the signed int64 with the same bit pattern (``np.uint64 -> np.int64`` view),
so ids above 2**63-1 appear negative in SQL. The mapping is one-to-one, keeps the column an
8-byte integer (compact, fast unique index), and is undone with :func:`to_u64`. Sort order
in SQL is therefore not u64 order; nothing relies on it.

Times: ``*_at`` and ``ts`` columns are naive UTC datetimes; ``*_ns`` columns are integers in
the units and clocks documented in ``pipeline.records``. Money is float64 in asset units.

Backups: every table says how an incremental backup captures it, in its table info
(``{"backup": kind}``, see :mod:`pipeline.ledger.backup.capture`); a table without one
stops the backup code at import rather than silently dropping out of the backups.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from pipeline.ledger.base import ModelBase

_U64_WRAP = 1 << 64


def _backup(kind: str) -> tuple[dict[str, Any]]:
    """Table args saying how incremental backups capture the table (see module doc)."""
    return ({"info": {"backup": kind}},)


def to_u64(stored: int) -> int:
    """Undo the signed reinterpretation of a stored u64 id."""
    return stored % _U64_WRAP


def to_stored(u64: int) -> int:
    """The signed int64 with the same bit pattern as ``u64`` (how ids are stored)."""
    return u64 - _U64_WRAP if u64 >= 1 << 63 else u64


class Order(ModelBase):
    """One order; it changes only by moving up ``status_rank`` (1 = new, 2 = final)."""

    __tablename__ = "orders"
    # Open orders are few among millions: "is anything in flight?" reads this index only.
    __table_args__ = (Index("ix_orders_open", "status", sqlite_where=text("status = 'new'"),
                            postgresql_where=text("status = 'new'")),
                      *_backup("orders"))

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_order_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))  # "buy" / "sell"
    quantity: Mapped[float] = mapped_column(Float)
    limit_price: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))  # new / filled / rejected / cancelled
    status_rank: Mapped[int] = mapped_column(Integer)
    filled_qty: Mapped[float] = mapped_column(Float)
    avg_price: Mapped[float] = mapped_column(Float)
    fee: Mapped[float] = mapped_column(Float)  # quote units
    network_fee: Mapped[float] = mapped_column(Float, default=0.0)  # native SOL (chain venues)
    # Chain venues: transaction / balance_change / status (see ReportDetail); else NULL.
    outcome_source: Mapped[str | None] = mapped_column(String(16))
    reject_reason: Mapped[str | None] = mapped_column(String(32))  # RejectReason name
    tick_seq: Mapped[int] = mapped_column(BigInteger)
    tick_ingest_ns: Mapped[int] = mapped_column(BigInteger)
    decision_ns: Mapped[int] = mapped_column(BigInteger)
    send_ns: Mapped[int] = mapped_column(BigInteger)
    tick_to_order_ns: Mapped[int] = mapped_column(BigInteger)  # send_ns - tick_ingest_ns
    venue_ref: Mapped[str] = mapped_column(String(88))
    created_at: Mapped[datetime] = mapped_column(DateTime)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class Fill(ModelBase):
    """An execution; at most one per order because the paper venue fills fully."""

    __tablename__ = "fills"
    __table_args__ = _backup("append_only")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_order_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("orders.client_order_id"), unique=True
    )
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(4))
    quantity: Mapped[float] = mapped_column(Float)
    price: Mapped[float] = mapped_column(Float)
    fee: Mapped[float] = mapped_column(Float)  # quote units
    venue_ref: Mapped[str] = mapped_column(String(88))
    venue_ts_ns: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime)


class OrderSignature(ModelBase):
    """A transaction signed for an order (chain venues); re-signed orders have several."""

    __tablename__ = "order_signatures"
    __table_args__ = _backup("append_only")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # backups copy by id
    signature: Mapped[str] = mapped_column(String(88), unique=True)
    client_order_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("orders.client_order_id"), index=True)
    last_valid_block_height: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(DateTime)
    # The wallet just before signing (slot 0: not read) and the message's fee: they measure
    # a landed transaction the RPC never serves, also after an executor restart.
    wallet_slot: Mapped[int] = mapped_column(BigInteger, default=0)
    wallet_lamports: Mapped[int] = mapped_column(BigInteger, default=0)
    wallet_base: Mapped[int] = mapped_column(BigInteger, default=0)
    wallet_quote: Mapped[int] = mapped_column(BigInteger, default=0)
    message_fee: Mapped[int] = mapped_column(BigInteger, default=0)


class Position(ModelBase):
    """Net position per symbol with average-cost accounting; PnL excludes fees."""

    __tablename__ = "positions"
    __table_args__ = _backup("whole")

    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    quantity: Mapped[float] = mapped_column(Float)  # signed base units: short < 0
    avg_price: Mapped[float] = mapped_column(Float)
    realized_pnl: Mapped[float] = mapped_column(Float)  # quote units
    fees: Mapped[float] = mapped_column(Float)  # quote units, cumulative
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class Balance(ModelBase):
    """Append-only balance history; the latest row per asset is the current amount."""

    __tablename__ = "balances"
    __table_args__ = _backup("append_only")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset: Mapped[str] = mapped_column(String(16), index=True)
    amount: Mapped[float] = mapped_column(Float)
    ts: Mapped[datetime] = mapped_column(DateTime)
    reason: Mapped[str] = mapped_column(String(64))


class ChainBalance(ModelBase):
    """A reading of the trading account on chain, next to the ledger's amount at that moment."""

    __tablename__ = "chain_balances"
    __table_args__ = _backup("append_only")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    asset: Mapped[str] = mapped_column(String(16), index=True)
    amount: Mapped[float] = mapped_column(Float)
    ledger_amount: Mapped[float] = mapped_column(Float)
    ts: Mapped[datetime] = mapped_column(DateTime)
    reason: Mapped[str] = mapped_column(String(64))  # what prompted the reading


class ConfigEntry(ModelBase):
    """Runtime settings changed through the control plane, e.g. TRADE_ENABLED."""

    __tablename__ = "config"
    __table_args__ = _backup("whole")

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime)


class AuditLog(ModelBase):
    """Who changed what and when; ``detail`` is JSON text."""

    __tablename__ = "audit_log"
    __table_args__ = _backup("append_only")

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ts: Mapped[datetime] = mapped_column(DateTime)
    actor: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64))
    detail: Mapped[str] = mapped_column(Text)


class RingCursor(ModelBase):
    """The next sequence to read from a ring, valid only for that ring instance."""

    __tablename__ = "ring_cursors"
    __table_args__ = _backup("whole")

    ring: Mapped[str] = mapped_column(String(64), primary_key=True)
    instance_id: Mapped[str] = mapped_column(String(36))  # uuid text
    cursor: Mapped[int] = mapped_column(BigInteger)


class Meta(ModelBase):
    """Facts about the database itself: environment, schema_version."""

    __tablename__ = "meta"
    __table_args__ = _backup("whole")

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class KillSwitchNonce(ModelBase):
    """Nonces of accepted kill-switch messages: the primary key refuses a replay."""

    __tablename__ = "kill_switch_nonces"
    __table_args__ = _backup("insert_only")

    nonce: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime)
    used_at: Mapped[datetime] = mapped_column(DateTime)
