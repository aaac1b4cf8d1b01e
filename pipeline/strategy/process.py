"""The strategy process: tick batches in, risk-checked order intents out.

This is the one process allowed to busy-poll for longer (``strategy.spin_us``): it sits in
the middle of the tick-to-order path. Intents that the lossless intents ring cannot take
within ``rings.intents_backpressure_ms`` are dropped and counted: a decision not sent is
not an order, and the strategy must keep up with the lossy tick stream.

Venue refusals hold a symbol's intents back and may pause it (:mod:`.refusals`); a pause
or resume is published on the events socket under its topic and logged with the same
event name. ``resume`` with a ``symbol`` resumes that symbol; without, everything.

While the ledger's trading state is halted (:mod:`pipeline.trading_state`) or the operator
paused the strategy, it keeps deciding (indicators stay warm) but withholds the intents:
counted in ``pipeline_strategy_intents_withheld_total{reason}``, never sent, never booked.
They do not pass the risk engine either, so nothing counts them as open orders: a target
strategy that resumes orders the difference between its target and what is really held.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from pipeline.cluster.shards import configured_shard
from pipeline.config import PipelineConfig
from pipeline.control import BadArgsError, Handler
from pipeline.errors import ConfigError
from pipeline.ids import ClientOrderIds
from pipeline.killflag import open_reader
from pipeline.ledger.snapshot import read_positions
from pipeline.metrics import StrategyMetrics
from pipeline.records import RejectReason
from pipeline.ring import RingReader
from pipeline.runtime import Runtime
from pipeline.service import Service
from pipeline.strategy.api import Book
from pipeline.strategy.loader import load_strategy
from pipeline.strategy.refusals import PAUSED_TOPIC, SymbolEvent
from pipeline.strategy.risk import RiskEngine
from pipeline.trading_state import describe, names, primary

_BATCH_MAX = 4096


class LiveBook(Book):
    """The live world of a decision: the risk engine, which has applied every report read
    before the batch (reports arrive between ring reads, so nothing is left to replay)."""

    def __init__(self, risk: RiskEngine, send: Callable[[np.ndarray], None]) -> None:
        self._risk = risk
        self._send = send

    def until(self, position: int) -> None:
        """Reports already applied: nothing happens between the ticks of one read."""

    def position(self, symbol_id: int) -> float:
        return self._risk.position(symbol_id)

    def working(self, symbol_id: int) -> bool:
        return self._risk.working(symbol_id)

    def send(self, intents: np.ndarray) -> None:
        self._send(intents)


class StrategyService(Service):
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        config = runtime.config
        self.spin_us = config.strategy.spin_us
        self._strategy = load_strategy(config.strategy)
        self._risk = RiskEngine(config.risk)
        self._book = LiveBook(self._risk, self._decided)
        self._ticks = runtime.ports.reader("ticks")
        self._intents = runtime.ports.writer("intents")
        self._reports = runtime.ports.reader("reports", resume=self._resume_reports)
        self._shard_id = configured_shard(config).id
        self._ids = ClientOrderIds(self._shard_id)
        self._metrics = StrategyMetrics(runtime.registry)
        self._trading = open_reader(config, "strategy", runtime.run_id, log=runtime.log,
                                    registry=runtime.registry)
        self._halt: int | None = None  # the trading state as last read; None: not yet
        self.paused = False
        self.ticks_seen = 0
        self.intents_sent = 0
        self.withheld = 0
        self.dropped = 0

    def _resume_reports(self, reader: RingReader) -> None:
        """Read execution reports from where the ledger's positions end (see snapshot)."""
        runtime = self._runtime
        snapshot = read_positions(runtime.config.paths.database,
                                  runtime.config.symbol_table(), reader.spec.name,
                                  str(reader.instance_id))
        self._risk.set_positions(snapshot.filled)
        oldest = max(0, reader.write_seq - reader.spec.capacity)
        reader.seek(max(snapshot.reports_cursor, oldest))
        runtime.log.info("risk starts from the ledger's positions", extra={
            "event": "strategy.positions", "filled": snapshot.filled,
            "reports_cursor": reader.cursor})

    def _apply_reports(self) -> None:
        """Fills and rejects from the executor keep the risk engine's exposure true."""
        if self._reports.available():
            self._risk.on_reports(self._reports.read(_BATCH_MAX))

    def readers(self) -> list[RingReader]:
        return [self._ticks]

    def step(self) -> bool:
        if self._process_ticks():
            return True
        self._reports.follow()
        self._ticks.follow()
        return False

    def _process_ticks(self) -> bool:
        ticks = self._ticks.read(_BATCH_MAX)
        if not len(ticks):
            return False
        self.ticks_seen += len(ticks)
        self._apply_reports()
        self._risk.on_ticks(ticks)
        self._strategy.decide(ticks, self._book)
        self._announce()  # pauses come with reports, cool-downs end in checks
        return True

    def _decided(self, intents: np.ndarray) -> None:
        """Send, unless trading is halted or the operator paused us: then withhold."""
        halt = self._trading.halt()
        if halt != self._halt:
            self._note_state(halt)
        if not halt and not self.paused:
            self._check_and_send(intents)
            return
        self.withheld += len(intents)
        self._metrics.withheld.labels("paused" if self.paused else primary(halt)).inc(
            len(intents))

    def _note_state(self, halt: int) -> None:
        self._runtime.log.log(logging.WARNING if halt else logging.INFO,
                              "trading state: %s%s", describe(halt),
                              ": intents withheld" if halt else "",
                              extra={"event": "strategy.trading_state", "reasons": names(halt)})
        self._halt = halt

    def _check_and_send(self, intents: np.ndarray) -> None:
        accepted, reasons = self._risk.check(intents, time.monotonic_ns())
        if len(accepted):  # send first, count after: bookkeeping is off the latency path
            self._send(accepted)
        if len(accepted) < len(reasons):
            refused, counts = np.unique(reasons[reasons != RejectReason.NONE],
                                        return_counts=True)
            for reason, count in zip(refused.tolist(), counts.tolist(), strict=True):
                self._metrics.rejects.labels(RejectReason(reason).name.lower()).inc(count)

    def _announce(self) -> None:
        """Publish and log the symbols paused or resumed since the last call."""
        for event in self._risk.refusals.take_events():
            self._runtime.events.publish(event.topic, event.body())
            self._log_event(event)

    def _log_event(self, event: SymbolEvent) -> None:
        extra = {"event": event.topic, **event.body()}
        if event.topic == PAUSED_TOPIC:
            self._runtime.log.warning(
                "symbol %d paused after %d venue refusals in a row (last: %s)",
                event.symbol_id, event.streak, event.reason, extra=extra)
        else:
            self._runtime.log.info("symbol %d resumed (%s)", event.symbol_id, event.by,
                                   extra=extra)

    def _send(self, accepted: np.ndarray) -> None:
        accepted["client_order_id"] = self._ids.take(len(accepted))
        accepted["decision_ns"] = time.monotonic_ns()
        written = self._intents.write(accepted)
        self._risk.opened(accepted[:written])
        self.intents_sent += written
        self._metrics.intents.inc(written)
        if written < len(accepted):
            self._risk.release(accepted[written:])
            self.dropped += len(accepted) - written
            self._metrics.rejects.labels("backpressure").inc(len(accepted) - written)
        latency_s = (accepted["decision_ns"][:written] - accepted["tick_ingest_ns"][:written]) / 1e9
        for value in latency_s:
            self._metrics.decision.observe(float(value))

    def drain(self) -> bool:
        return not self._process_ticks()  # upstream has stopped: finish what it published

    def heartbeat(self) -> dict[str, Any]:
        return {
            "ticks": self.ticks_seen,
            "intents": self.intents_sent,
            "withheld": self.withheld,
            "trading": self._trading.view(),
            "intents_write_seq": self._intents.seq,  # all runs of this ring, not just ours
            "dropped_backpressure": self.dropped,
            "paused": self.paused,
            "paused_symbols": self._risk.refusals.paused_symbols(time.monotonic_ns()),
            "venue_refusals": {r.name.lower(): n
                               for r, n in self._risk.refusals.refusal_counts().items()},
            "strategy": self._runtime.config.strategy.name,
            "exposure": self._risk.position(self._runtime.config.strategy.symbol_id),
            "risk_rejects": {r.name.lower(): n for r, n in self._risk.reject_counts().items()},
            "tick_overruns": self._ticks.lost,
        }

    def update_metrics(self) -> None:
        common = self._runtime.metrics
        common.export_reader(self._ticks.spec.name, "strategy", self._ticks.lost)
        common.export_writer(
            self._intents.spec.name,
            self._intents.backpressure_waits,
            self._intents.backpressure_timeouts,
        )
        self._metrics.export_ticks(self.ticks_seen)
        self._metrics.paused.set(1.0 if self.paused else 0.0)
        refusals = self._risk.refusals
        if refusals.paused:  # a cool-down may end while no intent comes to check it
            refusals.expire(time.monotonic_ns())
            self._announce()
        self._metrics.paused_symbols.set(len(refusals.paused))
        self._metrics.export_refusals(
            {r.name.lower(): n for r, n in refusals.refusal_counts().items()})

    def handlers(self) -> Mapping[str, Handler]:
        return {"pause": self._pause, "resume": self._resume}

    live_sections = ("strategy", "risk")

    def reload(self, config: PipelineConfig) -> None:
        """New risk limits keep positions and the rate bucket; new strategy parameters build
        a fresh strategy (it warms up again). Built before anything is swapped, so a bad
        parameter refuses the whole reload. A market of another shard is refused: the order
        ids carry the shard, so moving shards takes a restart (and the owner's start check)."""
        shard = configured_shard(config).id  # refuses a market this host does not run
        if shard != self._shard_id:
            raise ConfigError("strategy.symbol_id", config.strategy.symbol_id,
                              f"moves trading to shard {shard} (this process orders for "
                              f"shard {self._shard_id}): restart to change shards")
        strategy = (load_strategy(config.strategy)
                    if config.strategy != self._runtime.config.strategy else None)
        self._risk.reconfigure(config.risk)
        if strategy is not None:
            self._strategy = strategy

    def _pause(self, _args: Mapping[str, Any]) -> Mapping[str, Any]:
        self.paused = True
        return {"paused": True}

    def _resume(self, args: Mapping[str, Any]) -> Mapping[str, Any]:
        """No ``symbol``: lift the pause and every symbol's; with one: that symbol's only."""
        if "symbol" not in args:
            self.paused = False
            resumed = self._risk.refusals.resume()
        else:
            resumed = self._risk.refusals.resume(self._symbol_id(args["symbol"]))
        self._announce()
        return {"paused": self.paused, "resumed_symbols": resumed}

    def _symbol_id(self, symbol: Any) -> int:
        """A symbol id or name from the configured symbols; BadArgsError (bad_args) if not."""
        for entry in self._runtime.config.symbols:
            if (type(symbol) is int and symbol == entry.id) or symbol == entry.name:
                return entry.id
        known = ", ".join(f"{s.id} ({s.name})" for s in self._runtime.config.symbols)
        raise BadArgsError(f"unknown symbol {symbol!r}; known: {known}")

    def close(self) -> None:
        self._trading.close()
        self._ticks.close()
        self._reports.close()
        self._intents.close()
