"""A real executor service (real runtime, rings in /dev/shm, paper venue) and the other
sides of its rings: a trading state writer standing in for the ledger, the strategy's intents
writer, ingest's tick writer and the ledger's reports reader, as in a run."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from pipeline.config import load_config
from pipeline.executor.process import ExecutorService
from pipeline.killflag import KillFlagWriter, flag_path
from pipeline.ports import InputPort
from pipeline.records import INTENT_DTYPE, TICK_DTYPE, OrderStatus, RejectReason, Side
from pipeline.ring import RingWriter
from pipeline.runtime import Runtime


@dataclass
class Parts:
    runtime: Runtime
    executor: ExecutorService
    ledger: KillFlagWriter
    intents: RingWriter
    reports: InputPort
    ticks: RingWriter
    next_id: int = 1
    next_tick: int = 1

    def send(self, count: int = 1, *, age_ms: float = 0.0) -> None:
        """Write ``count`` buy intents decided ``age_ms`` ago; step until the executor idles."""
        assert self.intents.write(self.intents_batch(count, age_ms=age_ms)) == count
        while self.executor.step():
            pass

    def intents_batch(self, count: int, *, age_ms: float = 0.0) -> np.ndarray:
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
        return batch

    def tick(self, price: float = 100.0) -> None:
        """One tick of symbol 1, later (by sequence) than every intent's ``tick_seq``."""
        batch = np.zeros(1, dtype=TICK_DTYPE)
        batch["seq"] = self.next_tick = self.next_tick + 1
        batch["ingest_ns"] = time.monotonic_ns()
        batch["price"] = price
        batch["symbol_id"] = 1
        assert self.ticks.write(batch) == 1

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
    ticks = runtime.ports.peer("ingest").writer("ticks")
    try:
        yield Parts(runtime, executor, ledger, intents, reports, ticks)
    finally:
        ticks.close()
        intents.close()
        reports.close()
        executor.close()
        ledger.close()
        runtime.close()
