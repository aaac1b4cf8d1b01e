"""Tick validation: the last gate before a tick enters the tick ring.

A bad price that reaches the strategy becomes an order, so every tick is checked against
what a real market can print (see :class:`~pipeline.ingest.source_config.ValidationConfig`
for the rules). Rejected ticks are dropped and flagged ticks pass with
:attr:`~pipeline.records.TickFlag.SUSPECT`; both are counted by reason and logged once per
burst. Nothing here raises on bad data: a feed must outlive any print.

The rules depend on the ticks accepted before (the last price, the symbol's clock, the
length of a flat run), yet a large batch is judged by arrays with exactly the per-tick
answers: see :class:`TickValidator`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import numpy as np

from pipeline.ingest.source_config import ValidationConfig
from pipeline.records import SourceId, TickFlag

if TYPE_CHECKING:
    from pipeline.config import PipelineConfig
    from pipeline.metrics import IngestMetrics

REJECT_REASONS: Final = ("not_finite", "not_positive", "unknown_symbol", "duplicate",
                         "out_of_order", "stale", "jump", "halt")
FLAG_REASONS: Final = ("gap", "reanchor")
# Sources whose ``size`` is traded volume; the others leave it 0, so a "flat zero-volume
# run" means nothing for them.
VOLUME_SOURCES: Final = frozenset({int(SourceId.REPLAY)})
_SUSPECT: Final = int(TickFlag.SUSPECT)
_NS_PER_S: Final = 1_000_000_000
_CODE: Final = {reason: code for code, reason in enumerate(REJECT_REASONS, start=1)}
_INT64_MAX: Final = 2**63 - 1
# Up to this many ticks a batch is judged tick by tick on Python scalars (cheaper than the
# fixed cost of a dozen array operations); larger batches go by array.
SCALAR_MAX_TICKS: Final = 32

CountFn = Callable[[str, str, int], None]  # (rejected | flagged, reason, count)


@dataclass
class _SymbolState:
    last_ts_ns: int = -1  # source times are Unix epoch ns, so > 0
    last_price: float = math.nan
    jump_rejects: int = 0
    flat_run: int = 0


class BurstLog:
    """Log the first occurrence of each reason, then stay quiet until it stops for a while.

    A feed printing garbage does so thousands of times a minute; one line per burst (with
    the count suppressed since the previous line) keeps the log readable and the disk safe.
    """

    def __init__(self, log: logging.Logger, quiet_s: float,
                 clock_s: Callable[[], float] = time.monotonic) -> None:
        self._log = log
        self._quiet_s = quiet_s
        self._clock_s = clock_s
        self._last_seen: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def note(self, kind: str, reason: str, count: int, example: str) -> None:
        """Record ``count`` events of ``reason``; log if this starts a new burst."""
        now = self._clock_s()
        key = f"{kind}.{reason}"
        last = self._last_seen.get(key)
        self._last_seen[key] = now
        if last is not None and now - last < self._quiet_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + count
            return
        suppressed = self._suppressed.pop(key, 0)
        self._log.warning("tick %s (%s): %d now, %d in the previous burst; e.g. %s", kind,
                          reason, count, suppressed, example,
                          extra={"event": f"ingest.tick_{kind}", "reason": reason,
                                 "count": count, "previous_burst": suppressed})


class TickValidator:
    """Checks batches of TICK_DTYPE ticks; keeps per-symbol state between batches.

    A batch of a few ticks (the live path) is checked tick by tick on plain floats. A large
    batch (a backtest, a replay) is checked with whole-array comparisons of each tick
    against the one before it, which is exact while every tick is accepted; the rare tick
    that breaks that chain (out of order, stale, a jump) is judged alone against the
    symbol's state, and the next stretch continues from there. Flat zero-volume runs and
    gaps are counted inside a stretch, so they do not leave the array path.
    """

    def __init__(self, config: ValidationConfig, symbols: Iterable[int], *, check_age: bool,
                 log: BurstLog | None = None, on_count: CountFn | None = None,
                 unix_clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._config = config
        self._known = np.array(sorted(set(symbols)), dtype=np.uint32)
        self._check_age = check_age
        self._log = log
        self._on_count = on_count
        self._unix_clock_ns = unix_clock_ns
        self._states: dict[int, _SymbolState] = {int(s): _SymbolState() for s in self._known}
        self.rejected: dict[str, int] = dict.fromkeys(REJECT_REASONS, 0)
        self.flagged: dict[str, int] = dict.fromkeys(FLAG_REASONS, 0)

    def validate(self, ticks: np.ndarray) -> np.ndarray:
        """The accepted ticks of ``ticks``, in order, with SUSPECT set where flagged."""
        if not self._config.enabled or len(ticks) == 0:
            return ticks
        now_ns = self._unix_clock_ns()
        verdict = _Verdict(len(ticks))
        if len(ticks) <= SCALAR_MAX_TICKS:
            self._judge_each(ticks, now_ns, verdict)
        else:
            self._judge_arrays(ticks, now_ns, verdict)
        suspect = verdict.gap | verdict.reanchor
        if not verdict.code.any() and not suspect.any():
            return ticks
        self._account("rejected", verdict.rejects(), ticks, self.rejected)
        self._account("flagged", verdict.flags(), ticks, self.flagged)
        keep = verdict.code == 0
        out: np.ndarray = ticks[keep]
        flagged = np.flatnonzero(suspect[keep])
        out["flags"][flagged] |= np.uint16(_SUSPECT)
        return out

    def _judge_each(self, ticks: np.ndarray, now_ns: int, verdict: _Verdict) -> None:
        """Tick by tick on Python scalars: cheapest for the live path's tiny batches."""
        rows = zip(ticks["symbol_id"].tolist(), ticks["source_ts_ns"].tolist(),
                   ticks["price"].tolist(), ticks["size"].tolist(),
                   ticks["source_id"].tolist(), strict=True)
        for i, (symbol, ts, price, size, source) in enumerate(rows):
            if not (math.isfinite(price) and math.isfinite(size)):
                verdict.code[i] = _CODE["not_finite"]
            elif price <= 0.0 or size < 0.0:
                verdict.code[i] = _CODE["not_positive"]
            elif (state := self._states.get(symbol)) is None:
                verdict.code[i] = _CODE["unknown_symbol"]
            else:
                self._step(state, (ts, price, size, source in VOLUME_SOURCES), i, now_ns,
                           verdict)

    def _step(self, state: _SymbolState, tick: tuple[int, float, float, bool], i: int,
              now_ns: int, verdict: _Verdict) -> bool:
        """Judge tick ``i`` (source time, price, size, has volume), finite and positive, of a
        known symbol. True if it became the symbol's reference: accepted, or rejected as a
        halt (which moves the symbol's clock, at an unchanged price)."""
        config = self._config
        ts, price, size, volume_source = tick
        if ts == state.last_ts_ns:
            verdict.code[i] = _CODE["duplicate"]
            return False
        if ts < state.last_ts_ns:
            verdict.code[i] = _CODE["out_of_order"]
            return False
        if self._check_age and now_ns - ts > config.max_age_s * _NS_PER_S:
            verdict.code[i] = _CODE["stale"]
            return False
        last = state.last_price
        if math.isfinite(last) and abs(price / last - 1.0) * 100.0 > config.max_jump_pct:
            state.jump_rejects += 1
            if state.jump_rejects < config.jump_reanchor_ticks:
                verdict.code[i] = _CODE["jump"]
                return False
            verdict.reanchor[i] = True
        flat = volume_source and size == 0.0 and price == last
        state.flat_run = state.flat_run + 1 if flat else 0
        if state.flat_run >= config.halt_flat_ticks:
            state.last_ts_ns = ts  # a halted market's clock still runs
            verdict.code[i] = _CODE["halt"]
            return True
        if state.last_ts_ns >= 0 and ts - state.last_ts_ns > config.max_gap_s * _NS_PER_S:
            verdict.gap[i] = True
        state.last_ts_ns = ts
        state.last_price = price
        state.jump_rejects = 0
        return True

    def _judge_arrays(self, ticks: np.ndarray, now_ns: int, verdict: _Verdict) -> None:
        """Large batches: impossible values by array, then each symbol's ticks in stretches."""
        price = np.ascontiguousarray(ticks["price"])
        size = np.ascontiguousarray(ticks["size"])
        symbols = ticks["symbol_id"]
        finite = np.isfinite(price) & np.isfinite(size)
        possible = finite & (price > 0.0) & (size >= 0.0)
        if not possible.all():
            verdict.code[~finite] = _CODE["not_finite"]
            verdict.code[finite & ~possible] = _CODE["not_positive"]
        first = int(symbols[0])
        one_symbol = bool((symbols == first).all())
        for symbol in [first] if one_symbol else np.unique(symbols).tolist():
            mine = possible if one_symbol else possible & (symbols == symbol)
            rows = np.flatnonzero(mine)
            state = self._states.get(symbol)
            if state is None:
                verdict.code[rows] = _CODE["unknown_symbol"]
            elif len(rows) == len(ticks):
                self._judge_symbol(state, _Stream(ticks, price, size), rows, now_ns, verdict)
            elif len(rows):
                stream = _Stream(ticks[rows], price[rows], size[rows])
                self._judge_symbol(state, stream, rows, now_ns, verdict)

    def _judge_symbol(self, state: _SymbolState, stream: _Stream, rows: np.ndarray,
                      now_ns: int, verdict: _Verdict) -> None:
        """One symbol's finite, positive ticks (``rows`` are their places in the batch)."""
        config = self._config
        ts, price, size, volume = stream.ts, stream.price, stream.size, stream.volume
        # Each tick against the one before it: what the rules see if that one was accepted.
        with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
            moves = price[1:] / price[:-1]
            moves -= 1.0
            np.abs(moves, out=moves)
            moves *= 100.0
            steps = ts[1:] - ts[:-1]  # may wrap only where ts[:-1] < 0: never a reference
        # No age test: a tick later than an accepted (so not stale) one is not stale either.
        chain_breaks = moves > config.max_jump_pct
        chain_breaks |= steps <= 0
        gap = np.empty(len(ts), dtype=bool)
        gap[0] = False
        np.greater(steps, _int_floor(config.max_gap_s * _NS_PER_S), out=gap[1:])
        flat = np.zeros(len(ts), dtype=bool)
        if volume.any():
            flat[1:] = volume[1:] & (size[1:] == 0.0) & (price[1:] == price[:-1])
        breaks = np.flatnonzero(chain_breaks) + 1
        pos, n = 0, len(ts)
        while pos < n:
            tick = (int(ts[pos]), float(price[pos]), float(size[pos]), bool(volume[pos]))
            chained = self._step(state, tick, int(rows[pos]), now_ns, verdict)
            pos += 1
            if not chained or pos == n:
                continue
            k = int(np.searchsorted(breaks, pos))
            end = int(breaks[k]) if k < len(breaks) else n
            if end > pos:
                self._stretch(state, rows[pos:end], flat[pos:end], gap[pos:end], verdict)
                state.last_ts_ns = int(ts[end - 1])
                state.last_price = float(price[end - 1])  # a halted tick's equals the last
                pos = end

    def _stretch(self, state: _SymbolState, rows: np.ndarray, flat: np.ndarray,
                 gap: np.ndarray, verdict: _Verdict) -> None:
        """Ticks each accepted or halted after the one before: flat runs and gaps by array."""
        if not flat.any():  # the usual stretch: every tick accepted
            verdict.gap[rows[gap]] = True
            state.jump_rejects = 0
            state.flat_run = 0
            return
        index = np.arange(len(flat))
        last_plain = np.maximum.accumulate(np.where(flat, -1, index))
        run = np.where(last_plain < 0, index + 1 + state.flat_run, index - last_plain)
        halted = run >= self._config.halt_flat_ticks
        verdict.code[rows[halted]] = _CODE["halt"]
        verdict.gap[rows[gap & ~halted]] = True
        if not halted.all():
            state.jump_rejects = 0
        state.flat_run = int(run[-1])

    def _account(self, kind: str, found: dict[str, np.ndarray], ticks: np.ndarray,
                 totals: dict[str, int]) -> None:
        for reason, rows in found.items():
            totals[reason] += len(rows)
            if self._on_count is not None:
                self._on_count(kind, reason, len(rows))
            if self._log is not None:
                tick = ticks[rows[0]]
                example = (f"symbol {int(tick['symbol_id'])} source {int(tick['source_id'])} "
                           f"price {float(tick['price'])!r} size {float(tick['size'])!r} "
                           f"source_ts_ns {int(tick['source_ts_ns'])}")
                self._log.note(kind, reason, len(rows), example)


