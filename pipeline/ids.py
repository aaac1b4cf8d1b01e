"""Client order ids: unique across restarts without any shared state.

An id is ``(start_ms << 22) | counter``: the strategy incarnation's start time in Unix
milliseconds (42 bits, good until the year 2109) and a counter of 22 bits (4,194,304 orders
per incarnation, after which a new start time is taken). Two incarnations would have to
start in the same millisecond to collide; ``start_ms`` is forced past the previous one.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

COUNTER_BITS = 22
_COUNTER_LIMIT = 1 << COUNTER_BITS


class ClientOrderIds:
    """Hands out blocks of fresh ids as a numpy array."""

    def __init__(self, clock_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000) -> None:
        self._clock_ms = clock_ms
        self._start_ms = clock_ms()
        self._next = 0

    def take(self, count: int) -> np.ndarray:
        if self._next + count > _COUNTER_LIMIT:
            self._start_ms = max(self._clock_ms(), self._start_ms + 1)
            self._next = 0
        base = (self._start_ms << COUNTER_BITS) + self._next
        self._next += count
        return np.arange(base, base + count, dtype=np.uint64)
