"""The ingest package's one config: which feed to run and how fast to pace it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

from pipeline.configtools import require
from pipeline.ingest.candles import CANDLE_COLUMNS
from pipeline.ingest.history import TRADE_COLUMNS
from pipeline.ingest.source_config import LiveConfig, ValidationConfig

LIVE_FEEDS: Final = ("coingecko", "pyth", "hermes", "jupiter")
FEEDS: Final = ("replay", "synthetic", *LIVE_FEEDS)
REPLAY_FORMATS: Final = ("npz", "json", "csv", "feather", "trades_csv")
_U32_MAX: Final = 2**32 - 1


@dataclass(frozen=True)
class IngestConfig:
    """Feed selection and pacing.

    Pacing: ``rate_hz`` ticks per second (0 = as fast as the ring takes them), unless
    ``speed`` > 0, in which case replay follows the source timestamps at ``speed`` times
    real time (1.0 = real time, 60.0 = a minute per second). ``loop`` restarts replay at
    the beginning with timestamps shifted forward, so the default run never runs dry.
    """

    feed: str = "replay"
    rate_hz: float = 300.0
    speed: float = 0.0
    loop: bool = True
    replay_path: str = ""  # empty = the candles bundled in pipeline/ingest/data
    replay_format: str = "npz"
    csv_columns: dict[str, str] = field(default_factory=dict)  # our name -> CSV header
    trades_columns: dict[str, str] = field(default_factory=dict)  # trades_csv: ours -> header
    symbol_id: int = 1
    synthetic_seed: int = 1
    synthetic_start_price: float = 150.0  # quote per base, about SOL/USDT in 2025
    synthetic_volatility_bps: float = 1.0  # standard deviation of one tick's log return
    batch_max: int = 256  # most ticks published per poll
    live: LiveConfig = field(default_factory=LiveConfig)  # network sources (feed = coingecko...)
    validation: ValidationConfig = field(default_factory=ValidationConfig)

    def __post_init__(self) -> None:
        require(self.feed in FEEDS, "ingest.feed", self.feed, f"must be one of {FEEDS}")
        require(
            math.isfinite(self.rate_hz) and self.rate_hz >= 0.0,
            "ingest.rate_hz",
            self.rate_hz,
            "must be a finite number >= 0 (0 = as fast as possible)",
        )
        require(
            math.isfinite(self.speed) and self.speed >= 0.0,
            "ingest.speed",
            self.speed,
            "must be a finite number >= 0 (0 = pace by rate_hz)",
        )
        require(
            self.speed == 0.0 or self.feed == "replay",
            "ingest.speed",
            self.speed,
            "source-time pacing needs recorded timestamps: only the replay feed supports it",
        )
        require(
            self.replay_format in REPLAY_FORMATS,
            "ingest.replay_format",
            self.replay_format,
            f"must be one of {REPLAY_FORMATS}",
        )
        require(
            self.replay_path != "" or self.replay_format == "npz",
            "ingest.replay_format",
            self.replay_format,
            "the bundled data is npz; set replay_path to read another format",
        )
        unknown = sorted(set(self.csv_columns) - set(CANDLE_COLUMNS))
        require(
            not unknown, "ingest.csv_columns", self.csv_columns, f"unknown columns {unknown}"
        )
        unknown = sorted(set(self.trades_columns) - set(TRADE_COLUMNS))
        require(
            not unknown, "ingest.trades_columns", self.trades_columns, f"unknown columns {unknown}"
        )
        require(
            0 <= self.symbol_id <= _U32_MAX, "ingest.symbol_id", self.symbol_id, "must fit u32"
        )
        require(
            self.synthetic_seed >= 0, "ingest.synthetic_seed", self.synthetic_seed, "must be >= 0"
        )
        require(
            math.isfinite(self.synthetic_start_price) and self.synthetic_start_price > 0.0,
            "ingest.synthetic_start_price",
            self.synthetic_start_price,
            "must be a finite price > 0",
        )
        require(
            math.isfinite(self.synthetic_volatility_bps) and self.synthetic_volatility_bps >= 0,
            "ingest.synthetic_volatility_bps",
            self.synthetic_volatility_bps,
            "must be a finite number >= 0",
        )
        require(self.batch_max >= 1, "ingest.batch_max", self.batch_max, "must be >= 1")
