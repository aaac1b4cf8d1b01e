"""Section c, the comparison: the same three-process chain carried over ZeroMQ PUSH/PULL.

source (ingest's role: synthetic ticks at ``rate_hz``, stamped when sent) -> middle (the
same ``EmaCross(fast=2, slow=4)`` and :class:`RiskEngine` as the real pipeline's strategy
process) -> sink (the executor's role: stamps the send time on receipt). Each stage blocks
in ``recv`` (ZeroMQ's own waiting); messages are the pipeline's numpy records as bytes.
There is no ledger here, so this chain does strictly less work than the real pipeline.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import zmq

from pipeline.bench.live import WARMUP_NS, _windows
from pipeline.bench.throughput import _CTX
from pipeline.ingest.synthetic import SyntheticFeed
from pipeline.records import INTENT_DTYPE, TICK_DTYPE
from pipeline.strategy.api import Book
from pipeline.strategy.config import RiskConfig
from pipeline.strategy.ema_cross import EmaCross
from pipeline.strategy.risk import RiskEngine

_STOP = b""


def run_zmq_chain(rate_hz: float, duration_s: float, windows: int) -> list[dict[str, float]]:
    """Latency percentiles per window of the chain run for warm-up plus ``duration_s``."""
    directory = Path(tempfile.mkdtemp(prefix="bench-chain-"))
    ticks_addr, intents_addr = f"ipc://{directory}/ticks", f"ipc://{directory}/intents"
    parent, child = _CTX.Pipe()
    sink = _CTX.Process(target=_sink, args=(intents_addr, child), daemon=True)
    middle = _CTX.Process(target=_middle, args=(ticks_addr, intents_addr), daemon=True)
    sink.start()
    middle.start()
    try:
        if parent.recv() != "ready":
            raise RuntimeError("chain sink failed to start")
        _source(ticks_addr, rate_hz, WARMUP_NS / 1e9 + duration_s)
        if not parent.poll(30):
            raise RuntimeError("chain sink did not finish")
        send_ns, latency_ns = parent.recv()
    finally:
        for proc in (middle, sink):
            proc.join(5)
            if proc.is_alive():
                proc.kill()
        shutil.rmtree(directory, ignore_errors=True)
    return _windows(send_ns, latency_ns, windows)


def _source(address: str, rate_hz: float, duration_s: float) -> None:
    context = zmq.Context()
    push = context.socket(zmq.PUSH)
    push.connect(address)
    time.sleep(0.2)  # let the middle stage bind and connect downstream before timing starts
    start = time.monotonic_ns()
    feed = SyntheticFeed(1, 150.0, 1.0, rate_hz, 1, start_ns=start)
    end = start + int(duration_s * 1e9)
    seq = 0
    while (now := time.monotonic_ns()) < end:
        ticks = feed.poll(now, 256)
        if len(ticks):
            ticks["seq"] = np.arange(seq, seq + len(ticks), dtype=np.uint64)
            ticks["ingest_ns"] = time.monotonic_ns()
            push.send(ticks.tobytes(), copy=True)
            seq += len(ticks)
            continue
        wait_ns = feed.next_due_ns() - time.monotonic_ns()
        if wait_ns > 0:
            time.sleep(wait_ns / 1e9)
    push.send(_STOP)
    context.destroy(linger=1000)


def _middle(ticks_addr: str, intents_addr: str) -> None:
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.bind(ticks_addr)
    push = context.socket(zmq.PUSH)
    push.connect(intents_addr)
    strategy = EmaCross(fast=2, slow=4, quantity=1.0, symbol_id=1, bar_s=0.0)
    risk = RiskEngine(RiskConfig(max_orders_per_s=100000.0))
    book = _FilledAtOnce(risk, push)
    while (message := pull.recv()) != _STOP:
        ticks = np.frombuffer(message, dtype=TICK_DTYPE)
        risk.on_ticks(ticks)
        strategy.decide(ticks, book)
    push.send(_STOP)
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


def _sink(address: str, conn: Connection) -> None:
    context = zmq.Context()
    pull = context.socket(zmq.PULL)
    pull.bind(address)
    conn.send("ready")
    sends: list[int] = []
    latencies: list[np.ndarray] = []
    while (message := pull.recv()) != _STOP:
        send_ns = time.monotonic_ns()
        intents = np.frombuffer(message, dtype=INTENT_DTYPE)
        sends.extend([send_ns] * len(intents))
        latencies.append(send_ns - intents["tick_ingest_ns"])
    conn.send((np.array(sends, dtype=np.int64),
               np.concatenate(latencies) if latencies else np.empty(0, dtype=np.int64)))
    context.destroy(linger=0)
