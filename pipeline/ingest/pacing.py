"""When each tick of a feed is due, computed from elapsed time so that pacing never drifts.

A schedule answers two questions about tick number ``i`` (counted from the feed's first
tick, across loops): how many ticks are due by a monotonic time, and the earliest time at
which a given tick is due. Feeds emit ``due_count(now) - emitted`` ticks per poll, so a
late poll catches up in one batch instead of accumulating the delay, as sleeping a fixed
period per tick would.
"""

from __future__ import annotations

import math
from typing import Final, Protocol

import numpy as np

UNBOUNDED: Final = 2**62  # due count of a schedule that releases everything at once
_NS_PER_S: Final = 1_000_000_000


class Schedule(Protocol):
    """Due times of a feed's ticks, as monotonic nanoseconds."""

    def due_count(self, now_ns: int) -> int:
        """How many ticks, from the first, are due at ``now_ns``; never decreases."""
        ...

    def due_ns(self, index: int) -> int:
        """The earliest ``now_ns`` at which tick ``index`` is due."""
        ...


class Immediate:
    """Everything is due from ``start_ns``: run as fast as the consumer takes ticks."""

    def __init__(self, start_ns: int) -> None:
        self._start_ns = start_ns

    def due_count(self, now_ns: int) -> int:
        """All ticks once ``start_ns`` is reached."""
        return UNBOUNDED if now_ns >= self._start_ns else 0

    def due_ns(self, index: int) -> int:
        """``start_ns`` for every tick."""
        return self._start_ns


class FixedRate:
    """``rate_hz`` ticks per second: tick ``i`` is due ``(i + 1) / rate_hz`` s after start.

    So at exactly one second, ``rate_hz`` ticks are due (not ``rate_hz + 1``).
    """

    def __init__(self, rate_hz: float, start_ns: int) -> None:
        if not (math.isfinite(rate_hz) and rate_hz > 0.0):
            raise ValueError(f"rate_hz must be finite and > 0, got {rate_hz}")
        self._rate_hz = rate_hz
        self._start_ns = start_ns

    def due_count(self, now_ns: int) -> int:
        """``floor(elapsed_s * rate_hz)``."""
        elapsed_ns = now_ns - self._start_ns
        if elapsed_ns <= 0:
            return 0
        return math.floor(elapsed_ns * self._rate_hz / _NS_PER_S)

    def due_ns(self, index: int) -> int:
        """Start plus ``(index + 1) / rate_hz`` seconds, exact to the nanosecond."""
        guess = self._start_ns + math.ceil((index + 1) * _NS_PER_S / self._rate_hz)
        return earliest_due_ns(self, index, guess)


class SourceTime:
    """Follow the ticks' own timestamps at ``speed`` times real time.

    ``offsets_ns`` are each tick's source time minus the first tick's (non-decreasing);
    when ``loop`` is set, pass ``k`` of the data is shifted by ``k * span_ns``.
    """

    def __init__(
        self, offsets_ns: np.ndarray, span_ns: int, loop: bool, speed: float, start_ns: int
    ) -> None:
        if not (math.isfinite(speed) and speed > 0.0):
            raise ValueError(f"speed must be finite and > 0, got {speed}")
        if len(offsets_ns) == 0 or span_ns <= int(offsets_ns[-1]):
            raise ValueError("need at least one offset and span_ns beyond the last offset")
        self._offsets_ns = offsets_ns
        self._span_ns = span_ns
        self._loop = loop
        self._speed = speed
        self._start_ns = start_ns

    def due_count(self, now_ns: int) -> int:
        """Ticks whose (shifted) source offset is within ``elapsed * speed``."""
        if now_ns < self._start_ns:
            return 0
        source_elapsed_ns = math.floor((now_ns - self._start_ns) * self._speed)
        passes = 0
        if self._loop:
            passes, source_elapsed_ns = divmod(source_elapsed_ns, self._span_ns)
        within = int(np.searchsorted(self._offsets_ns, source_elapsed_ns, side="right"))
        return passes * len(self._offsets_ns) + within

    def due_ns(self, index: int) -> int:
        """Start plus the tick's shifted source offset divided by ``speed``."""
        passes, position = divmod(index, len(self._offsets_ns))
        if passes and not self._loop:
            raise IndexError(f"tick {index} is beyond the data and loop is off")
        source_ns = passes * self._span_ns + int(self._offsets_ns[position])
        guess = self._start_ns + math.ceil(source_ns / self._speed)
        return earliest_due_ns(self, index, guess)


def earliest_due_ns(schedule: Schedule, index: int, guess_ns: int) -> int:
    """Correct a float-rounded guess to the exact first nanosecond at which ``index`` is due.

    Float rounding can put the closed-form answer a nanosecond or two off either way; a
    caller sleeping until a time at which nothing is due yet would spin, so verify.
    """
    due_ns = guess_ns
    while schedule.due_count(due_ns) <= index:
        due_ns += 1
    while schedule.due_count(due_ns - 1) > index:
        due_ns -= 1
    return due_ns
