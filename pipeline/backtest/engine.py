"""Run the live strategy, risk and paper-fill code over recorded ticks, fast and repeatably.

The same objects the processes use (validator, :func:`load_strategy`, :class:`RiskEngine`,
:class:`PaperVenue`) see the ticks in the same order with the same rules:

- the strategy gets large batches for its indicators, while every decision is taken in
  time order against a :class:`Replay` that has let every fill and reject up to that tick
  happen first (:class:`~pipeline.strategy.api.Book`): orders, fills and PnL are the same
  for any batch size;
- the risk engine's price band is judged against the decision tick, as live with one tick
  per read, and its order-rate bucket runs on source time;
- the paper venue fills each order at the first tick after its decision tick.

Nothing reads a wall clock on the result path: ``ingest_ns``, ``decision_ns``, ``send_ns``
and the venue's timestamps are all source time, so the same input and config always give
the same fills. Only the measured timings (throughput, the cost of a decision) vary, and
they are kept apart in :class:`Timing`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from pipeline.config import PipelineConfig
from pipeline.executor.paper import PaperVenue
from pipeline.ingest.validate import TickValidator
from pipeline.records import REPORT_DTYPE, TICK_DTYPE, RejectReason
from pipeline.strategy.api import Book
from pipeline.strategy.loader import load_strategy
from pipeline.strategy.risk import RiskEngine

BATCH_TICKS = 4096


@dataclass
class Timing:
    """Measured on this machine; not part of the deterministic result."""

    validate_s: float = 0.0  # the tick validator, before the replay
    elapsed_s: float = 0.0  # the replay
    decision_ns: list[int] = field(default_factory=list)  # per batch: strategy + risk
    batch_ticks: list[int] = field(default_factory=list)


@dataclass
class BacktestRun:
    ticks: np.ndarray  # the validated ticks, seq = index
    reports: np.ndarray  # REPORT_DTYPE, in the order the venue produced them
    risk_rejects: dict[str, int]
    ticks_rejected: dict[str, int]
    timing: Timing


def run_backtest(ticks: np.ndarray, config: PipelineConfig,
                 batch_ticks: int = BATCH_TICKS) -> BacktestRun:
    """Replay ``ticks`` (TICK_DTYPE, source-time order) through strategy, risk and venue."""
    timing = Timing()
    validating = time.perf_counter_ns()
    validator = TickValidator(config.ingest.validation, [s.id for s in config.symbols],
                              check_age=False)
    validated = validator.validate(ticks)  # a new array unless every tick passed as it was
    ticks = validated.copy() if validated is ticks else validated  # seq, ingest_ns set below
    timing.validate_s = (time.perf_counter_ns() - validating) / 1e9
    ticks["seq"] = np.arange(len(ticks), dtype=np.uint64)
    ticks["ingest_ns"] = ticks["source_ts_ns"]
    strategy = load_strategy(config.strategy)
    replay = Replay(RiskEngine(config.risk), config)
    started = time.perf_counter_ns()
    for start in range(0, len(ticks), batch_ticks):
        batch = ticks[start : start + batch_ticks]
        decided = time.perf_counter_ns()
        replay.begin(batch)
        strategy.decide(batch, replay)
        replay.end_batch()
        timing.decision_ns.append(time.perf_counter_ns() - decided)
        timing.batch_ticks.append(len(batch))
    reports = replay.finish(int(ticks["source_ts_ns"][-1]) if len(ticks) else 0)
    timing.elapsed_s = (time.perf_counter_ns() - started) / 1e9
    risk = replay.risk
    return BacktestRun(
        ticks=ticks, reports=reports,
        risk_rejects={r.name.lower(): n for r, n in risk.reject_counts().items() if n},
        ticks_rejected={k: v for k, v in validator.rejected.items() if v}, timing=timing)


class Replay(Book):
    """The risk engine and the paper venue, brought up to each decision tick on demand.

    At every tick the venue first completes what was decided before it, then the strategy
    decides: a decision sees every fill and reject that precedes it in time, and its own
    orders fill at the next tick.
    """

    def __init__(self, risk: RiskEngine, config: PipelineConfig) -> None:
        self.risk = risk
        self._clock = _SourceClock()
        self._venue = PaperVenue(config.executor, clock_unix_ns=self._clock)
        self._reports = np.zeros(1024, dtype=REPORT_DTYPE)  # grown by doubling
        self._report_count = 0
        self._batch: np.ndarray = np.empty(0, dtype=TICK_DTYPE)
        self._fed = 0  # ticks of the batch the venue has seen
        self._priced = 0  # ticks of the batch the risk engine has seen
        self._next_order_id = 1

    def begin(self, batch: np.ndarray) -> None:
        self._batch, self._fed, self._priced = batch, 0, 0

    def until(self, position: int) -> None:
        if position < self._fed:
            return
        start, self._fed = self._fed, position + 1
        if self._venue.pending:  # else the venue has nothing to do with these ticks
            upto = self._batch[start : self._fed]
            self._clock.now_ns = int(upto["source_ts_ns"][0])  # pending orders fill at the first
            self._book(self._venue.on_ticks(upto))

    def end_batch(self) -> None:
        """Everything in the batch has happened; the risk engine knows its last prices."""
        self.until(len(self._batch) - 1)
        self._price()

    def _price(self) -> None:
        """The risk engine's price band needs the last price of each symbol: read lazily,
        once per decision rather than once per tick."""
        if self._priced < self._fed:
            self.risk.on_ticks(self._batch[self._priced : self._fed])
            self._priced = self._fed

    def position(self, symbol_id: int) -> float:
        return self.risk.position(symbol_id)

    def working(self, symbol_id: int) -> bool:
        return self.risk.working(symbol_id)

    def send(self, intents: np.ndarray) -> None:
        self._price()
        now_ns = int(self._batch["source_ts_ns"][self._fed - 1])
        accepted, _reasons = self.risk.check(intents, now_ns)
        if not len(accepted):
            return
        accepted["client_order_id"] = np.arange(
            self._next_order_id, self._next_order_id + len(accepted), dtype=np.uint64)
        self._next_order_id += len(accepted)
        accepted["decision_ns"] = now_ns
        self._clock.now_ns = now_ns
        self.risk.opened(accepted)
        self._book(self._venue.submit(accepted, now_ns))

    def finish(self, end_ns: int) -> np.ndarray:
        """Cancel what is still pending at the end of the data; every report, in order."""
        self._clock.now_ns = end_ns
        self._book(self._venue.cancel_all(RejectReason.SHUTDOWN))
        return self._reports[: self._report_count].copy()

    def _book(self, reports: np.ndarray) -> None:
        """Keep a report batch and let risk see its fills and rejects, as live."""
        n = len(reports)
        if not n:
            return
        end = self._report_count + n
        if end > len(self._reports):
            grown = np.zeros(max(2 * len(self._reports), end), dtype=REPORT_DTYPE)
            grown[: self._report_count] = self._reports[: self._report_count]
            self._reports = grown
        self._reports[self._report_count : end] = reports
        self._report_count = end
        self.risk.on_reports(reports)


class _SourceClock:
    """The venue's clock: the source time of the tick being processed."""

    def __init__(self) -> None:
        self.now_ns = 0

    def __call__(self) -> int:
        return self.now_ns
