"""Client order ids: unique across restarts and across hosts, without any shared state.

An id is 64 bits, most significant first::

    bit  63      0   the sign bit of SQLite INTEGER / PostgreSQL BIGINT: ids stay positive
    bit  62      0   the layout bit: every id of the first layout has it set (below)
    bits 61..21  start: the incarnation's start, milliseconds since 2026-01-01 UTC (41 bits)
    bits 20..11  shard: the shard id (10 bits, 0..1023)
    bits 10..0   counter within that start millisecond (11 bits, 2,048 ids)

Why these widths. The start is the time-ordered part (as in a Snowflake id), so ids of one
shard increase with time and ids of all shards sort roughly by time; from a 2026 epoch its
41 bits last until 2095-09. 1,024 shards is far more than the markets a few hosts trade. The
counter needs only to outrun the order rate: when it runs out the start is moved to
``max(now, start + 1)``, so at 2,048 ids per millisecond (2 million a second, against a risk
limit of tens a second) the start never runs ahead of the clock. That is what keeps ids unique
across restarts without shared state: a restarted process (which takes far longer than a
millisecond to start) reads a clock later than any start its previous incarnation used. A
clock stepped back across a restart is not covered, as it never was; the clock gate halts
trading on a clock that is off.

Hosts: two hosts started in the same millisecond differ in the shard bits, which the config
keeps unique (:mod:`pipeline.cluster`), so their ids never meet.

The first layout: ``start_ms << 22 | counter`` with a Unix-epoch start and a 22-bit counter.
Its ids are at least ``2**40 << 22 = 2**62`` for any start after 2004-11-03 (and a start after
2039-09-07 would not fit 63 bits), so every id it wrote into an existing database has bit 62
set; every id of this layout has it clear. The two can never be equal, and :func:`shard_of`
refuses an id of the first layout rather than invent a shard for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

import numpy as np

from pipeline.errors import OperationalError

COUNTER_BITS: Final = 11
SHARD_BITS: Final = 10
START_BITS: Final = 41
SHARD_LIMIT: Final = 1 << SHARD_BITS  # shard ids are 0 .. SHARD_LIMIT - 1
EPOCH_MS: Final = 1_767_225_600_000  # 2026-01-01T00:00:00Z
FIRST_LAYOUT_MIN: Final = 1 << 62  # every id of the first layout is at least this
_COUNTER_LIMIT: Final = 1 << COUNTER_BITS
_START_LIMIT: Final = 1 << START_BITS
_SHARD_SHIFT: Final = COUNTER_BITS
_START_SHIFT: Final = COUNTER_BITS + SHARD_BITS


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def shard_of(client_order_id: int) -> int:
    """The shard inside an id of this layout; ValueError for one of the first layout."""
    if not 0 <= client_order_id < FIRST_LAYOUT_MIN:
        raise ValueError(f"client order id {client_order_id} has no shard inside: it is not "
                         f"of the sharded layout (0 <= id < 2**62)")
    return (client_order_id >> _SHARD_SHIFT) & (SHARD_LIMIT - 1)


class ClientOrderIds:
    """Hands out blocks of fresh ids of one shard as a numpy array, increasing."""

    def __init__(self, shard_id: int, clock_ms: Callable[[], int] = _wall_ms) -> None:
        if not 0 <= shard_id < SHARD_LIMIT:
            raise ValueError(f"shard id {shard_id} does not fit {SHARD_BITS} bits "
                             f"(0..{SHARD_LIMIT - 1})")
        self._clock_ms = clock_ms
        self._shard_bits = shard_id << _SHARD_SHIFT
        self._start = _start_of(clock_ms())
        self._next = 0

    def take(self, count: int) -> np.ndarray:
        """``count`` ids never handed out before, each above the ones before it."""
        if not 0 <= count <= _COUNTER_LIMIT - self._next:
            return self._take_from_new_starts(count)
        base = (self._start << _START_SHIFT) | self._shard_bits | self._next
        self._next += count
        return np.arange(base, base + count, dtype=np.uint64)

    def _take_from_new_starts(self, count: int) -> np.ndarray:
        """The counter ran out: move the start on. A take that fits one start's counter
        stays one contiguous block; a larger one fills the current start, then new ones."""
        if count < 0:
            raise ValueError(f"cannot take {count} ids")
        if count <= _COUNTER_LIMIT:
            self._new_start()
            return self.take(count)
        blocks = []
        while count:
            if self._next == _COUNTER_LIMIT:
                self._new_start()
            size = min(count, _COUNTER_LIMIT - self._next)
            blocks.append(self.take(size))
            count -= size
        return np.concatenate(blocks)

    def _new_start(self) -> None:
        """Past the last start even if the clock did not move (or went back)."""
        self._start = max(self._clock_ms() - EPOCH_MS, self._start + 1)
        if self._start >= _START_LIMIT:
            raise OperationalError("client order ids ran out of start times (past 2095-09): "
                                   "a new id layout is needed")
        self._next = 0


def _start_of(wall_ms: int) -> int:
    """Milliseconds since :data:`EPOCH_MS`; a clock outside the layout's range is refused."""
    start = wall_ms - EPOCH_MS
    if not 0 <= start < _START_LIMIT:
        raise OperationalError(f"the host clock reads {wall_ms} ms since 1970: client order "
                               "ids need a clock between 2026-01-01 and 2095-09-07 UTC (fix "
                               "the clock)")
    return start
