"""Load 1-minute OHLCV candles from disk and expand them into replayable ticks.

Three formats are read, all into the one :data:`CANDLE_DTYPE` structured array: the bundled
compressed ``.npz`` (one array per column), freqtrade JSON (``[[ms, o, h, l, c, v], ...]``)
and CSV with a configurable header mapping. Every loader checks the same invariants
(finite values, positive prices, ``low <= min(open, close)``, ``high >= max(open, close)``,
non-negative volume, strictly increasing open times) so that replay never feeds the
strategy a candle that real markets cannot produce; a broken file raises
:class:`~pipeline.errors.BadInputError` naming the file and the first bad row.
"""

from __future__ import annotations

import csv
import json
import zipfile
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import IO, Any, Final

import numpy as np

from pipeline.errors import BadInputError
from pipeline.records import TICK_DTYPE, SourceId, TickFlag

CANDLE_DTYPE: Final = np.dtype(
    [
        ("open_time_ms", "<i8"),  # candle open time, Unix epoch milliseconds (UTC)
        ("open", "<f8"),  # quote per base
        ("high", "<f8"),
        ("low", "<f8"),
        ("close", "<f8"),
        ("volume", "<f8"),  # base units traded during the candle
    ]
)
CANDLE_COLUMNS: Final = tuple(CANDLE_DTYPE.names or ())
PRICE_COLUMNS: Final = ("open", "high", "low", "close")
BUNDLED_FILE: Final = "sol_usdt_perp_1m.npz"

# Where inside its minute each of a candle's four ticks is stamped: evenly spread, so that
# looping or concatenating candles keeps a constant 15 s spacing between ticks.
TICK_OFFSETS_NS: Final = np.array([0, 15, 30, 45], dtype=np.int64) * 1_000_000_000
TICKS_PER_CANDLE: Final = len(TICK_OFFSETS_NS)
_MS_TO_NS: Final = 1_000_000
# Candle times become int64 nanoseconds (plus up to 45 s of tick offsets): anything from the
# epoch to here fits, later would wrap around silently. 2200-01-01 is far enough for any data.
MAX_OPEN_TIME_MS: Final = 7_258_118_400_000
_MAX_EXACT_INT: Final = 2**53  # above this a JSON integer cannot be a float64 exactly


def validate_candles(candles: np.ndarray, source: str, first_row: int = 1) -> np.ndarray:
    """Return ``candles`` unchanged if every row is plausible, else raise BadInputError.

    ``first_row`` is the row number of ``candles[0]`` in ``source`` (so that CSV errors can
    name the file line, counting the header).
    """
    if candles.dtype != CANDLE_DTYPE or candles.ndim != 1:
        raise BadInputError(f"{source}: expected a 1-D {CANDLE_DTYPE} array")
    if len(candles) == 0:
        raise BadInputError(f"{source}: no candles")
    checks: list[tuple[np.ndarray, str]] = []
    for name in (*PRICE_COLUMNS, "volume"):
        checks.append((~np.isfinite(candles[name]), f"{name} is not finite"))
    for name in PRICE_COLUMNS:
        checks.append((candles[name] <= 0.0, f"{name} is not positive"))
    checks.append((candles["volume"] < 0.0, "volume is negative"))
    times = candles["open_time_ms"]
    checks.append(((times < 0) | (times > MAX_OPEN_TIME_MS),
                   f"open_time_ms is outside 0..{MAX_OPEN_TIME_MS} (1970 to 2200)"))
    body_low = np.minimum(candles["open"], candles["close"])
    body_high = np.maximum(candles["open"], candles["close"])
    checks.append((candles["low"] > body_low, "low is above min(open, close)"))
    checks.append((candles["high"] < body_high, "high is below max(open, close)"))
    not_increasing = np.zeros(len(candles), dtype=bool)
    not_increasing[1:] = np.diff(candles["open_time_ms"]) <= 0
    checks.append((not_increasing, "open_time_ms is not strictly increasing"))
    for bad, why in checks:
        if bad.any():
            row = int(np.argmax(bad))
            raise BadInputError(f"{source}: row {first_row + row}: {why}")
    return candles


def load_bundled() -> np.ndarray:
    """The candles shipped inside the package (see ``data/ATTRIBUTION.md``)."""
    data = resources.files("pipeline.ingest").joinpath("data", BUNDLED_FILE)
    with data.open("rb") as stream:
        return load_npz(stream, source=f"pipeline/ingest/data/{BUNDLED_FILE}")


