"""RiskEngine: one test per rule, plus counting, positions and reconfiguration."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from pipeline.records import INTENT_DTYPE, REPORT_DTYPE, OrderStatus, RejectReason, Side, empty
from pipeline.strategy.config import RiskConfig
from pipeline.strategy.risk import RiskEngine

TickMaker = Callable[..., np.ndarray]
SECOND_NS = 1_000_000_000


def _intents(
    side: list[int], quantity: list[float], limit: list[float], symbol: int | list[int] = 1
) -> np.ndarray:
    intents = empty(INTENT_DTYPE, len(side))
    intents["side"] = side
    intents["quantity"] = quantity
    intents["limit_price"] = limit
    intents["symbol_id"] = symbol
    intents["tick_seq"] = np.arange(1, len(side) + 1)
    return intents


@pytest.fixture
def engine(make_ticks: TickMaker) -> RiskEngine:
    """Limits: 10 SOL, 5000 USDT per order, 50 orders/s, 100 bps, shorts allowed; SOL at 150."""
    risk = RiskEngine(RiskConfig(allow_short=True))
    risk.on_ticks(make_ticks(np.array([149.0, 150.0])))
    return risk


def test_accepts_a_sane_order(engine: RiskEngine) -> None:
    intents = _intents([Side.BUY], [1.0], [150.3])
    accepted, reasons = engine.check(intents, now_ns=0)
    assert accepted.tolist() == intents.tolist()
    assert reasons.tolist() == [RejectReason.NONE]
    assert engine.position(1) == 1.0


def test_no_price_for_the_symbol_is_out_of_band(engine: RiskEngine) -> None:
    _, reasons = engine.check(_intents([Side.BUY], [1.0], [150.0], symbol=2), now_ns=0)
    assert reasons.tolist() == [RejectReason.PRICE_BAND]


def test_price_band_uses_the_last_tick_of_each_symbol(
    engine: RiskEngine, make_ticks: TickMaker
) -> None:
    engine.on_ticks(make_ticks(np.array([20.0, 151.0, 10.0]), np.array([2, 1, 2])))
    intents = _intents([1, 1, -1, 1], [1.0] * 4, [152.5, 152.6, 10.1, 10.2], [1, 1, 2, 2])
    _, reasons = engine.check(intents, now_ns=0)
    ok, band = RejectReason.NONE, RejectReason.PRICE_BAND
    assert reasons.tolist() == [ok, band, ok, band]


def test_max_notional(engine: RiskEngine) -> None:
    _, reasons = engine.check(_intents([1, 1], [33.0, 34.0], [150.0, 150.0]), now_ns=0)
    assert reasons.tolist() == [RejectReason.MAX_POSITION, RejectReason.MAX_NOTIONAL]


def test_max_position_counts_accepted_intents_and_allows_reducing(engine: RiskEngine) -> None:
    buys = _intents([Side.BUY] * 11, [1.0] * 11, [150.0] * 11)
    _, reasons = engine.check(buys, now_ns=0)
    assert reasons.tolist() == [RejectReason.NONE] * 10 + [RejectReason.MAX_POSITION]
    assert engine.position(1) == 10.0
    _, reasons = engine.check(_intents([Side.SELL], [25.0], [150.0]), now_ns=0)
    assert reasons.tolist() == [RejectReason.MAX_POSITION]  # would end at -15
    _, reasons = engine.check(_intents([Side.SELL], [20.0], [150.0]), now_ns=0)
    assert reasons.tolist() == [RejectReason.NONE]  # ends at -10: within the limit
    assert engine.position(1) == -10.0


def test_lowering_the_limit_still_lets_the_position_shrink(engine: RiskEngine) -> None:
    engine.check(_intents([Side.BUY] * 8, [1.0] * 8, [150.0] * 8), now_ns=0)
    engine.reconfigure(RiskConfig(max_position=5.0))
    sides, quantities = [1, -1, -1, -1], [1.0, 1.0, 13.0, 2.0]
    _, reasons = engine.check(_intents(sides, quantities, [150.0] * 4), now_ns=0)
    max_position, ok = RejectReason.MAX_POSITION, RejectReason.NONE
    assert reasons.tolist() == [max_position, ok, max_position, ok]  # 7 -> -6 flips too far
    assert engine.position(1) == 5.0


def test_order_rate_token_bucket(make_ticks: TickMaker) -> None:
    engine = RiskEngine(RiskConfig(max_orders_per_s=5.0))
    engine.on_ticks(make_ticks(np.array([150.0])))
    round_trips = _intents([1, -1] * 4, [1.0] * 8, [150.0] * 8)
    _, reasons = engine.check(round_trips, now_ns=SECOND_NS)
    assert reasons.tolist() == [RejectReason.NONE] * 5 + [RejectReason.MAX_ORDER_RATE] * 3
    _, reasons = engine.check(round_trips[:2], now_ns=SECOND_NS + SECOND_NS // 5)
    assert reasons.tolist() == [RejectReason.NONE, RejectReason.MAX_ORDER_RATE]  # 1 token back
    _, reasons = engine.check(round_trips, now_ns=100 * SECOND_NS)
    assert np.count_nonzero(reasons == RejectReason.NONE) == 5  # refills only up to the burst


def test_rejected_orders_use_no_tokens(make_ticks: TickMaker) -> None:
    engine = RiskEngine(RiskConfig(max_orders_per_s=1.0))
    engine.on_ticks(make_ticks(np.array([150.0])))
    _, reasons = engine.check(_intents([1, 1], [1.0, 1.0], [999.0, 150.0]), now_ns=0)
    assert reasons.tolist() == [RejectReason.PRICE_BAND, RejectReason.NONE]


@pytest.mark.parametrize(
    ("side", "quantity", "limit"),
    [(1, 0.0, 150.0), (1, -1.0, 150.0), (1, np.nan, 150.0), (1, np.inf, 150.0),
     (0, 1.0, 150.0), (2, 1.0, 150.0), (1, 1.0, np.nan), (1, 1.0, -150.0)],
)  # fmt: skip
def test_invalid_orders(engine: RiskEngine, side: int, quantity: float, limit: float) -> None:
    accepted, reasons = engine.check(_intents([side], [quantity], [limit]), now_ns=0)
    assert accepted.size == 0
    assert reasons.tolist() == [RejectReason.INVALID_ORDER]
    assert engine.position(1) == 0.0


def test_reject_counts_by_reason(engine: RiskEngine) -> None:
    intents = _intents([1, 1, 1, 0], [1.0, 1.0, 40.0, 1.0], [150.0, 170.0, 150.0, 150.0])
    engine.check(intents, now_ns=0)
    engine.check(intents[1:2], now_ns=0)
    counts = engine.reject_counts()
    assert counts[RejectReason.PRICE_BAND] == 2
    assert counts[RejectReason.MAX_NOTIONAL] == 1
    assert counts[RejectReason.INVALID_ORDER] == 1
    assert counts[RejectReason.MAX_POSITION] == 0
    assert RejectReason.NONE not in counts


def test_reconfigure_keeps_state_and_caps_the_bucket(engine: RiskEngine) -> None:
    engine.check(_intents([1, 1], [1.0, 1.0], [150.0, 150.0]), now_ns=0)
    engine.reconfigure(RiskConfig(max_orders_per_s=2.0, price_band_bps=1.0))
    assert engine.position(1) == 2.0
    _, reasons = engine.check(_intents([1, 1, 1], [1.0] * 3, [150.0, 150.0, 150.3]), now_ns=0)
    rate, band = RejectReason.MAX_ORDER_RATE, RejectReason.PRICE_BAND
    assert reasons.tolist() == [RejectReason.NONE, RejectReason.NONE, band]
    _, reasons = engine.check(_intents([1], [1.0], [150.0]), now_ns=0)
    assert reasons.tolist() == [rate]


def test_empty_batches(engine: RiskEngine, make_ticks: TickMaker) -> None:
    engine.on_ticks(make_ticks(np.array([])))
    accepted, reasons = engine.check(empty(INTENT_DTYPE), now_ns=0)
    assert accepted.size == 0
    assert reasons.size == 0


def _reports(intents: np.ndarray, status: OrderStatus, filled: float = 0.0) -> np.ndarray:
    reports = empty(REPORT_DTYPE, len(intents))
    for name in ("client_order_id", "symbol_id", "side", "quantity", "limit_price"):
        reports[name] = intents[name]
    reports["status"] = status
    reports["filled_qty"] = filled
    return reports


def _send(engine: RiskEngine, intents: np.ndarray, first_id: int = 1) -> np.ndarray:
    accepted, _ = engine.check(intents, now_ns=0)
    accepted["client_order_id"] = np.arange(first_id, first_id + len(accepted))
    engine.opened(accepted)
    return accepted


def test_shorts_are_refused_unless_allowed(make_ticks: TickMaker) -> None:
    engine = RiskEngine(RiskConfig())
    engine.on_ticks(make_ticks(np.array([150.0])))
    _, reasons = engine.check(_intents([Side.SELL], [1.0], [150.0]), now_ns=0)
    assert reasons.tolist() == [RejectReason.SHORT_NOT_ALLOWED]
    _send(engine, _intents([Side.BUY], [2.0], [150.0]))
    _, reasons = engine.check(_intents([Side.SELL], [2.0], [150.0]), now_ns=0)
    assert reasons.tolist() == [RejectReason.NONE]  # back to flat is fine


def test_a_rejected_order_stops_counting_when_its_report_arrives(engine: RiskEngine) -> None:
    sent = _send(engine, _intents([Side.BUY] * 10, [1.0] * 10, [150.0] * 10))
    assert engine.position(1) == 10.0
    _, reasons = engine.check(_intents([Side.BUY], [1.0], [150.0]), now_ns=0)
    assert reasons.tolist() == [RejectReason.MAX_POSITION]
    engine.on_reports(_reports(sent[:4], OrderStatus.REJECTED))
    assert engine.position(1) == 6.0
    engine.on_reports(_reports(sent[4:], OrderStatus.FILLED, filled=1.0))
    assert engine.position(1) == 6.0  # now filled, no longer open: same exposure
    engine.on_reports(_reports(sent[4:], OrderStatus.FILLED, filled=1.0))
    assert engine.position(1) == 12.0  # a fill of an order not ours (e.g. an earlier run)


def test_intents_never_sent_release_their_exposure(engine: RiskEngine) -> None:
    accepted, _ = engine.check(_intents([Side.BUY] * 3, [1.0] * 3, [150.0] * 3), now_ns=0)
    engine.release(accepted[1:])
    assert engine.position(1) == 1.0


def test_a_restart_starts_from_the_ledger_position(engine: RiskEngine) -> None:
    engine.set_positions({1: 9.5})
    _, reasons = engine.check(_intents([Side.BUY], [1.0], [150.0]), now_ns=0)
    assert reasons.tolist() == [RejectReason.MAX_POSITION]
    assert engine.position(1) == 9.5


def test_an_order_works_from_acceptance_to_its_final_report(engine: RiskEngine) -> None:
    accepted, _ = engine.check(_intents([Side.BUY, Side.BUY], [1.0, 1.0], [150.3, 150.3]),
                               now_ns=0)
    accepted["client_order_id"] = [11, 12]
    engine.opened(accepted[:1])
    engine.release(accepted[1:])  # never sent: it stops working at once
    assert engine.working(1)
    assert not engine.working(2)
    new = empty(REPORT_DTYPE, 1)
    new["client_order_id"], new["symbol_id"], new["side"] = 11, 1, Side.BUY
    new["status"] = OrderStatus.NEW
    engine.on_reports(new)
    assert engine.working(1), "a NEW report is not the end of the order"
    filled = new.copy()
    filled["status"], filled["filled_qty"] = OrderStatus.FILLED, 0.998
    engine.on_reports(filled)
    assert not engine.working(1)
    assert engine.position(1) == pytest.approx(0.998)
