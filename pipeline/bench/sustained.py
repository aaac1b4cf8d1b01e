"""Section d: the highest tick rate the strategy keeps up with, and the ledger's report rate.

Both drive the real service classes (:class:`StrategyService`, :class:`LedgerService`, built
on a real :class:`Runtime` in a child process) from a writer in this process, and step them
in a plain loop (no idle waits: the question is capacity, not wake-up latency).

- strategy: ticks are published at a stepped rate in batches of 256, as ingest does; a rate
  is sustained when the strategy saw every tick with no overrun of the lossy tick ring.
- ledger: filled execution reports are published as fast as the lossless reports ring takes
  them; reports/s is reports committed over the time from the first report's arrival to the last
  commit, and
  the commit rate is checked against the budget (``ledger.commits_per_s``).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.bench.throughput import _CTX
from pipeline.config import PipelineConfig, load_config
from pipeline.records import REPORT_DTYPE, OrderStatus
from pipeline.ring import RingReader, RingWriter
from pipeline.runtime import Runtime
from pipeline.service import Service
from pipeline.topology import RingSpecs


def _config(work: Path, shm: Path) -> PipelineConfig:
    return load_config(environ={}, overrides={
        "data_dir": str(work), "rings": {"shm_dir": str(shm)},
        "metrics": {"ports": {"ingest": 0, "strategy": 0, "executor": 0, "ledger": 0}}})


def _in_child(config: PipelineConfig, name: str, make: Callable[[Runtime], Service],
              loop: Callable[[Any], Any]) -> tuple[Connection, Any]:
    def main(conn: Connection) -> None:
        runtime = Runtime.build(config, name, to_stderr=False)
        service = make(runtime)
        conn.send("ready")
        conn.send(loop(service))
        service.close()
        runtime.close()

    parent, child = _CTX.Pipe()
    proc = _CTX.Process(target=main, args=(child,), daemon=True)
    proc.start()
    if not parent.poll(30) or parent.recv() != "ready":
        raise RuntimeError(f"{name} did not start")
    return parent, proc


def strategy_keeps_up(rate_hz: float, duration_s: float) -> float:
    """The tick rate achieved if the strategy saw every tick with no overrun, else 0."""
    from pipeline.strategy.process import StrategyService

    work = Path(tempfile.mkdtemp(prefix="bench-strategy-"))
    shm = Path(tempfile.mkdtemp(prefix="bench-strategy-", dir="/dev/shm"))
    config = _config(work, shm)
    total = int(rate_hz * duration_s)
    writer = RingWriter(RingSpecs.from_config(config).ticks, env=config.env, run_id=uuid.uuid4(),
                        shm_dir=shm)

    def loop(service: Any) -> tuple[int, int]:
        deadline = time.monotonic() + duration_s + 5
        while service.ticks_seen < total and time.monotonic() < deadline:
            service.step()
        return service.ticks_seen, service._ticks.lost

    try:
        conn, proc = _in_child(config, "strategy", StrategyService, loop)
        started = time.monotonic()
        _publish_ticks(writer, total, rate_hz)
        achieved_hz = total / (time.monotonic() - started)
        seen, lost = conn.recv() if conn.poll(duration_s + 10) else (0, -1)
        proc.join(5)
        return achieved_hz if seen == total and lost == 0 else 0.0
    finally:
        writer.close()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)


def _publish_ticks(writer: RingWriter, total: int, rate_hz: float) -> None:
    from pipeline.ingest.synthetic import SyntheticFeed

    start = time.monotonic_ns()
    feed = SyntheticFeed(1, 150.0, 1.0, rate_hz, 1, start_ns=start)
    sent = 0
    while sent < total:
        ticks = feed.poll(time.monotonic_ns(), min(256, total - sent))
        if not len(ticks):
            continue
        ticks["seq"] = np.arange(sent, sent + len(ticks), dtype=np.uint64)
        ticks["ingest_ns"] = time.monotonic_ns()
        writer.write(ticks)
        sent += len(ticks)


def max_sustained_rate(rates_hz: list[float], duration_s: float) -> float:
    """The highest achieved rate kept up with, stepping through ``rates_hz`` (ascending)
    until the strategy misses a tick (or the writer cannot go faster)."""
    best = 0.0
    for rate in rates_hz:
        achieved = strategy_keeps_up(rate, duration_s)
        if achieved <= best:
            break
        best = achieved
    return best


def ledger_rates(total: int) -> tuple[float, float]:
    """(reports committed per second, commits per second) for ``total`` filled reports."""
    from pipeline.ledger.process import LedgerService

    work = Path(tempfile.mkdtemp(prefix="bench-ledger-"))
    shm = Path(tempfile.mkdtemp(prefix="bench-ledger-", dir="/dev/shm"))
    config = _config(work, shm)
    spec = RingSpecs.from_config(config).reports
    run_id = uuid.uuid4()
    writer = RingWriter(spec, env=config.env, run_id=run_id, shm_dir=shm,
                        backpressure_timeout_s=30.0)
    # The strategy also reads the reports (for its risk exposure); here it keeps up at once.
    strategy = RingReader(spec, "strategy", env=config.env, run_id=run_id, shm_dir=shm)

    def loop(service: Any) -> tuple[int, int, float]:
        first = last = 0.0
        deadline = time.monotonic() + 120
        while service.reports_committed < total and time.monotonic() < deadline:
            if not first and service.readers()[0].available():
                first = time.monotonic()  # the clock starts when the first report is there
            if service.step():
                last = time.monotonic()
            else:
                time.sleep(min(service.idle_timeout_s() or 0.0005, 0.002))
        return service.reports_committed, service.commits, last - first

    try:
        conn, proc = _in_child(config, "ledger", LedgerService, loop)
        reports = _reports(total)
        for start in range(0, total, 4096):
            writer.write(reports[start:start + 4096])
            strategy.seek(writer.seq)
        committed, commits, elapsed_s = conn.recv() if conn.poll(150) else (0, 0, 0.0)
        proc.join(5)
        if committed < total or elapsed_s <= 0:
            raise RuntimeError(f"ledger committed {committed} of {total} reports")
        return committed / elapsed_s, commits / elapsed_s
    finally:
        strategy.close()
        writer.close()
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(shm, ignore_errors=True)


def _reports(total: int) -> np.ndarray:
    """Filled paper reports alternating buy and sell 0.01 SOL, each a new order."""
    reports = np.zeros(total, dtype=REPORT_DTYPE)
    reports["client_order_id"] = np.arange(1, total + 1, dtype=np.uint64)
    reports["tick_seq"] = np.arange(total, dtype=np.uint64)
    now = time.monotonic_ns()
    reports["tick_ingest_ns"] = now
    reports["decision_ns"] = now + 1000
    reports["send_ns"] = now + 2000
    reports["venue_ts_ns"] = time.time_ns()
    reports["quantity"] = 0.01
    reports["limit_price"] = 151.0
    reports["filled_qty"] = 0.01
    reports["avg_price"] = 150.0
    reports["fee"] = 0.00075
    reports["symbol_id"] = 1
    reports["side"] = np.where(np.arange(total) % 2 == 0, 1, -1)
    reports["status"] = int(OrderStatus.FILLED)
    return reports



