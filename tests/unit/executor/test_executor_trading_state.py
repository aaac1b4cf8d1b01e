"""The executor obeys the ledger's trading state and refuses stale intents.

A real executor service (real runtime, rings in /dev/shm, paper venue) and a real trading
state writer standing in for the ledger; intents go in through the intents ring and the
reports come out of the reports ring, as in a run.
"""

from __future__ import annotations

import pytest
from conftest import Parts
from testkit import eventually

from pipeline.trading_state import Halt


def test_nothing_is_sent_before_the_ledger_publishes(parts: Parts) -> None:
    parts.send(2)
    assert parts.rejected() == ["TRADING_DISABLED"] * 2
    assert parts.executor.orders_sent == 0
    assert parts.executor.heartbeat()["trading"]["reasons"] == ["starting"]


@pytest.mark.parametrize(("halt", "reason"), [
    (Halt.TRADE_DISABLED, "TRADING_DISABLED"),
    (Halt.CLOCK_UNSAFE, "TRADING_DISABLED"),
    (Halt.LEDGER_STALLED, "LEDGER_STALLED"),  # the only reason: trading resumes by itself
    (Halt.LEDGER_STALLED | Halt.TRADE_DISABLED, "TRADING_DISABLED"),
])
def test_a_halt_rejects_every_intent_with_its_reason(parts: Parts, halt: Halt,
                                                     reason: str) -> None:
    parts.ledger.publish(0)
    parts.send(1)
    assert parts.executor.orders_sent == 1
    parts.ledger.publish(halt)
    parts.send(3)
    assert parts.rejected() == [reason] * 3
    assert parts.executor.orders_sent == 1
    assert parts.executor.trade_enabled is False
    parts.ledger.publish(0)  # e.g. the multisig, or commits succeeding again
    parts.send(1)
    assert parts.executor.orders_sent == 2
    assert parts.rejected() == []


def test_a_missing_state_is_a_halt(parts: Parts) -> None:
    parts.ledger.publish(0)
    parts.ledger.path.unlink()  # the executor's word still says "on": not trusted
    eventually(lambda: parts.executor.heartbeat()["kill_flag"] != "ok", timeout_s=2)
    parts.send(1)
    assert parts.rejected() == ["TRADING_DISABLED"]
    assert parts.executor.heartbeat()["trading"]["reasons"] == ["unavailable"]


def test_intents_older_than_the_configured_age_are_refused(parts: Parts) -> None:
    parts.ledger.publish(0)
    parts.send(2, age_ms=8_000)  # e.g. found in the ring after a restart
    assert parts.rejected() == ["STALE_INTENT"] * 2
    parts.send(1, age_ms=50)
    assert parts.rejected() == []
    assert parts.executor.orders_sent == 1
