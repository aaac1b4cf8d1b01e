"""Run the live strategy, risk and paper-fill code over recorded ticks, fast and repeatably.

The same objects the processes use (validator, :func:`load_strategy`, :class:`RiskEngine`,
:class:`PaperVenue`) see the ticks in the same order with the same rules:

- the strategy gets large batches (its contract: results do not depend on batching);
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
from pipeline.records import REPORT_DTYPE, RejectReason
from pipeline.strategy.loader import load_strategy
from pipeline.strategy.risk import RiskEngine

BATCH_TICKS = 4096


@dataclass
class Timing:
    """Measured on this machine; not part of the deterministic result."""

    elapsed_s: float = 0.0
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
    validator = TickValidator(config.ingest.validation, [s.id for s in config.symbols],
                              check_age=False)
    ticks = validator.validate(ticks.copy())
    ticks["seq"] = np.arange(len(ticks), dtype=np.uint64)
    ticks["ingest_ns"] = ticks["source_ts_ns"]
    strategy = load_strategy(config.strategy)
    risk = RiskEngine(config.risk)
    strategy.bind_exposure(risk.position)
    clock = _SourceClock()
    venue = PaperVenue(config.executor, clock_unix_ns=clock)
    reports: list[np.ndarray] = []

    def book(batch: np.ndarray) -> None:
        """Keep a report batch and let risk see its fills and rejects, as live."""
        reports.append(batch)
        risk.on_reports(batch)

    timing = Timing()
    next_order_id = 1
    started = time.perf_counter_ns()
    for start in range(0, len(ticks), batch_ticks):
        batch = ticks[start : start + batch_ticks]
        decided = time.perf_counter_ns()
        intents = strategy.on_ticks(batch)
        timing.decision_ns.append(time.perf_counter_ns() - decided)
        timing.batch_ticks.append(len(batch))
        fed = 0  # ticks of this batch the risk engine and the venue have seen
        if len(intents):
            at = (intents["tick_seq"] - np.uint64(start)).astype(np.int64)
            order = np.argsort(at, kind="stable")
            intents, at = intents[order], at[order]
            bounds = np.flatnonzero(np.diff(at)) + 1
            for group in np.split(np.arange(len(at)), bounds):
                k = int(at[group[0]])
                upto = batch[fed : k + 1]
                risk.on_ticks(upto)
                book(_fill(venue, clock, upto))
                fed = k + 1
                now_ns = int(batch["source_ts_ns"][k])
                accepted, _reasons = risk.check(intents[group], now_ns)
                if len(accepted):
                    accepted["client_order_id"] = np.arange(
                        next_order_id, next_order_id + len(accepted), dtype=np.uint64)
                    next_order_id += len(accepted)
                    accepted["decision_ns"] = now_ns
                    clock.now_ns = now_ns
                    risk.opened(accepted)
                    book(venue.submit(accepted, now_ns))
        rest = batch[fed:]
        risk.on_ticks(rest)
        book(_fill(venue, clock, rest))
    clock.now_ns = int(ticks["source_ts_ns"][-1]) if len(ticks) else 0
    book(venue.cancel_all(RejectReason.SHUTDOWN))
    timing.elapsed_s = (time.perf_counter_ns() - started) / 1e9
    merged = np.concatenate(reports) if reports else np.empty(0, dtype=REPORT_DTYPE)
    return BacktestRun(
        ticks=ticks, reports=merged,
        risk_rejects={r.name.lower(): n for r, n in risk.reject_counts().items() if n},
        ticks_rejected={k: v for k, v in validator.rejected.items() if v}, timing=timing)


class _SourceClock:
    """The venue's clock: the source time of the tick being processed."""

    def __init__(self) -> None:
        self.now_ns = 0

    def __call__(self) -> int:
        return self.now_ns


def _fill(venue: PaperVenue, clock: _SourceClock, ticks: np.ndarray) -> np.ndarray:
    if len(ticks):
        clock.now_ns = int(ticks["source_ts_ns"][0])  # pending orders fill at the first
    return venue.on_ticks(ticks)