class _Stream:
    """One symbol's candidate ticks as contiguous columns."""

    def __init__(self, ticks: np.ndarray, price: np.ndarray, size: np.ndarray) -> None:
        self.ts = np.ascontiguousarray(ticks["source_ts_ns"])
        self.price = price
        self.size = size
        sources = ticks["source_id"]
        self.volume = np.zeros(len(ticks), dtype=bool)
        for source in VOLUME_SOURCES:
            self.volume |= sources == source


class _Verdict:
    """Per tick of one batch: the reject reason's code (0 = kept) and the two flags."""

    def __init__(self, n: int) -> None:
        self.code = np.zeros(n, dtype=np.int8)
        self.gap = np.zeros(n, dtype=bool)
        self.reanchor = np.zeros(n, dtype=bool)

    def rejects(self) -> dict[str, np.ndarray]:
        """Rows of each reject reason, reasons in order of their first row (as logged)."""
        rows = np.flatnonzero(self.code)
        codes = self.code[rows]
        found = {reason: rows[codes == code] for reason, code in _CODE.items()}
        found = {reason: rows for reason, rows in found.items() if len(rows)}
        return dict(sorted(found.items(), key=lambda item: int(item[1][0])))

    def flags(self) -> dict[str, np.ndarray]:
        """Rows of each flag reason, in order of their first row (a tick's reanchor first)."""
        found = {reason: np.flatnonzero(rows) for reason, rows in
                 (("reanchor", self.reanchor), ("gap", self.gap)) if rows.any()}
        return dict(sorted(found.items(), key=lambda item: int(item[1][0])))


def _int_floor(limit: float) -> int:
    """An integer ``x`` with ``d > limit`` iff ``d > x`` for every int64 ``d``."""
    return int(min(math.floor(limit), _INT64_MAX)) if math.isfinite(limit) else _INT64_MAX


def make_validator(config: PipelineConfig, log: logging.Logger,
                   metrics: IngestMetrics) -> TickValidator:
    """The ingest process's validator: counts into ``metrics``, logs once per burst.

    Only live feeds are judged for age: replayed and synthetic ticks are dated in the past
    or on their own clock by design.
    """
    from pipeline.ingest.config import LIVE_FEEDS

    ingest = config.ingest

    def count(kind: str, reason: str, n: int) -> None:
        counter = metrics.rejected if kind == "rejected" else metrics.flagged
        counter.labels(reason).inc(n)

    return TickValidator(ingest.validation, [s.id for s in config.symbols],
                         check_age=ingest.feed in LIVE_FEEDS,
                         log=BurstLog(log, ingest.validation.log_quiet_s), on_count=count)
