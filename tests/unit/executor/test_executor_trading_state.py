"""The executor obeys the ledger's trading state and refuses stale intents.

A real executor service (real runtime, rings in /dev/shm, paper venue) and a real trading
state writer standing in for the ledger; intents go in through the intents ring and the
reports come out of the reports ring, as in a run.
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
from pipeline.executor.process import ExecutorService
from pipeline.killflag import KillFlagWriter, flag_path
from pipeline.ports import InputPort
from pipeline.records import INTENT_DTYPE, OrderStatus, RejectReason, Side
from pipeline.ring import RingWriter
from pipeline.runtime import Runtime
from pipeline.trading_state import Halt


@dataclass
class Parts:
    runtime: Runtime
    executor: ExecutorService
    ledger: KillFlagWriter
    intents: RingWriter
    reports: InputPort
    next_id: int = 1

    def send(self, count: int = 1, *, age_ms: float = 0.0) -> None:
        """``count`` buy intents, decided ``age_ms`` ago."""
        batch = np.zeros(count, dtype=INTENT_DTYPE)
        batch["client_order_id"] = np.arange(self.next_id, self.next_id + count)
        self.next_id += count
        now_ns = time.monotonic_ns()
        batch["decision_ns"] = now_ns - int(age_ms * 1e6)
        batch["tick_ingest_ns"] = batch["decision_ns"]
        batch["tick_seq"] = 1
        batch["quantity"] = 1.0
        batch["limit_price"] = 100.0
        batch["symbol_id"] = 1
        batch["side"] = Side.BUY
        assert self.intents.write(batch) == count
        while self.executor.step():
            pass

    def rejected(self) -> list[str]:
        """Names of the reject reasons reported since the last call."""
        reports = self.reports.read(1024)
        final = reports[reports["status"] == OrderStatus.REJECTED]
        return [RejectReason(r).name for r in final["reject_reason"].tolist()]


@pytest.fixture
def parts(tmp_path: Path, shm_dir: Path) -> Iterator[Parts]:
    config = load_config(None, environ={}, overrides={
        "data_dir": str(tmp_path / "var"), "rings": {"shm_dir": str(shm_dir)},
        "executor": {"max_intent_age_ms": 200.0}})
    runtime = Runtime.build(config, "executor", to_stderr=False)
    ledger = KillFlagWriter(flag_path(shm_dir, config.paths.ring_prefix),
                            run_id=runtime.run_id, log=runtime.log)
    executor = ExecutorService(runtime)
    intents = runtime.ports.peer("strategy").writer("intents")
    # The ledger's side without its database: no committed cursor to seek to.
    reports = runtime.ports.peer("ledger").reader("reports", resume=lambda _reader: None)
    try:
        yield Parts(runtime, executor, ledger, intents, reports)
    finally:
        intents.close()
        reports.close()
        executor.close()
        ledger.close()
        runtime.close()


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
