"""The executor sleeps when nothing needs it.

A sent paper order stays unconsumed in the intents ring until its final report (so a crash
cannot lose it), and fills at the next tick. Before, the idle wait counted that order as
unread work, and every tick read as work: while an order waited for its tick, or while ticks
flowed, the executor never slept, burning the CPU it shares with the strategy.
"""

from __future__ import annotations

from conftest import Parts

from pipeline.records import OrderStatus


def _ready_to_wake(parts: Parts) -> bool:
    return any(w.available() > 0 for w in parts.executor.wake_readers())


def _unread_intents(parts: Parts) -> int:
    intents, = (r for r in parts.executor.readers() if r.stream.name == "intents")
    return intents.available()


def test_a_sent_order_waiting_for_its_tick_lets_the_executor_sleep(parts: Parts) -> None:
    parts.ledger.publish(0)
    parts.send(1)
    assert parts.executor.orders_sent == 1
    assert parts.executor.heartbeat()["pending"] == 1
    assert _unread_intents(parts) == 1  # still unconsumed: crash-safe
    assert not _ready_to_wake(parts)
    assert parts.executor.step() is False
    parts.tick(99.0)  # the tick that completes it wakes it: no polling interval to wait out
    assert _ready_to_wake(parts)


def test_a_new_intent_is_what_wakes_it(parts: Parts) -> None:
    parts.ledger.publish(0)
    parts.send(1)
    assert parts.intents.write(parts.intents_batch(1)) == 1
    assert _ready_to_wake(parts)
    while parts.executor.step():
        pass
    assert parts.executor.orders_sent == 2
    assert not _ready_to_wake(parts)


def test_ticks_that_complete_nothing_are_not_work(parts: Parts) -> None:
    parts.ledger.publish(0)
    for _ in range(3):
        parts.tick()
        assert not _ready_to_wake(parts)  # no order a tick could complete: ticks don't wake
        assert parts.executor.step() is False  # read, but nothing to do: may sleep


def test_the_tick_after_an_order_fills_it_and_the_order_is_consumed(parts: Parts) -> None:
    parts.ledger.publish(0)
    parts.send(1)
    parts.tick(99.0)  # below the buy limit of 100: marketable
    assert parts.executor.step() is True
    while parts.executor.step():
        pass
    reports = parts.reports.read(16)
    assert reports["status"].tolist() == [OrderStatus.FILLED]
    assert parts.executor.heartbeat()["pending"] == 0
    assert _unread_intents(parts) == 0
