"""Tick validation: the last gate before a tick enters the tick ring.

A bad price that reaches the strategy becomes an order, so every tick is checked against
what a real market can print (see :class:`~pipeline.ingest.source_config.ValidationConfig`
for the rules). Rejected ticks are dropped and flagged ticks pass with
:attr:`~pipeline.records.TickFlag.SUSPECT`; both are counted by reason and logged once per
burst. Nothing here raises on bad data: a feed must outlive any print.

Clean batches (the usual case) are checked with a few vectorised comparisons; only a batch
with something to reject or flag takes the per-tick path, whose rules depend on the ticks
accepted before it.
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
    """Checks batches of TICK_DTYPE ticks; keeps per-symbol state between batches."""

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
        if self._clean(ticks, now_ns):
            return ticks
        return self._slow(ticks, now_ns)

    def _clean(self, ticks: np.ndarray, now_ns: int) -> bool:
        """True (and state advanced) if no tick of a one-symbol batch breaks or bends a rule."""
        symbols = ticks["symbol_id"]
        symbol = int(symbols[0])
        state = self._states.get(symbol)
        if state is None or not (symbols == symbol).all():
            return False
        price, size, ts = ticks["price"], ticks["size"], ticks["source_ts_ns"]
        if not (np.isfinite(price).all() and np.isfinite(size).all()):
            return False
        if not ((price > 0.0).all() and (size >= 0.0).all()):
            return False
        previous_ts = np.concatenate(([state.last_ts_ns], ts[:-1]))
        gaps = ts - previous_ts
        if state.last_ts_ns < 0:
            gaps[0] = 1  # the symbol's first tick: no gap to judge
        if not (gaps > 0).all() or (gaps > self._config.max_gap_s * _NS_PER_S).any():
            return False
        if self._check_age and now_ns - int(ts.min()) > self._config.max_age_s * _NS_PER_S:
            return False
        previous = np.concatenate(([state.last_price], price[:-1]))
        with np.errstate(invalid="ignore"):
            moves = np.abs(price / previous - 1.0) * 100.0
        if (moves[1:] > self._config.max_jump_pct).any() or moves[0] > self._config.max_jump_pct:
            return False
        if int(ticks["source_id"][0]) in VOLUME_SOURCES and (
            ((size == 0.0) & (price == previous)).any()
        ):
            return False
        state.last_ts_ns = int(ts[-1])
        state.last_price = float(price[-1])
        state.jump_rejects = 0
        state.flat_run = 0
        return True

    def _slow(self, ticks: np.ndarray, now_ns: int) -> np.ndarray:
        """Per-tick checks; see the class config for the rules."""
        config = self._config
        keep = np.zeros(len(ticks), dtype=bool)
        suspect = np.zeros(len(ticks), dtype=bool)
        rejects: dict[str, list[int]] = {}
        flags: dict[str, list[int]] = {}
        max_age_ns = config.max_age_s * _NS_PER_S
        max_gap_ns = config.max_gap_s * _NS_PER_S
        rows = zip(ticks["symbol_id"].tolist(), ticks["source_ts_ns"].tolist(),
                   ticks["price"].tolist(), ticks["size"].tolist(),
                   ticks["source_id"].tolist(), strict=True)
        for i, (symbol, ts, price, size, source) in enumerate(rows):
            reason = ""
            state = self._states.get(symbol)
            if not (math.isfinite(price) and math.isfinite(size)):
                reason = "not_finite"
            elif price <= 0.0 or size < 0.0:
                reason = "not_positive"
            elif state is None:
                reason = "unknown_symbol"
            elif ts == state.last_ts_ns:
                reason = "duplicate"
            elif ts < state.last_ts_ns:
                reason = "out_of_order"
            elif self._check_age and now_ns - ts > max_age_ns:
                reason = "stale"
            if reason or state is None:
                rejects.setdefault(reason, []).append(i)
                continue
            last = state.last_price
            if math.isfinite(last) and abs(price / last - 1.0) * 100.0 > config.max_jump_pct:
                state.jump_rejects += 1
                if state.jump_rejects < config.jump_reanchor_ticks:
                    rejects.setdefault("jump", []).append(i)
                    continue
                flags.setdefault("reanchor", []).append(i)
                suspect[i] = True
            flat = source in VOLUME_SOURCES and size == 0.0 and price == last
            state.flat_run = state.flat_run + 1 if flat else 0
            if state.flat_run >= config.halt_flat_ticks:
                state.last_ts_ns = ts  # a halted market's clock still runs
                rejects.setdefault("halt", []).append(i)
                continue
            if state.last_ts_ns >= 0 and ts - state.last_ts_ns > max_gap_ns:
                flags.setdefault("gap", []).append(i)
                suspect[i] = True
            keep[i] = True
            state.last_ts_ns = ts
            state.last_price = price
            state.jump_rejects = 0
        self._account("rejected", rejects, ticks, self.rejected)
        self._account("flagged", flags, ticks, self.flagged)
        out = ticks[keep]
        out["flags"] |= np.where(suspect[keep], _SUSPECT, 0).astype(np.uint16)
        return out

    def _account(self, kind: str, found: dict[str, list[int]], ticks: np.ndarray,
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
