"""The pluggable feed interface the ingest loop drives, and the factory that picks one.

A feed owns its pacing: the loop only asks for the ticks due by now and sleeps until
``next_due_ns``. That keeps the loop identical for replay, synthetic and (later) live
sources, and keeps every feed testable with an injected clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline.ingest.candles import (
    candles_to_ticks,
    load_bundled,
    load_csv,
    load_freqtrade_json,
    load_npz,
)
from pipeline.ingest.config import IngestConfig
from pipeline.ingest.replay import ReplayFeed
from pipeline.ingest.synthetic import SyntheticFeed
from pipeline.records import SourceId, TickFlag


class Feed(Protocol):
    """A source of ticks paced against the monotonic clock."""

    def poll(self, now_ns: int, max_ticks: int) -> np.ndarray:
        """Ticks due by monotonic ``now_ns`` (TICK_DTYPE, ``seq``/``ingest_ns`` left 0)."""
        ...

    def next_due_ns(self) -> int | None:
        """Monotonic time the next tick is due (may be in the past); None = exhausted."""
        ...

    @property
    def exhausted(self) -> bool:
        """True when the feed will never return another tick."""
        ...


def load_replay_candles(config: IngestConfig) -> np.ndarray:
    """The candles a replay run with ``config`` will play (bundled when no path is set)."""
    if not config.replay_path:
        return load_bundled()
    path = Path(config.replay_path)
    if config.replay_format == "json":
        return load_freqtrade_json(path)
    if config.replay_format == "csv":
        return load_csv(path, config.csv_columns)
    return load_npz(path)


def make_feed(
    config: IngestConfig,
    clock_ns: Callable[[], int],
    unix_clock_ns: Callable[[], int] = time.time_ns,
) -> Feed:
    """Build the configured feed, with pacing starting at ``clock_ns()`` (monotonic ns).

    ``unix_clock_ns`` only dates synthetic ticks; replayed ticks keep their recorded times.
    Raises BadInputError if the replay file is malformed.
    """
    if config.feed == "synthetic":
        return SyntheticFeed(
            seed=config.synthetic_seed,
            start_price=config.synthetic_start_price,
            volatility_bps=config.synthetic_volatility_bps,
            rate_hz=config.rate_hz,
            symbol_id=config.symbol_id,
            start_ns=clock_ns(),
            source_start_unix_ns=unix_clock_ns(),
        )
    ticks = candles_to_ticks(
        load_replay_candles(config), config.symbol_id, SourceId.REPLAY, TickFlag.REPLAY
    )
    return ReplayFeed(
        ticks, rate_hz=config.rate_hz, loop=config.loop, start_ns=clock_ns(), speed=config.speed
    )
