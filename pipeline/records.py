"""Fixed-size, little-endian record layouts carried by the shared-memory rings.

Every record that crosses a process boundary is defined here and only here. Fields are
ordered widest first so that numpy packs them with natural alignment and no padding; a
layout change must bump ``LAYOUT_VERSION`` so that old segments refuse to attach.

Prices and quantities are float64 in quote/base units (USDT per SOL, SOL). Times ending in
``_ns`` taken from ``time.monotonic_ns`` are only comparable within one host boot; source
and venue timestamps are Unix epoch nanoseconds.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any, Final

import numpy as np

LAYOUT_VERSION: Final = 3

TICK_DTYPE: Final = np.dtype(
    [
        ("seq", "<u8"),  # ingest sequence, strictly increasing within a run of the tick ring
        ("ingest_ns", "<i8"),  # time.monotonic_ns when ingest accepted the tick
        ("source_ts_ns", "<i8"),  # the source's own timestamp, Unix epoch ns
        ("price", "<f8"),
        ("size", "<f8"),
        ("symbol_id", "<u4"),
        ("source_id", "<u2"),
        ("flags", "<u2"),
    ]
)

INTENT_DTYPE: Final = np.dtype(
    [
        ("client_order_id", "<u8"),
        ("tick_seq", "<u8"),  # the tick that caused this decision
        ("tick_ingest_ns", "<i8"),  # copied from that tick: start of tick-to-order latency
        ("decision_ns", "<i8"),  # time.monotonic_ns when the strategy emitted the intent
        ("quantity", "<f8"),  # base units, always positive; direction is in `side`
        ("limit_price", "<f8"),  # worst acceptable price, quote per base
        ("symbol_id", "<u4"),
        ("side", "<i1"),  # Side: +1 buy, -1 sell
        ("order_type", "<u1"),
        ("strategy_id", "<u2"),
    ]
)

REPORT_DTYPE: Final = np.dtype(
    [
        ("client_order_id", "<u8"),
        ("tick_seq", "<u8"),
        ("tick_ingest_ns", "<i8"),
        ("decision_ns", "<i8"),
        ("send_ns", "<i8"),  # time.monotonic_ns when the executor handed the order to the venue
        ("venue_ts_ns", "<i8"),  # venue's timestamp of this report, Unix epoch ns
        # On a chain venue's NEW report: the block height after which the signed transaction
        # in venue_ref can no longer land (Solana's lastValidBlockHeight); 0 elsewhere.
        ("last_valid_height", "<u8"),
        # Also on a chain venue's NEW report: the wallet just before signing (slot 0: not
        # read) and the fee the message fixes. After a restart they measure a landed swap
        # that the RPC will not serve.
        ("wallet_slot", "<u8"),
        ("wallet_lamports", "<u8"),
        ("wallet_base", "<u8"),  # base units of the symbol's base mint
        ("wallet_quote", "<u8"),
        ("message_fee", "<u8"),  # lamports
        ("quantity", "<f8"),  # ordered quantity (copied so the ledger needs only the report)
        ("limit_price", "<f8"),
        ("filled_qty", "<f8"),
        ("avg_price", "<f8"),
        ("fee", "<f8"),  # quote units
        # Native SOL the order's landed transaction cost the taker (signature and priority
        # fees), also when it failed on chain; set on final reports of chain venues only.
        ("network_fee", "<f8"),
        ("symbol_id", "<u4"),
        ("side", "<i1"),
        ("status", "<u1"),  # OrderStatus
        ("detail", "<u1"),  # ReportDetail: what a chain venue knows about this report
        ("reject_reason", "<u2"),  # RejectReason, 0 unless rejected or cancelled
        ("venue_ref", "S88"),  # e.g. a base58 transaction signature (up to 88 characters)
    ]
)


class Side(enum.IntEnum):
    """Order direction; the numeric value is the sign applied to quantities."""

    BUY = 1
    SELL = -1


class OrderType(enum.IntEnum):
    """How the venue may execute the order."""

    LIMIT = 0  # fill only at limit_price or better
    MARKET = 1


class OrderStatus(enum.IntEnum):
    """Order lifecycle; values grow along the lifecycle so transitions only move upwards."""

    NEW = 1  # handed to the venue, not final
    FILLED = 2
    REJECTED = 3
    CANCELLED = 4

    @property
    def is_final(self) -> bool:
        return self is not OrderStatus.NEW


class ReportDetail(enum.IntEnum):
    """How a chain venue knows what a report says (0 for every other venue)."""

    NONE = 0
    # A NEW report repeated for an order whose transaction was sent but whose fate the RPC
    # has not told (errors, timeouts, lost answers, a landed transaction not yet served).
    # The order stays open: it is never booked as a reject on a guess.
    OUTCOME_UNKNOWN = 1
    FROM_TRANSACTION = 2  # a final report read from the landed transaction (getTransaction)
    # A fill measured as the change of the wallet's balances across the landed transaction,
    # because the RPC would not serve the transaction itself.
    FROM_BALANCE_CHANGE = 3
    # Failed on chain, read from the signature's status; the fee is the one its message fixes.
    FROM_STATUS = 4


class RejectReason(enum.IntEnum):
    """Why an order ended without a fill. Also used for pre-trade risk rejects."""

    NONE = 0
    TRADING_DISABLED = 1  # trading halted (kill switch, clock check, state unknown...)
    NO_MARKET_PRICE = 2  # the venue has not seen a tick for the symbol
    LIMIT_NOT_MARKETABLE = 3  # the next price was beyond the limit
    VENUE_ERROR = 4
    SHUTDOWN = 5  # the executor stopped before the order could complete
    LEDGER_STALLED = 6  # the ledger could not commit for too long: no new orders
    MAX_POSITION = 10
    MAX_NOTIONAL = 11
    MAX_ORDER_RATE = 12
    PRICE_BAND = 13
    BACKPRESSURE = 14  # the intents ring stayed full past its bound
    INVALID_ORDER = 15
    SHORT_NOT_ALLOWED = 16  # a sell beyond the position while risk.allow_short is off
    REFUSAL_BACKOFF = 17  # held back: the venue refused the symbol's last orders (risk.refusal_*)
    SYMBOL_PAUSED = 18  # held back: refusals in a row paused the symbol (risk.refusal_pause_*)
    STALE_INTENT = 19  # decided longer ago than executor.max_intent_age_ms (e.g. before a restart)


class TickFlag(enum.IntFlag):
    """Per-tick flags set by ingest."""

    NONE = 0
    REPLAY = 1  # from recorded history
    SYNTHETIC = 2  # generated (load tests)
    SUSPECT = 4  # passed validation but flagged (e.g. after a gap)


class SourceId(enum.IntEnum):
    """Where a tick came from."""

    REPLAY = 1
    SYNTHETIC = 2
    COINGECKO = 3
    PYTH = 4
    HERMES = 5
    JUPITER = 6


def empty(dtype: np.dtype[np.void], n: int = 0) -> np.ndarray:
    """A zeroed record array; the one way to make buffers of these layouts."""
    return np.zeros(n, dtype=dtype)


def layout_description(dtype: np.dtype[np.void]) -> str:
    """A canonical text form of a layout, stored in ring headers to refuse mismatches."""
    fields: Mapping[str, tuple[Any, ...]] = dtype.fields or {}
    text = ",".join(f"{name}:{fields[name][0].str}" for name in dtype.names or ())
    return f"v{LAYOUT_VERSION}|{dtype.itemsize}|{text}"
