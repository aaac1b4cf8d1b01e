"""A year of real 1-minute candles for the backtest benchmark, built from the shared data.

No single real file here spans a year, so the real candle files are laid back to back,
re-timed onto one continuous 1-minute grid, and repeated until the wanted length. Each
segment's prices are multiplied by one factor so that its first open equals the previous
segment's last close (no jump at a join); within a segment every candle keeps its real
shape and volume. Prices are then rounded to 4 decimals, as an exchange's tick size would
(rounding is monotone, so ``low <= open, close <= high`` still holds).

The Hyperliquid 5-minute file is included on the 1-minute grid on purpose: it is the only
real file here with flat zero-volume stretches (nine and four bars in a row), the input
that sends tick validation down its stateful path. Its bars are therefore more volatile
than a real minute's; the benchmark measures speed, not strategy results.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import numpy as np

from pipeline.ingest.candles import CANDLE_DTYPE, load_bundled, load_freqtrade_json
from pipeline.ingest.history import load_feather

SHARED_DATA: Final = Path("/work/shared/data")
# Relative to the data directory; the order the segments are laid in.
SOURCE_FILES: Final = (
    "sol-usdt-binance-spot-1m-2021/SOL_USDT-1m.json",
    "sol-usdt-binance-perp-1m-2025/SOL_USDT_USDT-1m-futures.feather",
    "sol-usdt-binance-perp-1m-2025/BTC_USDT_USDT-1m-futures.feather",
    "sol-usdt-binance-perp-1m-2025/ETH_USDT_USDT-1m-futures.feather",
    "sol-usdc-hyperliquid-2025/SOL_USDC_USDC-1m-futures.feather",
    "sol-usdc-hyperliquid-2025/USOL_USDC-1m.feather",
    "sol-usdc-hyperliquid-2025/SOL_USDC_USDC-5m-futures.feather",
)
YEAR_CANDLES: Final = 525_600
START_MS: Final = 1_704_067_200_000  # 2024-01-01 00:00 UTC
MINUTE_MS: Final = 60_000
PRICE_DECIMALS: Final = 4


def source_segments(data_dir: Path = SHARED_DATA) -> tuple[list[np.ndarray], list[str]]:
    """The real candle files found under ``data_dir`` (the bundled candles if none is)."""
    segments: list[np.ndarray] = []
    names: list[str] = []
    for name in SOURCE_FILES:
        path = data_dir / name
        if path.exists():
            load = load_freqtrade_json if path.suffix == ".json" else load_feather
            segments.append(load(path))
            names.append(name)
    if not segments:
        segments, names = [load_bundled()], ["pipeline/ingest/data/sol_usdt_perp_1m.npz"]
    return segments, names


def join_segments(segments: Sequence[np.ndarray], n_candles: int) -> np.ndarray:
    """``n_candles`` candles: ``segments`` cycled, re-timed and rescaled at each join."""
    if not segments or n_candles <= 0:
        raise ValueError("need at least one segment and one candle")
    parts: list[np.ndarray] = []
    total = 0
    last_close = float(segments[0]["open"][0])
    while total < n_candles:
        for segment in segments:
            part = segment[: n_candles - total].copy()
            factor = last_close / float(part["open"][0])
            for name in ("open", "high", "low", "close"):
                part[name] = np.round(part[name] * factor, PRICE_DECIMALS)
            last_close = float(part["close"][-1])
            parts.append(part)
            total += len(part)
            if total == n_candles:
                break
    candles = np.concatenate(parts).astype(CANDLE_DTYPE)
    candles["open_time_ms"] = START_MS + np.arange(n_candles, dtype=np.int64) * MINUTE_MS
    return candles


def flat_zero_volume_runs(candles: np.ndarray) -> list[int]:
    """Lengths (in candles) of the runs of flat (o=h=l=c) zero-volume candles."""
    flat = ((candles["volume"] == 0.0) & (candles["open"] == candles["close"])
            & (candles["high"] == candles["low"]) & (candles["open"] == candles["high"]))
    edges = np.diff(np.concatenate(([0], flat.astype(np.int8), [0])))
    return [int(n) for n in np.flatnonzero(edges == -1) - np.flatnonzero(edges == 1)]


def write_json(candles: np.ndarray, path: Path) -> None:
    """A freqtrade JSON candle file: ``[[open_time_ms, o, h, l, c, v], ...]``."""
    rows = [[t, o, h, lo, c, v] for t, o, h, lo, c, v in zip(
        candles["open_time_ms"].tolist(), candles["open"].tolist(), candles["high"].tolist(),
        candles["low"].tolist(), candles["close"].tolist(), candles["volume"].tolist(),
        strict=True)]
    path.write_text(json.dumps(rows, separators=(",", ":")), encoding="utf-8")


def write_feather(candles: np.ndarray, path: Path) -> None:
    """A freqtrade feather candle file (``date`` as timestamp[ns, UTC], then o/h/l/c/v)."""
    import pyarrow as pa
    from pyarrow import feather

    date = pa.array(candles["open_time_ms"] * 1_000_000, type=pa.int64()).cast(
        pa.timestamp("ns", tz="UTC"))
    columns = {"date": date} | {name: pa.array(candles[name])
                                 for name in ("open", "high", "low", "close", "volume")}
    feather.write_feather(pa.table(columns), str(path))
