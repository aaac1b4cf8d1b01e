"""The strategy withholds its intents while trading is halted, and resumes with it.

A real strategy service (real runtime, rings in /dev/shm, an EMA cross that wants to be
long while prices rise) and a real trading state writer standing in for the ledger.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from testkit import eventually

from pipeline.config import load_config
from pipeline.killflag import KillFlagWriter, flag_path
from pipeline.ports import InputPort
from pipeline.records import TICK_DTYPE
from pipeline.ring import RingWriter
from pipeline.runtime import Runtime
from pipeline.strategy.process import StrategyService
from pipeline.trading_state import Halt


@dataclass
class Parts:
    runtime: Runtime
    strategy: StrategyService
    ledger: KillFlagWriter
    ticks: RingWriter
    intents: InputPort  # the executor's side
    seq: int = 0

    def rising_ticks(self, count: int) -> None:
        """One tick per batch (as live), each price above the last: the cross stays long."""
        for _ in range(count):
            self.seq += 1
            tick = np.zeros(1, dtype=TICK_DTYPE)
            tick["seq"] = self.seq
            tick["ingest_ns"] = time.monotonic_ns()
            tick["price"] = 100.0 + self.seq * 0.01
            tick["size"] = 1.0
            tick["symbol_id"] = 1
            assert self.ticks.write(tick) == 1
            while self.strategy.step():
                pass

    def withheld(self, reason: str) -> float:
        value = self.runtime.registry.get_sample_value(
            "pipeline_strategy_intents_withheld_total", {"reason": reason})
        return value or 0.0


@pytest.fixture
def parts(tmp_path: Path, shm_dir: Path) -> Iterator[Parts]:
    config = load_config(None, environ={}, overrides={
        "data_dir": str(tmp_path / "var"), "rings": {"shm_dir": str(shm_dir)},
        "strategy": {"name": "ema_cross", "params": {"fast": 2, "slow": 4, "quantity": 1.0,
                                                    "bar_s": 0.0}}})
    runtime = Runtime.build(config, "strategy", to_stderr=False)
    ledger = KillFlagWriter(flag_path(shm_dir, config.paths.ring_prefix),
                            run_id=runtime.run_id, log=runtime.log)
    ticks = runtime.ports.peer("ingest").writer("ticks")
    strategy = StrategyService(runtime)
    intents = runtime.ports.peer("executor").reader("intents")
    try:
        yield Parts(runtime, strategy, ledger, ticks, intents)
    finally:
        intents.close()
        strategy.close()
        ticks.close()
        ledger.close()
        runtime.close()


def test_intents_are_withheld_while_halted_and_flow_again_after(parts: Parts) -> None:
    parts.ledger.publish(Halt.TRADE_DISABLED)
    parts.rising_ticks(30)
    beat = parts.strategy.heartbeat()
    assert beat["ticks"] == 30  # it kept deciding...
    assert beat["withheld"] > 1  # ...a long target each batch, since nothing is held
    assert parts.withheld("trade_disabled") == beat["withheld"]
    assert beat["intents"] == 0
    assert parts.intents.available() == 0  # nothing reached the executor, nothing booked
    assert beat["exposure"] == 0.0  # withheld intents are not open orders
    assert beat["trading"]["reasons"] == ["trade_disabled"]
    parts.ledger.publish(Halt.LEDGER_STALLED | Halt.CLOCK_UNSAFE)
    parts.rising_ticks(2)
    assert parts.withheld("clock_unsafe") == 2  # the primary reason labels the count
    parts.ledger.publish(0)  # the multisig enabled trading again
    parts.rising_ticks(1)
    assert parts.intents.available() == 1  # the difference to the target, at once
    (intent,) = parts.intents.read(10)
    assert intent["quantity"] == 1.0
    assert parts.strategy.heartbeat()["exposure"] == 1.0  # that one is an open order


def test_the_operators_pause_withholds_too_and_says_so(parts: Parts) -> None:
    parts.ledger.publish(0)
    parts.strategy.handlers()["pause"]({})
    parts.rising_ticks(10)
    assert parts.withheld("paused") > 0
    assert parts.intents.available() == 0
    parts.strategy.handlers()["resume"]({})
    parts.rising_ticks(1)
    assert parts.intents.available() == 1


def test_no_trading_state_at_all_withholds(parts: Parts) -> None:
    parts.ledger.close()
    parts.ledger.path.unlink()
    parts.ledger = KillFlagWriter(parts.ledger.path.with_name("elsewhere"),
                                  run_id=parts.runtime.run_id, log=parts.runtime.log)
    parts.ledger.publish(0)  # on, but not where this pipeline looks
    eventually(lambda: parts.strategy.heartbeat()["trading"]["problem"] is not None,
               timeout_s=2)
    parts.rising_ticks(10)
    assert parts.withheld("unavailable") > 0
    assert parts.intents.available() == 0


def test_a_long_batch_sends_what_ticks_one_at_a_time_would(parts: Parts) -> None:
    """Several crossings in one ring read: the first order goes out and the rest of the
    batch waits for its report, exactly as it would tick by tick (no stacking)."""
    parts.ledger.publish(0)
    prices = 100.0 + 5.0 * np.sin(np.arange(200) * 2 * np.pi / 25)  # 16 crossings
    ticks = np.zeros(len(prices), dtype=TICK_DTYPE)
    ticks["seq"] = np.arange(1, len(prices) + 1)
    ticks["ingest_ns"] = time.monotonic_ns()
    ticks["price"] = prices
    ticks["size"] = 1.0
    ticks["symbol_id"] = 1
    assert parts.ticks.write(ticks) == len(ticks)
    while parts.strategy.step():
        pass
    assert parts.strategy.heartbeat()["ticks"] == len(ticks)
    (intent,) = parts.intents.read(10)
    assert intent["side"] == 1
    assert intent["quantity"] == 1.0
    assert parts.strategy.heartbeat()["exposure"] == 1.0