def load_npz(file: str | Path | IO[bytes], source: str | None = None) -> np.ndarray:
    """Candles from an ``.npz`` holding one 1-D array per CANDLE_DTYPE column."""
    name = source or str(file)
    try:
        with np.load(file, allow_pickle=False) as archive:
            columns = {key: archive[key] for key in archive.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:  # EOF: an empty file
        raise BadInputError(f"{name}: not a readable npz file: {exc}") from exc
    missing = [col for col in CANDLE_COLUMNS if col not in columns]
    if missing:
        raise BadInputError(f"{name}: missing arrays {missing}")
    lengths = {columns[col].shape for col in CANDLE_COLUMNS}
    if len(lengths) != 1 or len(next(iter(lengths))) != 1:
        raise BadInputError(f"{name}: columns must be 1-D and equally long, got {lengths}")
    candles = np.empty(len(columns["open_time_ms"]), dtype=CANDLE_DTYPE)
    for col in CANDLE_COLUMNS:
        if columns[col].dtype != CANDLE_DTYPE[col]:
            raise BadInputError(f"{name}: {col} has dtype {columns[col].dtype}")
        candles[col] = columns[col]
    return validate_candles(candles, name)


def load_freqtrade_json(path: str | Path) -> np.ndarray:
    """Candles from a freqtrade JSON file: ``[[open_time_ms, o, h, l, c, v], ...]``."""
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise BadInputError(f"{path}: not readable JSON: {exc}") from exc
    fast = _plain_json_table(raw, len(CANDLE_COLUMNS))
    if fast is not None:
        return validate_candles(_candles_from_table(fast, str(path), first_row=1), str(path))
    try:
        rows = json.loads(raw.decode("utf-8"))
    except ValueError as exc:  # ValueError: bad UTF-8, bad JSON, 5000-digit ints
        raise BadInputError(f"{path}: not readable JSON: {exc}") from exc
    except RecursionError:  # arrays nested thousands deep: not candles, and no row to name
        raise BadInputError(f"{path}: not readable JSON: nested too deeply") from None
    if not isinstance(rows, list) or not rows:
        raise BadInputError(f"{path}: expected a non-empty JSON array of candles")
    table = _numeric_table(rows, len(CANDLE_COLUMNS))
    if table is None:
        row = _first_bad_json_row(rows, len(CANDLE_COLUMNS))
        where = f"row {row}" if row is not None else "some row"
        raise BadInputError(f"{path}: {where}: expected {len(CANDLE_COLUMNS)} numbers, "
                            f"integers within +-2^53")
    return validate_candles(_candles_from_table(table, str(path), first_row=1), str(path))


def load_csv(path: str | Path, columns: Mapping[str, str] | None = None) -> np.ndarray:
    """Candles from a CSV file with a header row.

    ``columns`` maps our column names to the file's headers; names it omits are looked up
    under our own name (so ``None`` reads a file whose header is ``open_time_ms,open,...``).
    Error rows are file lines, counting the header as row 1.
    """
    mapping = {col: col for col in CANDLE_COLUMNS} | dict(columns or {})
    unknown = sorted(set(mapping) - set(CANDLE_COLUMNS))
    if unknown:
        raise BadInputError(f"{path}: unknown columns in mapping: {unknown}")
    try:
        with Path(path).open(newline="", encoding="utf-8") as stream:
            rows = list(csv.reader(stream))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise BadInputError(f"{path}: not readable CSV: {exc}") from exc
    if not rows:
        raise BadInputError(f"{path}: empty file")
    header = [cell.strip() for cell in rows[0]]
    missing = [mapping[col] for col in CANDLE_COLUMNS if mapping[col] not in header]
    if missing:
        raise BadInputError(f"{path}: row 1: header lacks {missing}")
    body = rows[1:]
    widths = np.fromiter((len(row) for row in body), dtype=np.int64, count=len(body))
    bad_width = np.flatnonzero(widths != len(header))
    if len(bad_width):
        row = int(bad_width[0]) + 2
        raise BadInputError(f"{path}: row {row}: expected {len(header)} fields")
    picked = [header.index(mapping[col]) for col in CANDLE_COLUMNS]
    cells = np.array(body, dtype=np.str_).reshape(len(body), len(header))[:, picked]
    try:
        table = np.char.strip(cells).astype(np.float64)
    except ValueError:
        row, col = _first_unparsable_cell(cells)
        text = str(cells[row, col])
        raise BadInputError(
            f"{path}: row {row + 2}: {CANDLE_COLUMNS[col]} {text!r} is not a number"
        ) from None
    return validate_candles(_candles_from_table(table, str(path), first_row=2), str(path), 2)


def candles_to_ticks(
    candles: np.ndarray, symbol_id: int, source_id: SourceId, flags: TickFlag
) -> np.ndarray:
    """Expand each candle into four ticks: open, the nearer extreme, the other, close.

    A candle that closed at or above its open most plausibly went down first and then up
    (open, low, high, close); one that closed below went up first (open, high, low, close).
    Ticks are stamped at +0, +15, +30 and +45 s into the minute (:data:`TICK_OFFSETS_NS`)
    and each carries a quarter of the candle's volume. ``seq`` and ``ingest_ns`` stay 0:
    the ingest process sets them when it publishes.
    """
    n = len(candles)
    up = candles["close"] >= candles["open"]
    prices = np.empty((n, TICKS_PER_CANDLE), dtype=np.float64)
    prices[:, 0] = candles["open"]
    prices[:, 1] = np.where(up, candles["low"], candles["high"])
    prices[:, 2] = np.where(up, candles["high"], candles["low"])
    prices[:, 3] = candles["close"]
    open_ns = candles["open_time_ms"].astype(np.int64) * _MS_TO_NS
    ticks = np.zeros(n * TICKS_PER_CANDLE, dtype=TICK_DTYPE)
    ticks["source_ts_ns"] = (open_ns[:, None] + TICK_OFFSETS_NS[None, :]).ravel()
    ticks["price"] = prices.ravel()
    ticks["size"] = np.repeat(candles["volume"] / TICKS_PER_CANDLE, TICKS_PER_CANDLE)
    ticks["symbol_id"] = symbol_id
    ticks["source_id"] = int(source_id)
    ticks["flags"] = int(flags)
    return ticks


def _numeric_table(rows: Sequence[Any], width: int) -> np.ndarray | None:
    """``rows`` as an (n, width) float64 array, or None if any row is not ``width`` numbers."""
    try:
        table = np.array(rows)
    except ValueError:  # ragged
        return None
    # Integers beyond int64 make an object array: refused here, named by _first_bad_json_row.
    if table.ndim != 2 or table.shape[1] != width or table.dtype.kind not in "iuf":
        return None
    return table.astype(np.float64)


def _plain_json_table(raw: bytes, width: int) -> np.ndarray | None:
    """``raw`` as an (n, width) float64 table if it is a plain array of arrays of numbers.

    About six times faster than ``json.loads`` for a year of candles: the rows become CSV
    lines for pyarrow's parser (correctly rounded, as Python's). Anything unusual (other
    characters, nesting, a ragged row, an integer too large for a float) returns None, and
    the caller takes the ``json`` path, which names the bad row.
    """
    import pyarrow as pa
    from pyarrow import csv as pa_csv

    body = raw.translate(None, b" \t\r\n")
    if not (body.startswith(b"[[") and body.endswith(b"]]")):
        return None
    body = body[2:-2].replace(b"],[", b"\n")
    if not body or body.translate(None, b"0123456789.eE+-,\n"):
        return None  # brackets left (nesting), literals, strings: not plain rows of numbers
    names = [f"c{i}" for i in range(width)]
    try:
        table = pa_csv.read_csv(
            pa.py_buffer(body), read_options=pa_csv.ReadOptions(column_names=names),
            convert_options=pa_csv.ConvertOptions(
                column_types=dict.fromkeys(names, pa.float64())))
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if any(column.null_count for column in table.columns):
        return None
    out = np.column_stack([column.to_numpy() for column in table.columns])
    return out if (np.abs(out[np.isfinite(out)]) < 2.0**63).all() else None


def _first_bad_json_row(rows: Sequence[Any], width: int) -> int | None:
    """1-based index of the first row that is not ``width`` plain numbers (error path only)."""
    for index, row in enumerate(rows, start=1):
        if not isinstance(row, list) or len(row) != width:
            return index
        if any(isinstance(v, bool) or not isinstance(v, int | float) for v in row):
            return index
        if any(isinstance(v, int) and abs(v) > _MAX_EXACT_INT for v in row):
            return index
    return None  # numpy refused a table the loop finds fine: say so without a row


def _first_unparsable_cell(cells: np.ndarray) -> tuple[int, int]:
    """(row, column) of the first cell that float() rejects (error path only)."""
    for (row, col), text in np.ndenumerate(cells):
        try:
            float(text)
        except ValueError:
            return int(row), int(col)
    raise AssertionError("no unparsable cell found")  # pragma: no cover


def _candles_from_table(table: np.ndarray, source: str, first_row: int) -> np.ndarray:
    """Pack an (n, 6) float64 table into CANDLE_DTYPE, checking times are whole ms."""
    if len(table) == 0:
        raise BadInputError(f"{source}: no candles")
    times = table[:, 0]
    whole = np.isfinite(times) & (times == np.round(times)) & (np.abs(times) < 2.0**53)
    if not whole.all():
        row = int(np.argmin(whole))
        raise BadInputError(f"{source}: row {first_row + row}: open_time_ms is not whole ms")
    candles = np.empty(len(table), dtype=CANDLE_DTYPE)
    candles["open_time_ms"] = times.astype(np.int64)
    for index, col in enumerate(CANDLE_COLUMNS[1:], start=1):
        candles[col] = table[:, index]
    return candles
