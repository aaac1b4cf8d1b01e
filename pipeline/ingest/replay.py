"""Replay a recorded tick array, paced by rate, by source time, or as fast as possible."""

from __future__ import annotations

import numpy as np

from pipeline.errors import BadInputError
from pipeline.ingest.pacing import FixedRate, Immediate, Schedule, SourceTime
from pipeline.records import TICK_DTYPE


class ReplayFeed:
    """A :class:`~pipeline.ingest.feed.Feed` over a precomputed tick array.

    Pacing, in order of precedence: ``speed`` > 0 follows the source timestamps at
    ``speed`` times real time; ``rate_hz`` > 0 releases that many ticks per second;
    otherwise every tick is due at once and each poll returns up to ``max_ticks``.

    With ``loop`` the data repeats forever. Each pass is shifted forward by the data's span
    (last minus first timestamp, plus the mean spacing) so that source timestamps keep
    increasing across the seam, as a consumer checking for stale or reordered ticks expects.
    """

    def __init__(
        self,
        ticks: np.ndarray,
        rate_hz: float | None,
        loop: bool,
        start_ns: int,
        speed: float = 0.0,
    ) -> None:
        if ticks.dtype != TICK_DTYPE or ticks.ndim != 1 or len(ticks) == 0:
            raise BadInputError("replay needs a non-empty 1-D TICK_DTYPE array")
        source_ns = ticks["source_ts_ns"]
        if np.any(np.diff(source_ns) < 0):
            raise BadInputError("replay ticks must be in source-time order")
        self._ticks = ticks.copy()
        self._ticks["seq"] = 0  # stamped by the ingest process, never taken from a file
        self._ticks["ingest_ns"] = 0
        offsets_ns = source_ns - source_ns[0]
        data_ns = int(offsets_ns[-1])
        mean_gap_ns = data_ns // (len(ticks) - 1) if len(ticks) > 1 else 0
        self._span_ns = data_ns + max(mean_gap_ns, 1)
        self._loop = loop
        self._emitted = 0
        self._schedule: Schedule
        if speed > 0.0:
            self._schedule = SourceTime(offsets_ns, self._span_ns, loop, speed, start_ns)
        elif rate_hz:
            self._schedule = FixedRate(rate_hz, start_ns)
        else:
            self._schedule = Immediate(start_ns)

    @property
    def span_ns(self) -> int:
        """How far each loop pass shifts source timestamps."""
        return self._span_ns

    @property
    def emitted(self) -> int:
        """Ticks returned by :meth:`poll` so far, across loops."""
        return self._emitted

    @property
    def exhausted(self) -> bool:
        """True once every tick was returned and ``loop`` is off."""
        return not self._loop and self._emitted >= len(self._ticks)

    def poll(self, now_ns: int, max_ticks: int) -> np.ndarray:
        """The next ticks due by ``now_ns``, at most ``max_ticks``, in order."""
        due = self._schedule.due_count(now_ns)
        if not self._loop:
            due = min(due, len(self._ticks))
        end = min(due, self._emitted + max_ticks)
        if end <= self._emitted:
            return np.empty(0, dtype=TICK_DTYPE)
        passes, positions = np.divmod(np.arange(self._emitted, end), len(self._ticks))
        out = self._ticks[positions]
        out["source_ts_ns"] += passes * self._span_ns
        self._emitted = end
        return out

    def next_due_ns(self) -> int | None:
        """When the next tick is due (monotonic ns), or None once exhausted."""
        if self.exhausted:
            return None
        return self._schedule.due_ns(self._emitted)
