"""Section c, like with like: the real pipeline's four roles and their work, over ZeroMQ.

Four processes, configured exactly as :func:`.live.run_live` configures ``pipeline run``
(:func:`.live.live_config`), each blocking in ZeroMQ's own ``poll``/``recv``:

- ingest: the configured synthetic feed and the ingest validator, stamping ``seq`` and
  ``ingest_ns`` right before it publishes ticks on an XPUB socket (lossy fan-out, like the
  tick ring) to the strategy and the executor;
- strategy: the configured strategy and the real :class:`RiskEngine` deciding through the
  strategy process's own :class:`LiveBook`; the reports read since the last tick batch are
  applied to the risk engine before the next batch, as the strategy process does; accepted
  intents get client order ids and ``decision_ns`` and are pushed to the executor;
- executor: the real :class:`PaperVenue`, ``submit`` on intents with ``send_ns`` stamped
  right before it (as the executor's ``_submit``), ``on_ticks`` on every tick batch, every
  report pushed to both the ledger and the strategy;
- ledger: the real :class:`LedgerStore` on a SQLite file, commits grouped and paced by the
  ledger process's :class:`CommitPacer` (a report cursor is stored with each commit).

Latency is read back from the ledger's database the same way as for the ring pipeline
(``orders.tick_to_order_ns``, the executor's send stamp minus the ingest stamp), so the two
rows are measured by one method. Not carried over: the trading-state word the executor and
strategy read before sending, the stale-intent check, metrics and heartbeats; each costs
the ring pipeline a little that ZeroMQ is spared here.
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Final

import numpy as np
import zmq
from prometheus_client import CollectorRegistry

from pipeline.bench.live import WARMUP_NS, LiveResult, latency_windows, live_config, read_orders
from pipeline.bench.zmq_stages import (
    READY,
    STOP,
    Stages,
    ipc_directory,
    pace_ticks,
    receive_queued,
    result,
    subscribe,
)
from pipeline.cluster.shards import configured_shard
from pipeline.config import PipelineConfig
from pipeline.executor.paper import PaperVenue
from pipeline.ids import ClientOrderIds
from pipeline.ingest.feed import make_feed
from pipeline.ingest.validate import make_validator
from pipeline.ledger.db import init_db, make_engine
from pipeline.ledger.pacing import CommitPacer, estimate_wal_bytes
from pipeline.ledger.store import LedgerStore
from pipeline.metrics import IngestMetrics
from pipeline.records import INTENT_DTYPE, REPORT_DTYPE, TICK_DTYPE, RejectReason
from pipeline.strategy.loader import load_strategy
from pipeline.strategy.process import LiveBook
from pipeline.strategy.risk import RiskEngine

_SUBSCRIBERS: Final = 2  # the strategy and the executor read the ticks
_HWM: Final = 100_000  # messages queued per socket before ZeroMQ drops (PUB) or blocks (PUSH)
_LOG: Final = logging.getLogger("pipeline.bench.zmq_pipeline")


def run_zmq_pipeline(rate_hz: float, duration_s: float, windows: int,
                     data_dir: Path | None = None) -> LiveResult:
    """Run the four stages for warm-up plus ``duration_s``; latency per window and the
    order count, from the ledger's database (kept in ``data_dir`` if given, else removed)."""
    with ipc_directory("bench-zmq-pipeline-") as directory, Stages() as stages:
        config = live_config(data_dir or directory / "data", rate_hz)
        addresses = {name: f"ipc://{directory}/{name}"
                     for name in ("ticks", "intents", "reports-strategy", "reports-ledger")}
        # Binders first: the executor binds intents and both report streams, ingest the
        # ticks (and waits for both tick readers to subscribe before the first tick).
        stages.start(_executor, config, addresses)
        ledger = stages.start(_ledger, config, addresses)
        stages.start(_strategy, config, addresses)
        ingest = stages.start(_ingest, config, addresses, WARMUP_NS / 1e9 + duration_s)
        result(ingest, WARMUP_NS / 1e9 + duration_s + 30, "ZeroMQ pipeline ingest")
        result(ledger, 60, "ZeroMQ pipeline ledger")
        send_ns, latency_ns = read_orders(config.paths.database)
    return LiveResult(latency_windows(send_ns, latency_ns, windows), len(latency_ns))


def _ingest(conn: Connection, config: PipelineConfig, addresses: dict[str, str],
            duration_s: float) -> None:
    context = zmq.Context()
    publish = context.socket(zmq.XPUB)
    publish.setsockopt(zmq.SNDHWM, _HWM)
    publish.setsockopt(zmq.XPUB_VERBOSE, 1)  # one subscription message per subscriber
    publish.bind(addresses["ticks"])
    conn.send(READY)
    for _ in range(_SUBSCRIBERS):  # no tick before both readers listen (no slow joiner)
        if not publish.poll(30_000):
            raise RuntimeError("tick readers did not subscribe")
        publish.recv()
    validator = make_validator(config, _LOG, IngestMetrics(CollectorRegistry()))
    feed = make_feed(config.ingest, time.monotonic_ns)
    sent = pace_ticks(feed, lambda ticks: publish.send(ticks.tobytes(), copy=True), duration_s,
                      validator.validate)
    publish.send(STOP)
    conn.send(sent)
    context.destroy(linger=1000)


