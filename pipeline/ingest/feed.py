"""The pluggable feed interface the ingest loop drives, and the factory that picks one.

A feed owns its pacing: the loop only asks for the ticks due by now and sleeps until
``next_due_ns``. That keeps the loop identical for replay, synthetic and (later) live
sources, and keeps every feed testable with an injected clock.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from pipeline.errors import BadInputError
from pipeline.ingest.candles import (
    load_bundled,
    load_csv,
    load_freqtrade_json,
    load_npz,
)
from pipeline.ingest.config import LIVE_FEEDS, IngestConfig
from pipeline.ingest.history import load_feather, load_ticks
from pipeline.ingest.replay import ReplayFeed
from pipeline.ingest.synthetic import SyntheticFeed

if TYPE_CHECKING:
    from pipeline.config import SymbolConfig


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
    if config.replay_format == "feather":
        return load_feather(path)
    if config.replay_format == "trades_csv":
        raise BadInputError(f"{path}: a trade tape has no candles")
    return load_npz(path)


def make_feed(
    config: IngestConfig,
    clock_ns: Callable[[], int],
    unix_clock_ns: Callable[[], int] = time.time_ns,
    *,
    symbols: Sequence[SymbolConfig] = (),
    data_dir: Path | None = None,
    log: logging.Logger | None = None,
    on_error: Callable[[str, str], None] | None = None,
    on_request: Callable[[str, str], None] | None = None,
) -> Feed:
    """Build the configured feed, with pacing starting at ``clock_ns()`` (monotonic ns).

    ``unix_clock_ns`` only dates synthetic ticks; replayed ticks keep their recorded times.
    Live feeds need ``symbols`` (their per-source ids) and ``data_dir`` (HTTP cache and
    rate-limit state); ``on_error(source, reason)`` counts their failures and
    ``on_request(source, "hit" | "miss")`` their HTTP requests.
    Raises BadInputError if the replay file is malformed.
    """
    if config.feed in LIVE_FEEDS:
        from pipeline.ingest.live import make_live_feed

        return make_live_feed(config, symbols, data_dir or Path("."), log, on_error,
                              on_request=on_request)
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
    ticks = load_ticks(config.replay_path or None, config.replay_format, config.symbol_id,
                       config.csv_columns, config.trades_columns)
    return ReplayFeed(
        ticks, rate_hz=config.rate_hz, loop=config.loop, start_ns=clock_ns(), speed=config.speed
    )
