"""A paper venue: fills each order at the next tick for its symbol, with slippage and fees.

Filling at the *next* tick, not the one that triggered the decision, charges the strategy
for its own latency the way a real venue would; slippage moves the price against the order
and the fee is charged on the fill's notional. All work is vectorised over the batch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Final

import numpy as np

from pipeline.executor.config import ExecutorConfig
from pipeline.executor.venue import NO_REPORTS, Venue, reports_from_intents
from pipeline.records import (
    INTENT_DTYPE,
    REPORT_DTYPE,
    OrderStatus,
    OrderType,
    RejectReason,
    Side,
)

VENUE_REF_PREFIX: Final = b"paper-"
_BPS: Final = 1e-4
# Plain ints: comparing an array with an IntEnum member costs microseconds per call.
_BUY: Final = int(Side.BUY)
_SELL: Final = int(Side.SELL)
_LIMIT: Final = int(OrderType.LIMIT)
_MARKET: Final = int(OrderType.MARKET)
_FILLED: Final = int(OrderStatus.FILLED)
_REJECTED: Final = int(OrderStatus.REJECTED)
_ACCEPT: Final = int(RejectReason.NONE)
_INVALID: Final = int(RejectReason.INVALID_ORDER)
_BACKPRESSURE: Final = int(RejectReason.BACKPRESSURE)
_NOT_MARKETABLE: Final = int(RejectReason.LIMIT_NOT_MARKETABLE)
_SCALAR_MAX: Final = 16  # ticks in a read below which plain Python beats numpy's overhead


class PaperVenue(Venue):
    """A :class:`~pipeline.executor.venue.Venue` that simulates fills against ticks.

    Submitted orders are checked (positive finite quantity, known side and type, a positive
    limit for LIMIT orders, no client_order_id already pending) and rejected with
    INVALID_ORDER otherwise; beyond ``max_pending`` they are rejected with BACKPRESSURE.
    On each tick batch, the first tick of each symbol completes every pending order for
    that symbol: a buy pays ``price * (1 + slippage)``, a sell receives
    ``price * (1 - slippage)``; a LIMIT order whose slipped price is beyond its limit is
    rejected with LIMIT_NOT_MARKETABLE, a MARKET order always fills.
    """

    completes_on_ticks = True  # every order fills or is refused at its next tick

    def __init__(
        self, config: ExecutorConfig, clock_unix_ns: Callable[[], int] = time.time_ns
    ) -> None:
        self._slippage = config.slippage_bps * _BPS
        self._fee_rate = config.fee_bps * _BPS
        self._clock_unix_ns = clock_unix_ns
        # Pending orders live in the first ``_count`` slots of fixed buffers: appending to
        # and compacting a preallocated array is several times cheaper than concatenating.
        self._book = np.zeros(config.max_pending, dtype=INTENT_DTYPE)
        self._book_send_ns = np.zeros(config.max_pending, dtype=np.int64)
        self._count = 0

    @property
    def pending(self) -> int:
        """Orders waiting for their next tick."""
        return self._count

    def submit(self, intents: np.ndarray, send_ns: int) -> np.ndarray:
        """Queue valid orders for the next tick; return reject reports for the rest."""
        if len(intents) == 0:
            return np.empty(0, dtype=REPORT_DTYPE)
        if len(intents) == 1 and self._count < len(self._book) and self._valid_one(intents[0]):
            self._book[self._count] = intents[0]
            self._book_send_ns[self._count] = send_ns
            self._count += 1
            return np.empty(0, dtype=REPORT_DTYPE)
        reasons = np.where(self._valid(intents), _ACCEPT, _INVALID)
        ok = reasons == _ACCEPT
        room = len(self._book) - self._count
        reasons[ok & (np.cumsum(ok) > room)] = _BACKPRESSURE
        accepted = reasons == _ACCEPT
        n_accepted = int(np.count_nonzero(accepted))
        if n_accepted:
            end = self._count + n_accepted
            self._book[self._count : end] = intents[accepted]
            self._book_send_ns[self._count : end] = send_ns
            self._count = end
        if n_accepted == len(intents):
            return np.empty(0, dtype=REPORT_DTYPE)
        reports = reports_from_intents(intents[~accepted], send_ns, OrderStatus.REJECTED)
        reports["reject_reason"] = reasons[~accepted]
        return self._stamp(reports)

    def on_ticks(self, ticks: np.ndarray) -> np.ndarray:
        """Complete every pending order at the first tick of its symbol after its decision.

        "After" is by tick sequence (a tick later than the one the strategy decided on), so
        the fill price does not depend on when the executor happens to read the ticks.
        """
        if self._count == 0 or len(ticks) == 0:
            return np.empty(0, dtype=REPORT_DTYPE)
        if self._count == 1 and len(ticks) <= _SCALAR_MAX:
            return self._complete_one(ticks)
        pending = self._book[: self._count]
        # For each pending order: the first tick with its symbol and a later sequence.
        later = (ticks["symbol_id"][None, :] == pending["symbol_id"][:, None]) & (
            ticks["seq"][None, :] > pending["tick_seq"][:, None])
        done = later.any(axis=1)
        if not done.any():
            return np.empty(0, dtype=REPORT_DTYPE)
        orders = pending[done]
        market_price = ticks["price"][later[done].argmax(axis=1)]
        side = orders["side"].astype(np.float64)
        fill_price = market_price * (1.0 + side * self._slippage)
        fills = (orders["order_type"] == _MARKET) | (
            side * (fill_price - orders["limit_price"]) <= 0.0
        )
        reports = reports_from_intents(
            orders, self._book_send_ns[: self._count][done], OrderStatus.FILLED
        )
        reports["status"] = np.where(fills, _FILLED, _REJECTED)
        reports["reject_reason"] = np.where(fills, _ACCEPT, _NOT_MARKETABLE)
        reports["filled_qty"] = np.where(fills, orders["quantity"], 0.0)
        reports["avg_price"] = np.where(fills, fill_price, 0.0)
        reports["fee"] = reports["filled_qty"] * reports["avg_price"] * self._fee_rate
        self._keep(~done)
        return self._stamp(reports)

    def _complete_one(self, ticks: np.ndarray) -> np.ndarray:
        """:meth:`on_ticks` for one pending order and a few ticks (live reads, backtest
        decisions), in plain Python: the same float operations, identical reports, without
        two dozen numpy calls on arrays of one."""
        _, tick_seq, _, _, quantity, limit, symbol, side, order_type, _ = self._book[0].item()
        columns = zip(ticks["symbol_id"].tolist(), ticks["seq"].tolist(),
                      ticks["price"].tolist(), strict=True)
        market_price = next((price for tick_symbol, seq, price in columns
                             if tick_symbol == symbol and seq > tick_seq), None)
        if market_price is None:
            return np.empty(0, dtype=REPORT_DTYPE)
        fill_price = market_price * (1.0 + float(side) * self._slippage)
        fills = order_type == _MARKET or side * (fill_price - limit) <= 0.0
        reports = reports_from_intents(self._book[:1], int(self._book_send_ns[0]),
                                       OrderStatus.FILLED if fills else OrderStatus.REJECTED,
                                       RejectReason.NONE if fills
                                       else RejectReason.LIMIT_NOT_MARKETABLE)
        if fills:
            report = reports[0]
            report["filled_qty"] = quantity
            report["avg_price"] = fill_price
            report["fee"] = quantity * fill_price * self._fee_rate
        self._count = 0
        return self._stamp(reports)

    def cancel_all(self, reason: RejectReason) -> np.ndarray:
        """Cancel every pending order (e.g. on shutdown) and report each one."""
        reports = reports_from_intents(
            self._book[: self._count],
            self._book_send_ns[: self._count],
            OrderStatus.CANCELLED,
            reason,
        )
        self._count = 0
        return self._stamp(reports)

    def poll(self, reports_flushed: bool) -> np.ndarray:
        """Nothing arrives on its own: every paper order ends at a tick or a cancel."""
        return NO_REPORTS

    def reconciles(self, client_order_id: int) -> bool:
        """Never: paper orders live in this process's memory and end with it, so an intent
        read again after a restart is a new order."""
        return False

    def close(self) -> None:
        """Nothing to release: the paper venue is plain memory in the executor's thread, with
        no thread, socket or file of its own (orders still pending were cancelled by the
        executor's drain, which reported each one)."""

    def _keep(self, keep: np.ndarray) -> None:
        """Compact the book to the pending orders selected by ``keep``, in order."""
        n_keep = int(np.count_nonzero(keep))
        self._book[:n_keep] = self._book[: self._count][keep]
        self._book_send_ns[:n_keep] = self._book_send_ns[: self._count][keep]
        self._count = n_keep

    def _valid(self, intents: np.ndarray) -> np.ndarray:
        """Mask of intents the venue can accept (see the class docstring)."""
        quantity = intents["quantity"]
        limit = intents["limit_price"]
        is_limit = intents["order_type"] == _LIMIT
        side = intents["side"]
        valid: np.ndarray = (
            np.isfinite(quantity)
            & (quantity > 0.0)
            & ((side == _BUY) | (side == _SELL))
            & (is_limit | (intents["order_type"] == _MARKET))
            & (~is_limit | (np.isfinite(limit) & (limit > 0.0)))
            & ~self._duplicate_ids(intents["client_order_id"])
        )
        return valid

    def _valid_one(self, intent: np.void) -> bool:
        """:meth:`_valid` for a single intent, in plain Python."""
        order_id, _, _, _, quantity, limit, _, side, order_type, _ = intent.item()
        return (math.isfinite(quantity) and quantity > 0.0 and side in (_BUY, _SELL)
                and (order_type == _MARKET
                     or (order_type == _LIMIT and math.isfinite(limit) and limit > 0.0))
                and order_id not in self._book["client_order_id"][: self._count].tolist())

    def _duplicate_ids(self, ids: np.ndarray) -> np.ndarray:
        """Mask of ids already pending or seen earlier in the same batch.

        (np.isin is avoided: its fixed cost is tens of microseconds per call.)
        """
        duplicate = np.zeros(len(ids), dtype=bool)
        if len(ids) > 1:
            duplicate[:] = True
            duplicate[np.unique(ids, return_index=True)[1]] = False
        if self._count:
            pending = np.sort(self._book["client_order_id"][: self._count])
            slot = np.searchsorted(pending, ids).clip(max=len(pending) - 1)
            duplicate |= pending[slot] == ids
        return duplicate

    def _stamp(self, reports: np.ndarray) -> np.ndarray:
        """Set the venue's timestamp and reference on a batch of reports."""
        if len(reports) == 1:
            reports["venue_ts_ns"] = self._clock_unix_ns()
            reports["venue_ref"] = VENUE_REF_PREFIX + b"%d" % reports["client_order_id"][0]
        elif len(reports):
            reports["venue_ts_ns"] = self._clock_unix_ns()
            ids = reports["client_order_id"].astype("S20")
            reports["venue_ref"] = np.char.add(VENUE_REF_PREFIX, ids)
        return reports