def _strategy(conn: Connection, config: PipelineConfig, addresses: dict[str, str]) -> None:
    context = zmq.Context()
    ticks = subscribe(context, addresses["ticks"])
    reports = context.socket(zmq.PULL)
    reports.connect(addresses["reports-strategy"])
    intents = context.socket(zmq.PUSH)
    intents.setsockopt(zmq.SNDHWM, _HWM)
    intents.connect(addresses["intents"])
    strategy = load_strategy(config.strategy)
    risk = RiskEngine(config.risk)
    ids = ClientOrderIds(configured_shard(config).id)

    def send(decided: np.ndarray) -> None:  # the strategy process's _check_and_send, _send
        accepted, _ = risk.check(decided, time.monotonic_ns())
        if len(accepted):
            accepted["client_order_id"] = ids.take(len(accepted))
            accepted["decision_ns"] = time.monotonic_ns()
            intents.send(accepted.tobytes(), copy=True)
            risk.opened(accepted)

    book = LiveBook(risk, send)
    unread: list[np.ndarray] = []  # reports received since the last tick batch
    poller = zmq.Poller()
    poller.register(ticks, zmq.POLLIN)
    poller.register(reports, zmq.POLLIN)
    conn.send(READY)
    ticks_done = reports_done = False
    while not reports_done:
        ready = dict(poller.poll())
        if reports in ready:
            batch, reports_done = receive_queued(reports, REPORT_DTYPE)
            if len(batch):
                unread.append(batch)
        if ticks in ready and not ticks_done:
            batch, ticks_done = receive_queued(ticks, TICK_DTYPE)
            if unread:
                risk.on_reports(unread[0] if len(unread) == 1 else np.concatenate(unread))
                unread.clear()
            if len(batch):
                risk.on_ticks(batch)
                strategy.decide(batch, book)
            if ticks_done:
                poller.unregister(ticks)
                intents.send(STOP)
    context.destroy(linger=1000)


def _executor(conn: Connection, config: PipelineConfig, addresses: dict[str, str]) -> None:
    context = zmq.Context()
    intents = context.socket(zmq.PULL)
    intents.bind(addresses["intents"])
    ticks = subscribe(context, addresses["ticks"])
    outputs: list[zmq.Socket[bytes]] = []
    for name in ("reports-ledger", "reports-strategy"):
        push = context.socket(zmq.PUSH)
        push.setsockopt(zmq.SNDHWM, _HWM)
        push.bind(addresses[name])
        outputs.append(push)
    venue = PaperVenue(config.executor)

    def emit(reports: np.ndarray) -> None:
        if len(reports):
            message = reports.tobytes()
            for push in outputs:
                push.send(message, copy=True)

    poller = zmq.Poller()
    poller.register(intents, zmq.POLLIN)
    poller.register(ticks, zmq.POLLIN)
    conn.send(READY)
    open_inputs = 2
    while open_inputs:
        ready = dict(poller.poll())
        if intents in ready:  # intents first: tick-to-order is measured at the send
            batch, stopped = receive_queued(intents, INTENT_DTYPE)
            if len(batch):
                send_ns = time.monotonic_ns()
                emit(venue.submit(batch, send_ns))
            if stopped:
                poller.unregister(intents)
                open_inputs -= 1
        if ticks in ready:
            batch, stopped = receive_queued(ticks, TICK_DTYPE)
            emit(venue.on_ticks(batch))
            if stopped:
                poller.unregister(ticks)
                open_inputs -= 1
    emit(venue.cancel_all(RejectReason.SHUTDOWN))  # as the executor's drain does
    for push in outputs:
        push.send(STOP)
    context.destroy(linger=5000)


def _ledger(conn: Connection, config: PipelineConfig, addresses: dict[str, str]) -> None:
    settings = config.ledger
    database = config.paths.database
    database.parent.mkdir(parents=True, exist_ok=True)
    engine = make_engine(database, synchronous=settings.synchronous,
                         busy_timeout_ms=settings.busy_timeout_ms)
    init_db(engine, config.env, settings)
    store = LedgerStore(engine, config.symbol_table(), settings)
    pacer = CommitPacer(settings.commits_per_s, settings.wal_bytes_per_s)
    instance = str(uuid.uuid4())
    context = zmq.Context()
    reports = context.socket(zmq.PULL)
    reports.connect(addresses["reports-ledger"])
    conn.send(READY)
    pending: list[np.ndarray] = []
    waiting = committed = 0
    stopped = False
    while not stopped or waiting:
        delay_s = pacer.delay_s()
        if not stopped and reports.poll(None if not waiting else math.ceil(delay_s * 1000)):
            batch, stopped = receive_queued(reports, REPORT_DTYPE, settings.max_batch)
            pending.append(batch)
            waiting += len(batch)
        if waiting and pacer.delay_s() == 0:
            queued = np.concatenate(pending)
            group, rest = queued[: settings.max_batch], queued[settings.max_batch :]
            outcome = store.apply(group, {"reports": (instance, committed + len(group))})
            pacer.record(time.monotonic(), estimate_wal_bytes(outcome.rows_written))
            committed += len(group)
            pending, waiting = ([rest] if len(rest) else []), len(rest)
        elif stopped and waiting:
            time.sleep(pacer.delay_s())  # nothing more can come: wait out the commit budget
    conn.send(committed)
    context.destroy(linger=0)
    engine.dispose()
