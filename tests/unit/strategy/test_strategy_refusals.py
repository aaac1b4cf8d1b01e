"""Venue refusals back off: the schedule, resets, pauses and resumes, on the intents' clock."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.configtools import build
from pipeline.errors import ConfigError
from pipeline.records import (
    INTENT_DTYPE,
    REPORT_DTYPE,
    TICK_DTYPE,
    OrderStatus,
    RejectReason,
    empty,
)
from pipeline.strategy.config import RiskConfig
from pipeline.strategy.refusals import PAUSED_TOPIC, RESUMED_TOPIC, refusal_reasons
from pipeline.strategy.risk import RiskEngine

S = 1_000_000_000  # one second in ns
VENUE_REFUSALS = refusal_reasons(RiskConfig())  # the defaults
OK, BACKOFF, PAUSED = RejectReason.NONE, RejectReason.REFUSAL_BACKOFF, RejectReason.SYMBOL_PAUSED
NOT_THE_VENUES = (RejectReason.TRADING_DISABLED, RejectReason.LEDGER_STALLED,
                  RejectReason.SHUTDOWN)


def _engine(**risk: Any) -> RiskEngine:
    """SOL (1) and a second symbol (2) at 150; rate and position limits out of the way."""
    settings_ = {"max_orders_per_s": 1e6, "max_position": 1e6, "allow_short": True,
                 "refusal_backoff_base_s": 1.0, "refusal_backoff_max_s": 8.0,
                 "refusal_pause_after": 0, "refusal_pause_cooldown_s": 60.0, **risk}
    engine = RiskEngine(RiskConfig(**settings_))
    ticks = empty(TICK_DTYPE, 2)
    ticks["symbol_id"] = [1, 2]
    ticks["price"] = 150.0
    engine.on_ticks(ticks)
    return engine


class Desk:
    """Sends intents through a risk engine like the strategy process, and answers them
    like a venue: every accepted intent gets an order id and its decision time."""

    def __init__(self, engine: RiskEngine) -> None:
        self.engine = engine
        self.sent: list[np.ndarray] = []
        self._next_id = 1

    def send(self, now_ns: int, symbols: list[int] | int = 1) -> list[RejectReason]:
        symbols = [symbols] if isinstance(symbols, int) else symbols
        intents = empty(INTENT_DTYPE, len(symbols))
        intents["symbol_id"] = symbols
        intents["side"] = 1
        intents["quantity"] = 1.0
        intents["limit_price"] = 150.0
        accepted, reasons = self.engine.check(intents, now_ns)
        self.open(accepted, now_ns)
        return [RejectReason(r) for r in reasons.tolist()]

    def open(self, accepted: np.ndarray, now_ns: int) -> None:
        accepted["client_order_id"] = np.arange(self._next_id, self._next_id + len(accepted))
        accepted["decision_ns"] = now_ns
        self._next_id += len(accepted)
        self.engine.opened(accepted)
        self.sent.extend(accepted[i:i + 1] for i in range(len(accepted)))

    def answer(self, reason: RejectReason = RejectReason.VENUE_ERROR, n: int = 1) -> None:
        """The venue ends the ``n`` oldest open orders: refused with ``reason``, or filled
        for ``RejectReason.NONE``."""
        orders, self.sent = self.sent[:n], self.sent[n:]
        self.engine.on_reports(np.concatenate([_report(o, reason) for o in orders]))


def _report(intent: np.ndarray, reason: RejectReason) -> np.ndarray:
    report = empty(REPORT_DTYPE, 1)
    for name in ("client_order_id", "tick_seq", "decision_ns", "quantity", "limit_price",
                 "symbol_id", "side"):
        report[name] = intent[name]
    if reason is RejectReason.NONE:
        report["status"] = OrderStatus.FILLED
        report["filled_qty"] = intent["quantity"]
        report["avg_price"] = intent["limit_price"]
    else:
        cancelled = reason is RejectReason.SHUTDOWN
        report["status"] = OrderStatus.CANCELLED if cancelled else OrderStatus.REJECTED
        report["reject_reason"] = reason
    return report


def test_each_refusal_in_a_row_doubles_the_hold_up_to_the_cap() -> None:
    desk = Desk(_engine())
    now = 100 * S
    for delay_s in (1, 2, 4, 8, 8, 8):
        assert desk.send(now) == [OK]
        desk.answer()
        assert desk.send(now + delay_s * S - 1) == [BACKOFF]  # measured from the decision
        now += delay_s * S
    assert desk.send(now) == [OK]
    assert desk.engine.reject_counts()[BACKOFF] == 6
    assert desk.engine.refusals.refusal_counts()[RejectReason.VENUE_ERROR] == 6


def test_the_hold_is_per_symbol() -> None:
    desk = Desk(_engine())
    desk.send(0, [1, 2])
    desk.answer()  # refuses symbol 1's order only
    assert desk.send(S // 2, [1, 2, 1]) == [BACKOFF, OK, BACKOFF]


def test_held_back_intents_are_not_booked() -> None:
    desk = Desk(_engine())
    desk.send(0)
    desk.answer()
    assert desk.send(S // 2) == [BACKOFF]
    assert desk.engine.position(1) == 0.0
    assert not desk.engine.working(1)


def test_a_fill_resets_the_streak() -> None:
    desk = Desk(_engine())
    for at in (0, 1, 3):  # three refusals: the next hold would be 4 s
        desk.send(at * S)
        desk.answer()
    desk.send(7 * S)  # in flight while the third refusal's hold passes
    desk.answer(RejectReason.NONE)
    assert desk.send(7 * S) == [OK]  # the hold ended with the fill
    desk.answer()
    assert desk.send(8 * S - 1) == [BACKOFF]
    assert desk.send(8 * S) == [OK]  # base again: 1 s, not 8


@pytest.mark.parametrize("reason", NOT_THE_VENUES)
def test_rejects_that_are_not_the_venues_do_not_back_off(reason: RejectReason) -> None:
    desk = Desk(_engine(refusal_pause_after=1))
    for at in range(5):
        assert desk.send(at) == [OK]
        desk.answer(reason)
    assert desk.engine.refusals.refusal_counts() == dict.fromkeys(
        sorted(VENUE_REFUSALS), 0)
    assert desk.engine.refusals.take_events() == ()


@pytest.mark.parametrize("reason", sorted(VENUE_REFUSALS))
def test_every_venue_refusal_backs_off(reason: RejectReason) -> None:
    desk = Desk(_engine())
    desk.send(0)
    desk.answer(reason)
    assert desk.send(1) == [BACKOFF]
    assert desk.engine.refusals.refusal_counts()[reason] == 1


def test_n_refusals_in_a_row_pause_the_symbol_with_an_event() -> None:
    desk = Desk(_engine(refusal_pause_after=3, refusal_backoff_base_s=0.0))
    for _ in range(2):
        desk.send(0)
        desk.answer(RejectReason.NO_MARKET_PRICE)
    assert desk.engine.refusals.take_events() == ()
    desk.send(0)
    desk.answer(RejectReason.VENUE_ERROR)
    (event,) = desk.engine.refusals.take_events()
    assert (event.topic, event.symbol_id, event.streak) == (PAUSED_TOPIC, 1, 3)
    assert event.body() == {"symbol": 1, "streak": 3, "reason": "venue_error",
                            "by": "refusals"}
    assert desk.send(10 * S, [1, 2]) == [PAUSED, OK]  # the cool-down (60 s) runs on
    assert desk.engine.refusals.paused_symbols(10 * S) == [
        {"symbol": 1, "streak": 3, "reason": "venue_error", "resumes_in_s": 50.0}]


def test_the_cool_down_resumes_and_the_next_refusal_pauses_again() -> None:
    desk = Desk(_engine(refusal_pause_after=2, refusal_pause_cooldown_s=60.0,
                        refusal_backoff_max_s=1.0))
    desk.send(0)
    desk.answer()
    desk.send(S)
    desk.answer()  # paused at 1 s, resumes at 61 s
    desk.engine.refusals.take_events()
    assert desk.send(61 * S - 1) == [PAUSED]
    assert desk.engine.refusals.take_events() == ()
    assert desk.send(61 * S) == [OK]
    (resumed,) = desk.engine.refusals.take_events()
    assert (resumed.topic, resumed.by, resumed.streak) == (RESUMED_TOPIC, "cooldown", 2)
    desk.answer()  # half-open: one more refusal pauses it again at once
    (paused,) = desk.engine.refusals.take_events()
    assert (paused.topic, paused.streak) == (PAUSED_TOPIC, 3)
    assert desk.send(62 * S) == [PAUSED]


def test_a_cool_down_of_zero_waits_for_the_operator() -> None:
    desk = Desk(_engine(refusal_pause_after=1, refusal_pause_cooldown_s=0.0))
    desk.send(0)
    desk.answer()
    assert desk.send(10**6 * S) == [PAUSED]
    assert desk.engine.refusals.paused_symbols(0)[0]["resumes_in_s"] is None


def test_the_operator_resumes_one_symbol_or_all_and_the_streak_starts_again() -> None:
    desk = Desk(_engine(refusal_pause_after=2))
    desk.send(0, [1, 2, 1, 2])
    desk.answer(n=4)
    assert sorted(desk.engine.refusals.paused) == [1, 2]
    desk.engine.refusals.take_events()
    assert desk.engine.refusals.resume(1) == [1]
    assert desk.engine.refusals.resume(1) == []  # not paused any more: nothing to do
    (event,) = desk.engine.refusals.take_events()
    assert (event.topic, event.symbol_id, event.by) == (RESUMED_TOPIC, 1, "operator")
    assert desk.send(1, [1, 2]) == [OK, PAUSED]  # no hold left either
    desk.answer()
    assert 1 not in desk.engine.refusals.paused  # one refusal, not three, in a row
    assert desk.engine.refusals.resume() == [2]


def test_a_fill_keeps_a_pause() -> None:
    desk = Desk(_engine(refusal_pause_after=1))
    desk.send(0, [1, 1])
    desk.answer()
    desk.answer(RejectReason.NONE)  # the second order was already at the venue
    assert desk.send(1) == [PAUSED]


def test_back_off_off_still_pauses() -> None:
    desk = Desk(_engine(refusal_backoff_base_s=0.0, refusal_backoff_max_s=0.0,
                        refusal_pause_after=2))
    desk.send(0)
    desk.answer()
    assert desk.send(0) == [OK]
    desk.answer()
    assert desk.send(0) == [PAUSED]


def test_a_refusal_of_an_order_not_ours_holds_from_the_last_check() -> None:
    """After a restart the reports ring may refuse the last run's orders: dated at the
    latest intent time seen, never at a decision time from before it."""
    engine = _engine()
    desk = Desk(engine)
    desk.send(50 * S, 2)
    stranger = empty(INTENT_DTYPE, 1)
    stranger["client_order_id"], stranger["symbol_id"] = 10**9, 1
    stranger["decision_ns"] = S  # long before
    engine.on_reports(_report(stranger, RejectReason.VENUE_ERROR))
    assert desk.send(51 * S - 1) == [BACKOFF]
    assert desk.send(51 * S) == [OK]


def test_reconfigure_keeps_the_streak() -> None:
    desk = Desk(_engine())
    desk.send(0)
    desk.answer()
    desk.engine.reconfigure(RiskConfig(refusal_backoff_base_s=10.0, refusal_backoff_max_s=100.0,
                                       max_orders_per_s=1e6))
    assert desk.send(S) == [OK]
    desk.answer()
    assert desk.send(S + 20 * S - 1) == [BACKOFF]  # second in a row: 10 s x 2
    assert desk.send(S + 20 * S) == [OK]


@pytest.mark.parametrize(("table", "key"), [
    ({"refusal_backoff_base_s": -1.0}, "risk.refusal_backoff_base_s"),
    ({"refusal_backoff_base_s": float("nan")}, "risk.refusal_backoff_base_s"),
    ({"refusal_backoff_max_s": float("inf")}, "risk.refusal_backoff_max_s"),
    ({"refusal_backoff_base_s": 5.0, "refusal_backoff_max_s": 1.0},
     "risk.refusal_backoff_max_s"),
    ({"refusal_pause_after": -1}, "risk.refusal_pause_after"),
    ({"refusal_pause_after": 2.5}, "risk.refusal_pause_after"),
    ({"refusal_pause_cooldown_s": -0.1}, "risk.refusal_pause_cooldown_s"),
])
def test_bad_refusal_settings_name_the_key(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build(RiskConfig, table, "risk")
    assert caught.value.key == key


# One step of a run: the venue answers the oldest open orders (each a fill, a venue
# refusal or a reject that is not the venue's), then time moves on and intents come.
_OUTCOMES = (RejectReason.NONE, RejectReason.VENUE_ERROR, RejectReason.LIMIT_NOT_MARKETABLE,
             RejectReason.TRADING_DISABLED, RejectReason.SHUTDOWN)
_STEP = st.tuples(
    st.lists(st.sampled_from(_OUTCOMES), max_size=6),  # answers
    st.integers(0, 3000),  # ms until the intents
    st.lists(st.sampled_from([1, 2]), min_size=1, max_size=12),  # intents' symbols
)
Splitter = Callable[[int], list[int]]


def _split_points(data: st.DataObject) -> Splitter:
    def split(n: int) -> list[int]:
        cuts = data.draw(st.lists(st.integers(1, max(1, n - 1)), max_size=3)) if n > 1 else []
        return sorted(set(cuts))
    return split


def _run(steps: list[Any], split: Splitter | None) -> tuple[list[int], list[list[int]]]:
    """Reasons for every intent and the paused symbols after every step; with ``split``,
    each step's reports and intents are handed over in several calls instead of one."""
    desk = Desk(_engine(refusal_backoff_base_s=0.4, refusal_backoff_max_s=3.0,
                        refusal_pause_after=4, refusal_pause_cooldown_s=5.0))
    reasons: list[int] = []
    paused: list[list[int]] = []
    now = 0
    for answers, wait_ms, symbols in steps:
        answered, desk.sent = desk.sent[:len(answers)], desk.sent[len(answers):]
        reports = [_report(o, r) for o, r in zip(answered, answers, strict=False)]
        if reports:
            batch = np.concatenate(reports)
            for part in np.split(batch, split(len(batch)) if split else []):
                desk.engine.on_reports(part)
        now += wait_ms * 1_000_000
        intents = empty(INTENT_DTYPE, len(symbols))
        intents["symbol_id"], intents["side"] = symbols, 1
        intents["quantity"], intents["limit_price"] = 1.0, 150.0
        for part in np.split(intents, split(len(intents)) if split else []):
            accepted, part_reasons = desk.engine.check(part, now)
            desk.open(accepted, now)
            reasons.extend(part_reasons.tolist())
        paused.append(sorted(desk.engine.refusals.paused))
    return reasons, paused


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(_STEP, min_size=1, max_size=30), data=st.data())
def test_held_back_decisions_do_not_depend_on_batching(steps: list[Any],
                                                      data: st.DataObject) -> None:
    whole = _run(steps, None)
    assert _run(steps, _split_points(data)) == whole


def test_limit_not_marketable_counts_only_when_configured() -> None:
    """The market moving past a limit is not the venue failing: by default it neither backs
    off nor pauses (a paper run meets it many times in a row); a venue that bills every
    quote can opt in."""
    assert RejectReason.LIMIT_NOT_MARKETABLE not in VENUE_REFUSALS
    desk = Desk(_engine(refusal_pause_after=2))
    for at in range(5):
        assert desk.send(at) == [OK]
        desk.answer(RejectReason.LIMIT_NOT_MARKETABLE)
    assert desk.engine.refusals.take_events() == ()
    opted_in = Desk(_engine(refusal_reasons=("limit_not_marketable",)))
    opted_in.send(0)
    opted_in.answer(RejectReason.LIMIT_NOT_MARKETABLE)
    assert opted_in.send(1) == [BACKOFF]
