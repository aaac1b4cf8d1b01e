"""Pre-trade risk: the last check between a strategy's decisions and the executor.

Stateless checks (order validity, price band, notional) run vectorised over the batch.
Position and order-rate limits depend on the intents accepted before, so they run in a
short loop over the intents that passed the rest; intents are rare next to ticks. Venue
refusals hold a symbol's intents back in the same loop (see :mod:`.refusals`).
"""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from pipeline.records import REPORT_DTYPE, OrderStatus, RejectReason
from pipeline.strategy.config import RiskConfig
from pipeline.strategy.refusals import RefusalBackoff, refusal_reasons

_REASONS = (
    RejectReason.INVALID_ORDER,
    RejectReason.PRICE_BAND,
    RejectReason.MAX_NOTIONAL,
    RejectReason.MAX_POSITION,
    RejectReason.MAX_ORDER_RATE,
    RejectReason.SHORT_NOT_ALLOWED,
    RejectReason.REFUSAL_BACKOFF,
    RejectReason.SYMBOL_PAUSED,
)
# Plain ints: enum attribute lookups cost microseconds on this path.
_ACCEPTED: Final = int(RejectReason.NONE)
_INVALID_ORDER: Final = int(RejectReason.INVALID_ORDER)
_PRICE_BAND: Final = int(RejectReason.PRICE_BAND)
_MAX_NOTIONAL: Final = int(RejectReason.MAX_NOTIONAL)
_MAX_POSITION: Final = int(RejectReason.MAX_POSITION)
_MAX_ORDER_RATE: Final = int(RejectReason.MAX_ORDER_RATE)
_SHORT_NOT_ALLOWED: Final = int(RejectReason.SHORT_NOT_ALLOWED)
_REFUSAL_BACKOFF: Final = int(RejectReason.REFUSAL_BACKOFF)
_SYMBOL_PAUSED: Final = int(RejectReason.SYMBOL_PAUSED)
_FILLED: Final = int(OrderStatus.FILLED)
_REJECTED: Final = int(OrderStatus.REJECTED)
_NEW: Final = int(OrderStatus.NEW)
# Positions in a REPORT_DTYPE row as a tuple (``.item()``), for the one-report path.
_ORDER_ID, _SYMBOL, _SIDE, _FILLED_QTY, _STATUS, _REASON, _DECISION_NS = (
    REPORT_DTYPE.names.index(name) for name in (  # type: ignore[union-attr]
        "client_order_id", "symbol_id", "side", "filled_qty", "status", "reject_reason",
        "decision_ns"))
_REASON_SLOTS: Final = max(RejectReason) + 1
_SCALAR_MAX: Final = 8  # intents per check below which a plain loop beats numpy
_POSITION_TOLERANCE: Final = (
    1e-9  # relative: sums of float quantities may land an ulp past the limit
)


