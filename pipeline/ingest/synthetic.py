"""A seeded geometric random walk, for load tests and runs without recorded data."""

from __future__ import annotations

import math
from typing import Final

import numpy as np

from pipeline.ingest.pacing import FixedRate, Immediate, Schedule
from pipeline.records import TICK_DTYPE, SourceId, TickFlag

CHUNK_TICKS: Final = 4096  # generated at a time; fixed so the walk never depends on polling
UNPACED_SPACING_NS: Final = 1_000_000  # source-time step when rate_hz is 0
_NS_PER_S: Final = 1_000_000_000
_BPS: Final = 1e-4


class SyntheticFeed:
    """A never-ending :class:`~pipeline.ingest.feed.Feed` of random-walk ticks.

    Each tick's log return is normal with standard deviation ``volatility_bps`` basis
    points; sizes are exponential with a mean of 1 base unit. The walk depends only on
    ``seed`` (and ``start_price``): it is generated in fixed chunks of
    :data:`CHUNK_TICKS`, so how the consumer polls does not change the prices.
    Source timestamps start at ``source_start_unix_ns`` and step by ``1 / rate_hz``
    (1 ms when unpaced); pacing is the same as replay's rate pacing.
    """

    def __init__(
        self,
        seed: int,
        start_price: float,
        volatility_bps: float,
        rate_hz: float | None,
        symbol_id: int,
        *,
        start_ns: int = 0,
        source_start_unix_ns: int = 0,
    ) -> None:
        if not (math.isfinite(start_price) and start_price > 0.0):
            raise ValueError(f"start_price must be finite and > 0, got {start_price}")
        if not (math.isfinite(volatility_bps) and volatility_bps >= 0.0):
            raise ValueError(f"volatility_bps must be finite and >= 0, got {volatility_bps}")
        self._rng = np.random.default_rng(seed)
        self._price = start_price
        self._sigma = volatility_bps * _BPS
        self._symbol_id = symbol_id
        self._source_start_ns = source_start_unix_ns
        self._spacing_ns = round(_NS_PER_S / rate_hz) if rate_hz else UNPACED_SPACING_NS
        self._schedule: Schedule = FixedRate(rate_hz, start_ns) if rate_hz else Immediate(start_ns)
        self._chunk = np.empty(0, dtype=TICK_DTYPE)
        self._chunk_pos = 0
        self._generated = 0
        self._emitted = 0

    @property
    def emitted(self) -> int:
        """Ticks returned by :meth:`poll` so far."""
        return self._emitted

    @property
    def exhausted(self) -> bool:
        """Always False: the walk never ends."""
        return False

    def poll(self, now_ns: int, max_ticks: int) -> np.ndarray:
        """The next ticks due by ``now_ns``, at most ``max_ticks``."""
        wanted = min(self._schedule.due_count(now_ns) - self._emitted, max_ticks)
        pieces = []
        while wanted > 0:
            if self._chunk_pos == len(self._chunk):
                self._chunk = self._next_chunk()
                self._chunk_pos = 0
            take = min(wanted, len(self._chunk) - self._chunk_pos)
            pieces.append(self._chunk[self._chunk_pos : self._chunk_pos + take])
            self._chunk_pos += take
            wanted -= take
        if not pieces:
            return np.empty(0, dtype=TICK_DTYPE)
        out = pieces[0].copy() if len(pieces) == 1 else np.concatenate(pieces)
        self._emitted += len(out)
        return out

    def next_due_ns(self) -> int:
        """When the next tick is due (monotonic ns)."""
        return self._schedule.due_ns(self._emitted)

    def _next_chunk(self) -> np.ndarray:
        """Generate the next CHUNK_TICKS ticks, continuing the walk from the last price."""
        log_returns = self._rng.standard_normal(CHUNK_TICKS) * self._sigma
        sizes = self._rng.exponential(1.0, CHUNK_TICKS)
        prices = self._price * np.exp(np.cumsum(log_returns))
        self._price = float(prices[-1])
        chunk = np.zeros(CHUNK_TICKS, dtype=TICK_DTYPE)
        index = np.arange(self._generated, self._generated + CHUNK_TICKS, dtype=np.int64)
        chunk["source_ts_ns"] = self._source_start_ns + index * self._spacing_ns
        chunk["price"] = prices
        chunk["size"] = sizes
        chunk["symbol_id"] = self._symbol_id
        chunk["source_id"] = int(SourceId.SYNTHETIC)
        chunk["flags"] = int(TickFlag.SYNTHETIC)
        self._generated += CHUNK_TICKS
        return chunk
