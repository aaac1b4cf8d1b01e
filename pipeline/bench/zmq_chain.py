"""Section c, the lighter comparison: three stages over ZeroMQ PUSH/PULL, no ledger.

source (ingest's role: synthetic ticks at ``rate_hz``, stamped when sent) -> middle (the
same ``EmaCross(fast=2, slow=4)`` and :class:`RiskEngine` as the real pipeline's strategy
process) -> sink (the executor's role: stamps the send time on receipt). Each stage blocks
in ``recv`` (ZeroMQ's own waiting); messages are the pipeline's numpy records as bytes.
There is no ledger and no report flow here, so this chain does strictly less work than the
real pipeline; :mod:`.zmq_pipeline` is the same-work comparison.
"""

from __future__ import annotations

import time
from multiprocessing.connection import Connection

import numpy as np
import zmq

from pipeline.bench import zmq_stages as stage
from pipeline.bench.live import WARMUP_NS, latency_windows
from pipeline.ingest.synthetic import SyntheticFeed
from pipeline.records import INTENT_DTYPE, TICK_DTYPE
from pipeline.strategy.api import Book
from pipeline.strategy.config import RiskConfig
from pipeline.strategy.ema_cross import EmaCross
from pipeline.strategy.risk import RiskEngine


def run_zmq_chain(rate_hz: float, duration_s: float, windows: int) -> list[dict[str, float]]:
    """Latency percentiles per window of the chain run for warm-up plus ``duration_s``."""
    with stage.ipc_directory("bench-chain-") as directory, stage.Stages() as stages:
        ticks_addr, intents_addr = f"ipc://{directory}/ticks", f"ipc://{directory}/intents"
        sink = stages.start(_sink, intents_addr)
        stages.start(_middle, ticks_addr, intents_addr)
        _source(ticks_addr, rate_hz, WARMUP_NS / 1e9 + duration_s)
        send_ns, latency_ns = stage.result(sink, 30, "chain sink")
    return latency_windows(send_ns, latency_ns, windows)


def _source(address: str, rate_hz: float, duration_s: float) -> None:
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.connect(address)
    feed = SyntheticFeed(1, 150.0, 1.0, rate_hz, 1, start_ns=time.monotonic_ns())
    stage.pace_ticks(feed, lambda ticks: push.send(ticks.tobytes(), copy=True), duration_s)
    push.send(stage.STOP)
    context.destroy(linger=1000)


def _middle(conn: Connection, ticks_addr: str, intents_addr: str) -> None:
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.bind(ticks_addr)
    push = context.socket(zmq.PUSH)
    push.connect(intents_addr)
    strategy = EmaCross(fast=2, slow=4, quantity=1.0, symbol_id=1, bar_s=0.0)
    risk = RiskEngine(RiskConfig(max_orders_per_s=100000.0))
    book = _FilledAtOnce(risk, push)
    conn.send(stage.READY)
    stopped = False
    while not stopped:
        ticks, stopped = stage.receive_queued(pull, TICK_DTYPE)
        if len(ticks):
            risk.on_ticks(ticks)
            strategy.decide(ticks, book)
    push.send(stage.STOP)
    context.destroy(linger=1000)


class _FilledAtOnce(Book):
    """No executor answers in this chain: every sent order counts as filled at once."""

    def __init__(self, risk: RiskEngine, push: zmq.Socket[bytes]) -> None:
        self._risk, self._push = risk, push
        self._held: dict[int, float] = {}

    def until(self, position: int) -> None:
        """Nothing to replay: fills are assumed when sent."""

    def position(self, symbol_id: int) -> float:
        return self._held.get(symbol_id, 0.0)

    def working(self, symbol_id: int) -> bool:
        return False

    def send(self, intents: np.ndarray) -> None:
        accepted, _ = self._risk.check(intents, time.monotonic_ns())
        if len(accepted):
            accepted["decision_ns"] = time.monotonic_ns()
            self._push.send(accepted.tobytes(), copy=True)
            for symbol, signed in zip(accepted["symbol_id"].tolist(),
                                      (accepted["side"] * accepted["quantity"]).tolist(),
                                      strict=True):
                self._held[symbol] = self._held.get(symbol, 0.0) + signed


def _sink(conn: Connection, address: str) -> None:
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.bind(address)
    conn.send(stage.READY)
    sends: list[int] = []
    latencies: list[np.ndarray] = []
    stopped = False
    while not stopped:
        intents, stopped = stage.receive_queued(pull, INTENT_DTYPE)
        send_ns = time.monotonic_ns()
        sends.extend([send_ns] * len(intents))
        latencies.append(send_ns - intents["tick_ingest_ns"])
    conn.send((np.array(sends, dtype=np.int64),
               np.concatenate(latencies) if latencies else np.empty(0, dtype=np.int64)))
    context.destroy(linger=0)
