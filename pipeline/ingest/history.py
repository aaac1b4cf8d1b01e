"""Recorded history beyond the candle formats of ``candles.py``: freqtrade feather candles,
CSV trade tapes, and the one entry point that turns any supported file into ticks.

Replay (the ingest feed) and ``pipeline backtest`` both read files through
:func:`load_ticks`, so a backtest sees exactly the ticks a replay would publish.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

import numpy as np

from pipeline.errors import BadInputError
from pipeline.ingest.candles import (
    CANDLE_DTYPE,
    MAX_OPEN_TIME_MS,
    candles_to_ticks,
    load_bundled,
    load_csv,
    load_freqtrade_json,
    load_npz,
    validate_candles,
)
from pipeline.records import TICK_DTYPE, SourceId, TickFlag

TRADE_COLUMNS: Final = ("timestamp_ms", "price", "amount")
# ccxt ``fetch_trades`` / freqtrade trade files use these headers.
DEFAULT_TRADE_HEADERS: Final = {"timestamp_ms": "timestamp", "price": "price",
                                "amount": "amount"}
FORMAT_BY_SUFFIX: Final = {".npz": "npz", ".json": "json", ".feather": "feather",
                           ".csv": "csv"}
_MS_TO_NS: Final = 1_000_000


def load_feather(path: str | Path) -> np.ndarray:
    """Candles from a freqtrade feather file (``date`` as timestamp[ns, UTC], o/h/l/c/v)."""
    import pyarrow as pa
    from pyarrow import feather

    try:
        table = feather.read_table(str(path))
    except (OSError, pa.ArrowInvalid) as exc:
        raise BadInputError(f"{path}: not a readable feather file: {exc}") from exc
    names = ("date", "open", "high", "low", "close", "volume")
    missing = [name for name in names if name not in table.column_names]
    if missing:
        raise BadInputError(f"{path}: missing columns {missing}")
    if len(table) == 0:
        raise BadInputError(f"{path}: no candles")
    date = table.column("date")
    if not pa.types.is_timestamp(date.type):
        raise BadInputError(f"{path}: date has type {date.type}, expected a timestamp")
    if date.null_count:
        raise BadInputError(f"{path}: date has {date.null_count} empty values")
    try:  # a date past 2262 does not fit int64 nanoseconds
        ns = date.cast(pa.timestamp("ns", tz=date.type.tz)).cast(pa.int64()).to_numpy()
    except pa.ArrowInvalid as exc:
        raise BadInputError(f"{path}: date out of range: {exc}") from exc
    candles = np.empty(len(table), dtype=CANDLE_DTYPE)
    candles["open_time_ms"] = ns // _MS_TO_NS
    for name in names[1:]:
        column = table.column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            raise BadInputError(f"{path}: {name} has type {column.type}, expected numbers")
        if column.null_count:
            raise BadInputError(f"{path}: {name} has {column.null_count} empty values")
        candles[name] = column.to_numpy().astype(np.float64)
    return validate_candles(candles, str(path))


def load_trades_csv(path: str | Path, columns: Mapping[str, str] | None = None,
                    symbol_id: int = 1) -> np.ndarray:
    """Ticks, one per trade, from a CSV trade tape (``timestamp`` ms, ``price``, ``amount``).

    Trades sharing a millisecond (a sweep through the book) keep their file order and are
    stamped 1 ns apart, so source times stay strictly increasing as validation expects.
    ``columns`` maps :data:`TRADE_COLUMNS` to the file's headers.
    """
    mapping = DEFAULT_TRADE_HEADERS | dict(columns or {})
    try:
        with Path(path).open(newline="", encoding="utf-8") as stream:
            rows = list(csv.reader(stream))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadInputError(f"{path}: not readable CSV: {exc}") from exc
    if len(rows) < 2:
        raise BadInputError(f"{path}: no trades")
    header = [cell.strip() for cell in rows[0]]
    missing = [mapping[c] for c in TRADE_COLUMNS if mapping[c] not in header]
    if missing:
        raise BadInputError(f"{path}: row 1: header lacks {missing}")
    picked = [header.index(mapping[c]) for c in TRADE_COLUMNS]
    table = np.empty((len(rows) - 1, 3), dtype=np.float64)
    for line, row in enumerate(rows[1:], start=2):
        try:
            table[line - 2] = [float(row[i]) for i in picked]
        except (ValueError, IndexError):
            raise BadInputError(f"{path}: row {line}: expected numbers in {picked}") from None
    stamp_ms, price, amount = table[:, 0], table[:, 1], table[:, 2]
    checks = ((~np.isfinite(table).all(axis=1), "not finite"), (price <= 0.0, "price <= 0"),
              (amount < 0.0, "amount < 0"), (stamp_ms != np.round(stamp_ms), "not whole ms"),
              ((stamp_ms < 0) | (stamp_ms > MAX_OPEN_TIME_MS),
               f"timestamp outside 0..{MAX_OPEN_TIME_MS} ms (1970 to 2200)"))
    for bad, why in checks:
        if bad.any():
            raise BadInputError(f"{path}: row {int(np.argmax(bad)) + 2}: {why}")
    ms = stamp_ms.astype(np.int64)
    back = np.flatnonzero(np.diff(ms) < 0)
    if len(back):
        raise BadInputError(f"{path}: row {int(back[0]) + 3}: timestamp goes backwards")
    ticks = np.zeros(len(ms), dtype=TICK_DTYPE)
    ticks["source_ts_ns"] = ms * _MS_TO_NS + _rank_within_equal(ms)
    ticks["price"] = price
    ticks["size"] = amount
    ticks["symbol_id"] = symbol_id
    ticks["source_id"] = int(SourceId.REPLAY)
    ticks["flags"] = int(TickFlag.REPLAY)
    return ticks


def load_ticks(path: str | Path | None, file_format: str, symbol_id: int,
               csv_columns: Mapping[str, str] | None = None,
               trades_columns: Mapping[str, str] | None = None) -> np.ndarray:
    """Replay ticks from ``path`` (None = the bundled candles) in ``file_format``.

    ``file_format`` is npz | json | csv | feather | trades_csv, or ``auto`` to go by the
    file's suffix (``.csv`` is read as candles unless its header has no ``open`` column).
    """
    if path is None:
        candles = load_bundled()
    else:
        path = Path(path)
        if file_format == "auto":
            file_format = guess_format(path)
        if file_format == "trades_csv":
            return load_trades_csv(path, trades_columns, symbol_id)
        loaders: dict[str, Callable[[Path], np.ndarray]] = {
            "json": load_freqtrade_json, "feather": load_feather, "npz": load_npz}
        if file_format == "csv":
            candles = load_csv(path, csv_columns)
        elif file_format in loaders:
            candles = loaders[file_format](path)
        else:
            raise BadInputError(f"{path}: unknown format {file_format!r}")
    return candles_to_ticks(candles, symbol_id, SourceId.REPLAY, TickFlag.REPLAY)


def guess_format(path: Path) -> str:
    """The format implied by ``path``'s suffix (and, for CSV, its header)."""
    file_format = FORMAT_BY_SUFFIX.get(path.suffix.lower())
    if file_format is None:
        raise BadInputError(f"{path}: cannot tell the format from the suffix; pass --format")
    if file_format == "csv":
        try:
            with path.open(newline="", encoding="utf-8") as stream:
                header = next(csv.reader(stream), [])
        except (OSError, UnicodeDecodeError, csv.Error) as exc:
            raise BadInputError(f"{path}: not readable CSV: {exc}") from exc
        if "open" not in [cell.strip() for cell in header]:
            return "trades_csv"
    return file_format


def _rank_within_equal(values: np.ndarray) -> np.ndarray:
    """For a non-decreasing array: 0, 1, 2... within each run of equal values."""
    index = np.arange(len(values))
    starts = np.concatenate(([True], values[1:] != values[:-1]))
    run_start = np.maximum.accumulate(np.where(starts, index, 0))
    return index - run_start
