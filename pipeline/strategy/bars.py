"""Closing prices of fixed-length time bars, found a batch of ticks at a time.

Strategy parameters count bars of ``bar_s`` seconds of source time (1-minute candles by
default), not ticks: a candle replays as four ticks, a live feed sends whatever it sends,
and an EMA of "48" should mean 48 minutes in both. A bar closes at the first tick stamped
in a later bar (only then is its last price known, live as in a backtest), so a decision on
a bar's close is taken at that tick. ``bar_s = 0`` makes every tick a bar of its own that
closes at once (the indicator then counts ticks).
"""

from __future__ import annotations

import numpy as np


class BarCloses:
    """Per batch: the closes of the bars that ended in it, and the tick that ended each."""

    def __init__(self, bar_s: float) -> None:
        if not (np.isfinite(bar_s) and bar_s >= 0):
            raise ValueError(f"bar_s must be a finite number of seconds >= 0, got {bar_s}")
        self._bar_ns = round(bar_s * 1e9)
        self._bar = -1  # bar of the last tick seen (-1: none yet)
        self._last_price = np.nan  # its price: the close if the next tick starts a new bar

    def update(self, times_ns: np.ndarray, prices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(closing prices, positions of the ticks at which those bars closed)."""
        if self._bar_ns == 0:
            return prices, np.arange(prices.size)
        if not prices.size:
            return prices, np.arange(0)
        bars = times_ns // self._bar_ns
        previous = np.empty_like(bars)
        previous[0] = self._bar
        previous[1:] = bars[:-1]
        at = np.flatnonzero(bars > previous)
        if self._bar < 0 and at.size and at[0] == 0:
            at = at[1:]  # the very first tick opens a bar; nothing closed before it
        before = np.empty(prices.size)
        before[0] = self._last_price
        before[1:] = prices[:-1]
        self._bar = max(self._bar, int(bars[-1]))
        self._last_price = float(prices[-1])
        return before[at], at

    def step(self, time_ns: int, price: float) -> float | None:
        """:meth:`update` for one tick: the close of the bar it ended, None if none."""
        if self._bar_ns == 0:
            return price
        bar, previous = time_ns // self._bar_ns, self._bar
        close = self._last_price if previous >= 0 and bar > previous else None
        self._bar = max(previous, bar)
        self._last_price = price
        return close


def hold_from(at: np.ndarray, values: np.ndarray, size: int, carried: float) -> np.ndarray:
    """Per tick, the value set at the latest of positions ``at`` (``carried`` before it)."""
    if at.size == size:
        return values
    marks = np.zeros(size, dtype=np.int64)
    marks[at] = 1
    slot = np.cumsum(marks) - 1
    return np.where(slot >= 0, np.concatenate((values, [carried]))[slot], carried)
