"""The executor process: order intents in, venue orders out, execution reports to the ledger.

Exactly one final report per intent, even across a crash: the intents cursor only moves past
an intent once its final report is in the reports ring. After a restart the executor reads
the unfinished intents again; the ledger ignores a second final report for an order.

Trading is halted until the ledger has published its trading state
(:mod:`pipeline.trading_state`, in shared memory: :mod:`pipeline.killflag`), which is read
right before every send and is fail-closed (a missing, foreign, replaced or stale segment
reads as halted). While halted every intent that still arrives (the strategy withholds
its own) is rejected: ``LEDGER_STALLED`` when a stalled commit is the only reason, else
``TRADING_DISABLED``. An intent decided more than ``executor.max_intent_age_ms`` ago (a
restarted executor finding old intents in the ring) is rejected with ``STALE_INTENT``:
the market it was decided on has moved.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from pipeline.control import Handler
from pipeline.executor.paper import PaperVenue
from pipeline.executor.venue import Venue, reports_from_intents
from pipeline.killflag import open_reader
from pipeline.metrics import ExecutorMetrics
from pipeline.records import REPORT_DTYPE, OrderStatus, RejectReason
from pipeline.ring import RingReader
from pipeline.runtime import Runtime
from pipeline.service import Service
from pipeline.stopping import UpstreamWait, upstream_wait_s
from pipeline.trading_state import describe, names, reject_reason
from pipeline.wakeup import Waitable

_BATCH_MAX = 1024
_LATENCY_WINDOW = 4096
_PENDING_POLL_S = 0.002


def make_venue(runtime: Runtime) -> Venue:
    name = runtime.config.executor.venue
    if name == "paper":
        return PaperVenue(runtime.config.executor)
    if name == "solana":
        from pipeline.executor.solana.factory import make_solana_venue
        return make_solana_venue(runtime)
    raise NotImplementedError(f"venue {name!r} is not available in this build")


class ExecutorService(Service):
    def __init__(self, runtime: Runtime, venue: Venue | None = None) -> None:
        self._runtime = runtime
        config = runtime.config
        self.spin_us = config.executor.spin_us
        self._venue = venue or make_venue(runtime)
        self._ticks = runtime.ports.reader("ticks")
        self._intents = runtime.ports.reader("intents")
        self._reports = runtime.ports.writer("reports")
        self._metrics = ExecutorMetrics(runtime.registry)
        self._venue_name = config.executor.venue
        # Series from the start at 0: a first fill is an increase ("no fills for 15 min").
        self._metrics.orders.labels(self._venue_name)
        self._metrics.fills.labels(self._venue_name)
        self._max_intent_age_ns = int(config.executor.max_intent_age_ms * 1_000_000)
        self._halt: int | None = None  # the trading state as last read; None: not yet
        self._trading = open_reader(config, "executor", runtime.run_id, log=runtime.log,
                                    registry=runtime.registry)
        self._outbox = np.empty(0, dtype=REPORT_DTYPE)  # reports the ring could not take yet
        self._unsent = _UnsentIntents(self._intents)
        self._pending_seq: dict[int, int] = {}  # client_order_id -> intent sequence
        self._latency_ns = np.zeros(_LATENCY_WINDOW, dtype=np.int64)
        self._latency_count = 0
        self._strategy_done: UpstreamWait | None = None  # made when draining starts
        self.orders_sent = 0
        self.fills = 0
        self.rejects = 0
        self._metrics.trade_enabled.set(-1)

    def readers(self) -> list[RingReader]:
        return [self._intents, self._ticks]

    def wake_readers(self) -> list[Waitable]:
        # Waking on every tick (executor.wake_on_ticks) overlaps the executor's wake-up with
        # the strategy's decision. Without it, ticks wake it only while they can complete
        # one of its orders (paper: the first tick after it, by sequence).
        if self._runtime.config.executor.wake_on_ticks or (
                self._pending_seq and self._venue.completes_on_ticks):
            return [self._unsent, self._ticks]
        return [self._unsent]

    def idle_timeout_s(self) -> float | None:
        return _PENDING_POLL_S if self._pending_seq else None

    # -- the loop -------------------------------------------------------------------------
    def step(self) -> bool:
        did_work = self._work()
        if not did_work and (self._ticks.closed or self._intents.closed):
            self._ticks.follow()
            if not self._pending_seq and self._intents.follow():
                self._unsent.sent_upto = self._intents.cursor
        return did_work

    def _work(self) -> bool:
        # New intents first: tick-to-order is measured at the send, and the rest (health
        # events, report flushing, paper fills against later ticks) can wait microseconds.
        did_work = not len(self._outbox) and self._take_intents()
        did_work |= self._flush_outbox()
        # Ticks are read on every turn but are work only when they complete orders (or more
        # are waiting): counting every tick kept the executor awake as long as ticks flowed,
        # on the CPU it shares with the strategy.
        ticks = self._ticks.read(_BATCH_MAX)
        if len(ticks):
            completed = self._venue.on_ticks(ticks)
            self._emit(completed)
            did_work |= len(completed) > 0 or len(ticks) == _BATCH_MAX
        polled = self._venue.poll(not len(self._outbox))  # answers arriving on their own
        if len(polled):
            self._emit(polled)
            did_work = True
        return did_work

    def _take_intents(self) -> bool:
        if not self._unsent.available():  # sent ones stay in the ring: do not copy them again
            self._advance_intents()
            return False
        intents = self._intents.peek(_BATCH_MAX)
        base = self._intents.cursor
        sent = self._unsent.sent_upto
        fresh = intents[sent - base :] if sent > base else intents
        if len(fresh):
            first_seq = base + len(intents) - len(fresh)
            self._submit(fresh, first_seq)
            self._unsent.sent_upto = first_seq + len(fresh)
        self._advance_intents()
        return bool(len(fresh))

    def _submit(self, intents: np.ndarray, first_seq: int) -> None:
        # The ledger's trading state decides, read right before sending: one word.
        halt = self._trading.halt()
        if halt != self._halt:
            self._note_state(halt)
        seqs = np.arange(first_seq, first_seq + len(intents))
        now_ns = time.monotonic_ns()
        if halt:
            held = self._held(intents)
            self._refuse(intents, seqs, ~held, now_ns, reject_reason(halt))
            intents, seqs = intents[held], seqs[held]
        # min over a list: a quarter of numpy's min() on the one-intent batches of live trading
        elif now_ns - min(intents["decision_ns"].tolist()) > self._max_intent_age_ns:
            stale = (now_ns - intents["decision_ns"] > self._max_intent_age_ns) \
                & ~self._held(intents)
            self._refuse(intents, seqs, stale, now_ns, RejectReason.STALE_INTENT)
            intents, seqs = intents[~stale], seqs[~stale]
        if not len(intents):
            return
        send_ns = time.monotonic_ns()
        reports = self._venue.submit(intents, send_ns)
        finished = set(reports["client_order_id"].tolist())
        for offset, coid in enumerate(intents["client_order_id"].tolist()):
            if coid not in finished:
                self._pending_seq[coid] = int(seqs[offset])
        self.orders_sent += len(intents)
        self._metrics.orders.labels(self._venue_name).inc(len(intents))
        latency_ns = send_ns - intents["tick_ingest_ns"]
        for value in latency_ns.tolist():
            self._metrics.tick_to_order.observe(value / 1e9)
        slots = np.arange(self._latency_count, self._latency_count + len(latency_ns))
        self._latency_ns[slots % _LATENCY_WINDOW] = latency_ns
        self._latency_count += len(latency_ns)
        self._emit(reports)

    def _held(self, intents: np.ndarray) -> np.ndarray:
        """Mask of orders signed before a crash: they go back to the venue even while
        trading is off or they are stale, since only their signature decides whether they
        filled (refusing them could lose a fill). Asked only when refusing, so the send
        path pays nothing for it."""
        return np.array([self._venue.reconciles(coid)
                         for coid in intents["client_order_id"].tolist()], dtype=bool)

    def _refuse(self, intents: np.ndarray, seqs: np.ndarray, refused: np.ndarray,
                now_ns: int, reason: RejectReason) -> None:
        """Final REJECTED reports for ``intents[refused]``; stale ones are also logged."""
        if not refused.any():
            return
        if reason is RejectReason.STALE_INTENT:
            age_ms = (now_ns - int(intents["decision_ns"][refused].min())) / 1e6
            self._runtime.log.warning(
                "refused %d intents decided more than %.0f ms ago (oldest %.0f ms)",
                int(refused.sum()), self._max_intent_age_ns / 1e6, age_ms,
                extra={"event": "executor.stale_intents", "count": int(refused.sum()),
                       "oldest_ms": round(age_ms, 1), "first_seq": int(seqs[refused][0])})
        self._emit(reports_from_intents(intents[refused], now_ns, OrderStatus.REJECTED, reason))

    def _emit(self, reports: np.ndarray) -> None:
        if not len(reports):
            return
        final = reports["status"] != OrderStatus.NEW  # a NEW report keeps the order open
        for coid in reports["client_order_id"][final].tolist():
            self._pending_seq.pop(coid, None)
        statuses = reports["status"]
        fills = int(np.count_nonzero(statuses == OrderStatus.FILLED))
        self.fills += fills
        self._metrics.fills.labels(self._venue_name).inc(fills)
        for reason in reports["reject_reason"][final & (statuses != OrderStatus.FILLED)].tolist():
            self.rejects += 1
            self._metrics.rejects.labels(RejectReason(reason).name.lower()).inc()
        self._outbox = np.concatenate([self._outbox, reports]) if len(self._outbox) else reports
        self._flush_outbox()

    def _flush_outbox(self) -> bool:
        if not len(self._outbox):
            return False
        written = self._reports.write(self._outbox)
        self._outbox = self._outbox[written:]
        return written > 0

    def _advance_intents(self) -> None:
        """Consume intents whose final report has left the process (or is queued in order)."""
        if len(self._outbox):
            return
        oldest_open = min(self._pending_seq.values(), default=self._unsent.sent_upto)
        consumed = oldest_open - self._intents.cursor
        if consumed > 0:
            self._intents.advance(consumed)

    def _note_state(self, halt: int) -> None:
        """Log and export a change of the trading state as this executor reads it."""
        self._runtime.log.log(logging.WARNING if halt else logging.INFO,
                              "trading state: %s", describe(halt),
                              extra={"event": "executor.trading_state", "reasons": names(halt)})
        self._halt = halt
        self._metrics.trade_enabled.set(0 if halt else 1)

    @property
    def trade_enabled(self) -> bool | None:
        """Whether the last read said trading is on (None: not read yet)."""
        return None if self._halt is None else not self._halt

    # -- lifecycle --------------------------------------------------------------------------
    def drain(self) -> bool:
        """Submit what is left, cancel what the venue still holds, flush every report; done
        once the strategy has finished writing intents (it may be stopping at this very
        moment, :mod:`pipeline.stopping`) and every one of them has its final report."""
        if self._strategy_done is None:
            self._strategy_done = UpstreamWait(
                "strategy", upstream_wait_s("executor", self._runtime.config.run.stop_timeout_s),
                self._runtime.log)
        strategy_done = self._strategy_done.finished(self._intents)  # before reading the rest
        while self._work():
            pass
        if self._pending_seq:
            self._emit(self._venue.cancel_all(RejectReason.SHUTDOWN))
        self._flush_outbox()
        self._advance_intents()
        return (strategy_done and not len(self._outbox) and not self._pending_seq
                and not self._intents.available())

    def latency_quantiles_us(self) -> dict[str, float]:
        count = min(self._latency_count, _LATENCY_WINDOW)
        if not count:
            return {}
        window = self._latency_ns[:count] / 1000
        p50, p99, p999 = np.percentile(window, [50, 99, 99.9])
        return {
            "p50_us": round(float(p50), 1),
            "p99_us": round(float(p99), 1),
            "p999_us": round(float(p999), 1),
        }

    def heartbeat(self) -> dict[str, Any]:
        return {
            "orders": self.orders_sent,
            "fills": self.fills,
            "rejects": self.rejects,
            "pending": len(self._pending_seq),
            "trade_enabled": self.trade_enabled,
            "trading": self._trading.view(),
            "kill_flag": self._trading.problem or "ok",
            "outbox": len(self._outbox),
            "tick_to_order": self.latency_quantiles_us(),
            "backpressure_waits": self._reports.backpressure_waits,
        }

    def update_metrics(self) -> None:
        halt = self._trading.halt()  # status shows it between orders
        if halt != self._halt:
            self._note_state(halt)
        self._metrics.pending.set(len(self._pending_seq))
        self._runtime.metrics.export_writer(
            self._reports.spec.name,
            self._reports.backpressure_waits,
            self._reports.backpressure_timeouts,
        )
        self._runtime.metrics.export_reader(self._ticks.spec.name, "executor", self._ticks.lost)

    def handlers(self) -> Mapping[str, Handler]:
        return {}

    def close(self) -> None:
        self._venue.close()  # e.g. the Solana venue's worker thread and HTTP clients
        self._trading.close()
        self._ticks.close()
        self._intents.close()
        self._reports.close()


class _UnsentIntents:
    """The intents ring as the idle wait sees it: only intents not yet given to the venue.

    Sent intents stay unconsumed until their final report (a crash must not lose them), so
    the ring's own count would end every wait at once while a paper order waits for its
    next tick: the executor would busy-poll."""

    def __init__(self, ring: RingReader) -> None:
        self._ring = ring
        self.sent_upto = ring.cursor  # intents below this sequence went to the venue

    def available(self) -> int:
        return self._ring.write_seq - self.sent_upto

    def set_sleeping(self, sleeping: bool) -> None:
        self._ring.set_sleeping(sleeping)