class RiskEngine:
    """Checks intents against :class:`RiskConfig` and tracks the exposure they create.

    Exposure per symbol = filled position (a baseline from the ledger plus every fill in
    the execution reports) + the signed quantity of orders sent and not yet final. An
    order rejected by the venue therefore stops counting as soon as its report arrives,
    so the position limit holds for what was really traded, not for what was intended.
    An order that moves the exposure towards zero (without crossing it) is always allowed
    by the position limit, so lowering the limit below the current position does not trap
    it; with ``allow_short`` off no order may take the exposure below zero.

    A venue refusal (a REJECTED report with a reason in ``risk.refusal_reasons``) is dated at
    the later of the refused order's ``decision_ns`` and the last ``now_ns`` checked, both
    on the intents' clock: live that is the strategy's monotonic clock, in a backtest the
    ticks' source time, and the reports a backtest shows the engine between two checks do
    not depend on its batching, so neither do the intents held back.
    """

    def __init__(self, config: RiskConfig) -> None:
        self._config = config
        self._last_price: dict[int, float] = {}
        self._filled: dict[int, float] = {}  # symbol -> signed filled position
        self._open_qty: dict[int, float] = {}  # symbol -> signed quantity of open orders
        self._open: dict[int, tuple[int, float]] = {}  # client order id -> (symbol, signed)
        self._open_count: dict[int, int] = {}  # symbol -> orders accepted, not yet final
        self._tokens = config.max_orders_per_s
        self._refilled_ns: int | None = None  # the latest now_ns given to check()
        self._counts = np.zeros(_REASON_SLOTS, dtype=np.int64)  # indexed by RejectReason
        self.refusals = RefusalBackoff(config)
        self._refusal_codes = frozenset(int(r) for r in refusal_reasons(config))

    def reconfigure(self, config: RiskConfig) -> None:
        """Apply new limits; positions, prices, the order-rate bucket and refusal streaks
        carry over."""
        self._config = config
        self._tokens = min(self._tokens, config.max_orders_per_s)
        self.refusals.reconfigure(config)
        self._refusal_codes = frozenset(int(r) for r in refusal_reasons(config))

    def on_ticks(self, ticks: np.ndarray) -> None:
        """Remember the last price of each symbol in ``ticks`` (the price band's reference)."""
        if ticks.size <= 2:  # a live read: plain floats beat numpy's per-call cost
            for symbol, price in zip(ticks["symbol_id"].tolist(), ticks["price"].tolist(),
                                     strict=True):
                self._last_price[symbol] = price
            return
        symbols = ticks["symbol_id"]
        if symbols[0] == symbols[-1] and (symbols == symbols[0]).all():
            self._last_price[int(symbols[0])] = float(ticks["price"][-1])
            return
        unique, last_from_end = np.unique(symbols[::-1], return_index=True)
        prices = ticks["price"][ticks.size - 1 - last_from_end]
        self._last_price.update(zip(unique.tolist(), prices.tolist(), strict=True))

    def position(self, symbol_id: int) -> float:
        """Signed exposure: filled position plus open orders, base units."""
        return self._filled.get(symbol_id, 0.0) + self._open_qty.get(symbol_id, 0.0)

    def working(self, symbol_id: int) -> bool:
        """True while an accepted order of ``symbol_id`` has no final report."""
        return self._open_count.get(symbol_id, 0) > 0

    def set_positions(self, filled: dict[int, float]) -> None:
        """Start from the ledger's filled positions (a restart; see the strategy process)."""
        self._filled = dict(filled)

    def opened(self, intents: np.ndarray) -> None:
        """Accepted intents that were sent, now carrying their client order ids."""
        columns = zip(intents["client_order_id"].tolist(), intents["symbol_id"].tolist(),
                      (intents["side"] * intents["quantity"]).tolist(), strict=True)
        for order_id, symbol, signed in columns:
            self._open[order_id] = (symbol, signed)

    def release(self, intents: np.ndarray) -> None:
        """Accepted intents that were never sent (back-pressure): their exposure goes."""
        for symbol, signed in zip(intents["symbol_id"].tolist(),
                                  (intents["side"] * intents["quantity"]).tolist(), strict=True):
            self._open_qty[symbol] = self._open_qty.get(symbol, 0.0) - signed
            self._open_count[symbol] -= 1

    def on_reports(self, reports: np.ndarray) -> None:
        """Apply execution reports: fills move the position, final reports close orders,
        venue refusals back the symbol off and fills end its refusal streak."""
        if len(reports) == 1:  # live reads and backtest fills: one tuple, no numpy calls
            row = reports[0].item()
            if row[_STATUS] != _NEW:
                self._final((row[_ORDER_ID], row[_SYMBOL], row[_SIDE] * row[_FILLED_QTY],
                             row[_STATUS], row[_REASON], row[_DECISION_NS]))
            return
        final = reports[reports["status"] != OrderStatus.NEW]
        columns = zip(final["client_order_id"].tolist(), final["symbol_id"].tolist(),
                      (final["side"] * final["filled_qty"]).tolist(), final["status"].tolist(),
                      final["reject_reason"].tolist(), final["decision_ns"].tolist(),
                      strict=True)
        for final_report in columns:
            self._final(final_report)

    def _final(self, report: tuple[int, int, float, int, int, int]) -> None:
        """One final report (order id, symbol, signed fill, status, reason, decision time):
        the order is no longer open, its fill moves the position."""
        order_id, symbol, filled, status, reason, decision_ns = report
        entry = self._open.pop(order_id, None)
        if entry is not None:  # ours: it no longer counts as open
            self._open_qty[symbol] = self._open_qty.get(symbol, 0.0) - entry[1]
            self._open_count[symbol] -= 1
        if filled:
            self._filled[symbol] = self._filled.get(symbol, 0.0) + filled
        if filled or status == _FILLED:
            self.refusals.on_fill(symbol)
        elif status == _REJECTED and reason in self._refusal_codes:
            self.refusals.on_refusal(symbol, RejectReason(reason),
                                     max(decision_ns, self._refilled_ns or 0))

    def reject_counts(self) -> dict[RejectReason, int]:
        """Intents rejected since start, by reason."""
        return {reason: int(self._counts[reason]) for reason in _REASONS}

    def check(self, intents: np.ndarray, now_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """(accepted intents, reason per input intent, ``RejectReason.NONE`` if accepted)."""
        if intents.size <= _SCALAR_MAX:
            return self._check_scalar(intents, now_ns)
        config = self._config
        side = intents["side"]
        quantity = intents["quantity"]
        limit = intents["limit_price"]
        reasons = np.zeros(intents.size, dtype=np.uint16)
        symbols = intents["symbol_id"].tolist()
        reference = np.array([self._last_price.get(s, math.nan) for s in symbols])
        with np.errstate(invalid="ignore"):  # NaN and inf are caught as invalid just below
            out_of_band = ~(np.abs(limit - reference) <= reference * config.price_band_bps / 1e4)
            reasons[quantity * limit > config.max_order_notional] = _MAX_NOTIONAL
        reasons[out_of_band] = _PRICE_BAND
        invalid = (
            ~(np.isfinite(quantity) & (quantity > 0.0))
            | ~(np.isfinite(limit) & (limit > 0.0))
            | ((side != 1) & (side != -1))
        )
        reasons[invalid] = _INVALID_ORDER
        self._refill(now_ns)
        signed = (side * quantity).tolist()
        for i in np.flatnonzero(reasons == _ACCEPTED).tolist():
            reasons[i] = self._take(symbols[i], signed[i], now_ns)
        self._counts += np.bincount(reasons, minlength=_REASON_SLOTS)
        return intents[reasons == _ACCEPTED], reasons

    def _check_scalar(self, intents: np.ndarray, now_ns: int) -> tuple[np.ndarray, np.ndarray]:
        """:meth:`check` one intent at a time for live-sized batches, where numpy's per-call
        overhead is most of the cost. Same checks, same precedence (invalid, then price
        band, then notional), same float operations: identical results."""
        band_bps, max_notional = self._config.price_band_bps, self._config.max_order_notional
        reasons = np.zeros(intents.size, dtype=np.uint16)
        self._refill(now_ns)
        accepted = 0
        for i, (_, _, _, _, quantity, limit, symbol, side, _, _) in enumerate(intents.tolist()):
            reference = self._last_price.get(symbol, math.nan)
            if not (math.isfinite(quantity) and quantity > 0.0 and math.isfinite(limit)
                    and limit > 0.0 and side in (1, -1)):
                reason = _INVALID_ORDER
            elif not abs(limit - reference) <= reference * band_bps / 1e4:
                reason = _PRICE_BAND
            elif quantity * limit > max_notional:
                reason = _MAX_NOTIONAL
            else:
                reason = self._take(symbol, side * quantity, now_ns)
            reasons[i] = reason
            self._counts[reason] += 1
            accepted += reason == _ACCEPTED
        if accepted == intents.size:
            return intents.copy(), reasons
        return intents[reasons == _ACCEPTED], reasons

    def _take(self, symbol_id: int, signed_quantity: float, now_ns: int) -> int:
        """Accept one intent against refusal hold-backs, the position limit and the
        order-rate bucket."""
        refusals = self.refusals
        if symbol_id in refusals.paused:
            return _SYMBOL_PAUSED
        if now_ns < refusals.held_until.get(symbol_id, now_ns):
            return _REFUSAL_BACKOFF
        held = self.position(symbol_id)
        after = held + signed_quantity
        limit = self._config.max_position * (1.0 + _POSITION_TOLERANCE)
        shrinks = held * after >= 0.0 and abs(after) < abs(held)  # towards zero, no flip
        if abs(after) > limit and not shrinks:
            return _MAX_POSITION
        if after < -limit * _POSITION_TOLERANCE and not self._config.allow_short \
                and after < held:
            return _SHORT_NOT_ALLOWED
        if self._tokens < 1.0:
            return _MAX_ORDER_RATE
        self._tokens -= 1.0
        self._open_qty[symbol_id] = self._open_qty.get(symbol_id, 0.0) + signed_quantity
        self._open_count[symbol_id] = self._open_count.get(symbol_id, 0) + 1
        return _ACCEPTED

    def _refill(self, now_ns: int) -> None:
        """Add the tokens earned since the last check, up to the burst; end the cool-downs
        passed by ``now_ns``."""
        if self.refusals.paused:
            self.refusals.expire(now_ns)
        previous_ns = now_ns if self._refilled_ns is None else self._refilled_ns
        if now_ns > previous_ns:
            earned = (now_ns - previous_ns) * self._config.max_orders_per_s / 1e9
            self._tokens = min(self._config.max_orders_per_s, self._tokens + earned)
        self._refilled_ns = max(now_ns, previous_ns)
