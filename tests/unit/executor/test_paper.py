"""PaperVenue: fills at the next tick with slippage and fee, rejects, cancels, one report each."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.executor.config import ExecutorConfig
from pipeline.executor.paper import PaperVenue
from pipeline.executor.venue import Venue
from pipeline.records import (
    INTENT_DTYPE,
    TICK_DTYPE,
    OrderStatus,
    OrderType,
    RejectReason,
    Side,
)

UNIX_NS = 1_750_000_000_000_000_000
SEND_NS = 123_456


def _venue(slippage_bps: float = 10.0, max_pending: int = 1024) -> PaperVenue:
    config = ExecutorConfig(slippage_bps=slippage_bps, fee_bps=5.0, max_pending=max_pending)
    return PaperVenue(config, clock_unix_ns=lambda: UNIX_NS)


def _intents(
    ids: Sequence[int],
    side: Side = Side.BUY,
    *,
    limit: float = 0.0,
    order_type: OrderType = OrderType.MARKET,
    symbol_id: int = 1,
    quantity: float = 2.0,
) -> np.ndarray:
    intents = np.zeros(len(ids), dtype=INTENT_DTYPE)
    intents["client_order_id"] = ids
    intents["tick_seq"] = 1000 + np.arange(len(ids))
    intents["tick_ingest_ns"] = 5
    intents["decision_ns"] = 6
    intents["quantity"] = quantity
    intents["limit_price"] = limit
    intents["symbol_id"] = symbol_id
    intents["side"] = side
    intents["order_type"] = order_type
    return intents


def _ticks(prices: Sequence[float], symbols: Sequence[int] | None = None) -> np.ndarray:
    ticks = np.zeros(len(prices), dtype=TICK_DTYPE)
    ticks["seq"] = 2000 + np.arange(len(prices))  # later than every intent's decision tick
    ticks["price"] = prices
    ticks["symbol_id"] = symbols if symbols is not None else 1
    return ticks


def test_is_a_venue() -> None:
    venue = _venue()
    assert isinstance(venue, Venue)
    assert venue.pending == 0
    assert len(venue.poll(reports_flushed=True)) == 0
    assert not venue.reconciles(1)


def test_market_buy_and_sell_fill_at_next_tick_with_slippage_and_fee() -> None:
    venue = _venue()
    assert len(venue.submit(_intents([1], Side.BUY), SEND_NS)) == 0
    assert len(venue.submit(_intents([2], Side.SELL), SEND_NS + 1)) == 0
    assert venue.pending == 2
    reports = venue.on_ticks(_ticks([100.0, 200.0]))  # only the first tick counts
    assert venue.pending == 0
    assert list(reports["client_order_id"]) == [1, 2]
    assert set(reports["status"]) == {OrderStatus.FILLED}
    np.testing.assert_allclose(reports["avg_price"], [100.1, 99.9])
    np.testing.assert_array_equal(reports["filled_qty"], [2.0, 2.0])
    np.testing.assert_allclose(reports["fee"], [100.1 * 2 * 5e-4, 99.9 * 2 * 5e-4])
    assert list(reports["send_ns"]) == [SEND_NS, SEND_NS + 1]
    assert list(reports["tick_seq"]) == [1000, 1000]
    assert set(reports["venue_ts_ns"]) == {UNIX_NS}
    assert list(reports["venue_ref"]) == [b"paper-1", b"paper-2"]
    assert set(reports["reject_reason"]) == {RejectReason.NONE}


def test_no_fill_without_a_tick_for_the_symbol() -> None:
    venue = _venue()
    venue.submit(_intents([1], symbol_id=2), SEND_NS)
    assert len(venue.on_ticks(_ticks([100.0]))) == 0
    assert len(venue.on_ticks(_ticks([]))) == 0
    assert venue.pending == 1
    reports = venue.on_ticks(_ticks([100.0, 50.0, 60.0], symbols=[1, 2, 2]))
    assert list(reports["avg_price"]) == pytest.approx([50.0 * 1.001])


def test_each_symbol_fills_at_its_own_first_tick() -> None:
    venue = _venue(slippage_bps=0.0)
    venue.submit(_intents([1, 2], symbol_id=1), SEND_NS)
    venue.submit(_intents([3], symbol_id=7), SEND_NS)
    reports = venue.on_ticks(_ticks([70.0, 10.0, 11.0, 71.0], symbols=[7, 1, 1, 7]))
    by_id = dict(zip(reports["client_order_id"].tolist(), reports["avg_price"].tolist(),
                     strict=True))
    assert by_id == {1: 10.0, 2: 10.0, 3: 70.0}


def test_limit_orders_fill_only_when_marketable_after_slippage() -> None:
    venue = _venue()
    venue.submit(_intents([1], Side.BUY, limit=100.1, order_type=OrderType.LIMIT), SEND_NS)
    venue.submit(_intents([2], Side.BUY, limit=100.09, order_type=OrderType.LIMIT), SEND_NS)
    venue.submit(_intents([3], Side.SELL, limit=99.9, order_type=OrderType.LIMIT), SEND_NS)
    venue.submit(_intents([4], Side.SELL, limit=99.91, order_type=OrderType.LIMIT), SEND_NS)
    venue.submit(_intents([5], Side.SELL, limit=1e9, order_type=OrderType.MARKET), SEND_NS)
    reports = venue.on_ticks(_ticks([100.0]))
    status = dict(zip(reports["client_order_id"].tolist(), reports["status"].tolist(),
                      strict=True))
    assert status == {1: OrderStatus.FILLED, 2: OrderStatus.REJECTED, 3: OrderStatus.FILLED,
                      4: OrderStatus.REJECTED, 5: OrderStatus.FILLED}
    rejected = reports[reports["status"] == OrderStatus.REJECTED]
    assert set(rejected["reject_reason"]) == {RejectReason.LIMIT_NOT_MARKETABLE}
    assert not rejected["filled_qty"].any()
    assert not rejected["fee"].any()
    assert venue.pending == 0


def test_invalid_orders_are_rejected_at_submit() -> None:
    venue = _venue()
    intents = _intents([1, 2, 3, 4, 5, 6, 6, 7])
    intents["quantity"][0] = 0.0
    intents["quantity"][1] = np.nan
    intents["side"][2] = 0
    intents["order_type"][3] = 9
    intents["order_type"][4] = OrderType.LIMIT  # with limit_price 0
    reports = venue.submit(intents, SEND_NS)
    assert list(reports["client_order_id"]) == [1, 2, 3, 4, 5, 6]  # the second 6 is a duplicate
    assert set(reports["status"]) == {OrderStatus.REJECTED}
    assert set(reports["reject_reason"]) == {RejectReason.INVALID_ORDER}
    assert set(reports["venue_ts_ns"]) == {UNIX_NS}
    assert venue.pending == 2
    again = venue.submit(_intents([7]), SEND_NS)  # already pending
    assert list(again["reject_reason"]) == [RejectReason.INVALID_ORDER]


def test_orders_beyond_max_pending_are_rejected_as_backpressure() -> None:
    venue = _venue(max_pending=3)
    venue.submit(_intents([1]), SEND_NS)
    reports = venue.submit(_intents([2, 3, 4, 5]), SEND_NS)
    assert list(reports["client_order_id"]) == [4, 5]
    assert set(reports["reject_reason"]) == {RejectReason.BACKPRESSURE}
    assert venue.pending == 3


def test_cancel_all_reports_every_pending_order() -> None:
    venue = _venue()
    venue.submit(_intents([1, 2]), SEND_NS)
    venue.submit(_intents([3], symbol_id=4), SEND_NS + 5)
    reports = venue.cancel_all(RejectReason.SHUTDOWN)
    assert list(reports["client_order_id"]) == [1, 2, 3]
    assert list(reports["send_ns"]) == [SEND_NS, SEND_NS, SEND_NS + 5]
    assert set(reports["status"]) == {OrderStatus.CANCELLED}
    assert set(reports["reject_reason"]) == {RejectReason.SHUTDOWN}
    assert venue.pending == 0
    assert len(venue.cancel_all(RejectReason.SHUTDOWN)) == 0
    assert len(venue.on_ticks(_ticks([1.0]))) == 0


@settings(max_examples=50, deadline=None)
@given(
    batches=st.lists(
        st.tuples(
            st.lists(st.integers(min_value=1, max_value=3), max_size=8),  # symbols of intents
            st.lists(st.integers(min_value=1, max_value=3), max_size=4),  # symbols of ticks
        ),
        max_size=8,
    ),
    max_pending=st.integers(min_value=1, max_value=10),
)
def test_every_intent_gets_exactly_one_report(
    batches: list[tuple[list[int], list[int]]], max_pending: int
) -> None:
    venue = _venue(max_pending=max_pending)
    next_id = 1
    submitted: list[int] = []
    reported: list[int] = []
    for intent_symbols, tick_symbols in batches:
        intents = np.concatenate(
            [_intents([next_id + i], symbol_id=s) for i, s in enumerate(intent_symbols)]
            or [_intents([])]
        )
        next_id += len(intent_symbols)
        submitted.extend(intents["client_order_id"].tolist())
        reported.extend(venue.submit(intents, SEND_NS)["client_order_id"].tolist())
        ticks = _ticks([100.0] * len(tick_symbols), tick_symbols)
        reported.extend(venue.on_ticks(ticks)["client_order_id"].tolist())
        assert venue.pending <= max_pending
    reported.extend(venue.cancel_all(RejectReason.SHUTDOWN)["client_order_id"].tolist())
    assert sorted(reported) == sorted(submitted)


def test_ticks_up_to_the_decision_tick_do_not_fill() -> None:
    venue = _venue()
    venue.submit(_intents([1], Side.BUY), SEND_NS)  # decided on tick 1000
    stale = _ticks([150.0, 151.0])
    stale["seq"] = [999, 1000]
    assert len(venue.on_ticks(stale)) == 0
    assert venue.pending == 1
    later = _ticks([150.0, 152.0])
    later["seq"] = [1000, 1001]
    reports = venue.on_ticks(later)
    assert reports["client_order_id"].tolist() == [1]
    assert reports["avg_price"][0] == pytest.approx(152.0 * (1 + 10.0 / 1e4))


@settings(max_examples=200, deadline=None)
@given(side=st.sampled_from([Side.BUY, Side.SELL]),
       order_type=st.sampled_from([OrderType.MARKET, OrderType.LIMIT]),
       quantity=st.floats(1e-6, 1e6), limit=st.floats(1.0, 300.0),
       price=st.floats(1.0, 300.0), slippage_bps=st.floats(0.0, 100.0),
       foreign_first=st.integers(0, 3))
def test_one_order_alone_completes_exactly_as_in_a_crowd(  # noqa: PLR0917
        side: Side, order_type: OrderType, quantity: float, limit: float, price: float,
        slippage_bps: float, foreign_first: int) -> None:
    """A single pending order on a short read takes the plain-Python path; the same order
    next to another takes the vectorised one: its report must not differ by a bit."""
    prices = [7.0] * foreign_first + [price]
    symbols = [2] * foreign_first + [1]
    alone, crowd = _venue(slippage_bps), _venue(slippage_bps)
    order = _intents([1], side, limit=limit, order_type=order_type, quantity=quantity)
    other = _intents([2], Side.BUY, symbol_id=3)
    assert len(alone.submit(order, 9)) == 0
    assert len(crowd.submit(np.concatenate((order, other)), 9)) == 0
    single = alone.on_ticks(_ticks(prices, symbols))
    vectorised = crowd.on_ticks(_ticks(prices, symbols))
    assert single.tobytes() == vectorised.tobytes()
    assert alone.pending == 0
    assert crowd.pending == 1  # symbol 3 had no tick
