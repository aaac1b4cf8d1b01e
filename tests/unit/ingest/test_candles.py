"""Candle loaders (JSON, CSV, npz) and the candle -> tick expansion."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.errors import BadInputError
from pipeline.ingest.candles import (
    CANDLE_COLUMNS,
    CANDLE_DTYPE,
    candles_to_ticks,
    load_csv,
    load_freqtrade_json,
    load_npz,
)
from pipeline.records import TICK_DTYPE, SourceId, TickFlag

ROWS = [
    [1746372780000, 146.78, 146.83, 146.7, 146.74, 10574.13],  # down candle
    [1746372840000, 146.74, 146.80, 146.68, 146.79, 9725.44],  # up candle
    [1746372900000, 146.71, 146.8, 146.7, 146.71, 4738.0],  # flat: treated as up
]


def _candles() -> np.ndarray:
    candles = np.zeros(len(ROWS), dtype=CANDLE_DTYPE)
    for i, row in enumerate(ROWS):
        candles[i] = tuple(row)
    return candles


def _write_csv(path: Path, header: str, rows: list[str]) -> Path:
    path.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return path


def test_json_loads_rows_exactly(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(ROWS), encoding="utf-8")
    candles = load_freqtrade_json(path)
    assert candles.dtype == CANDLE_DTYPE
    np.testing.assert_array_equal(candles, _candles())


@pytest.mark.parametrize(
    ("content", "row"),
    [
        ([ROWS[0], ROWS[1][:5], ROWS[2]], 2),  # short row
        ([ROWS[0], ROWS[1], [*ROWS[2][:5], "x"]], 3),  # not a number
        ([ROWS[0], None, ROWS[2]], 2),  # not a list
        ([ROWS[0], [*ROWS[1], 1.0], ROWS[2]], 2),  # too long
    ],
)
def test_json_malformed_row_names_file_and_row(
    tmp_path: Path, content: list[object], row: int
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(BadInputError, match=rf"bad\.json: row {row}:"):
        load_freqtrade_json(path)


@pytest.mark.parametrize("text", ["{}", "[]", "[[1,2", "not json"])
def test_json_not_an_array_of_candles(tmp_path: Path, text: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(BadInputError, match=r"bad\.json"):
        load_freqtrade_json(path)


def test_json_semantic_checks(tmp_path: Path) -> None:
    rows = [list(r) for r in ROWS]
    rows[2][3] = 150.0  # low above the open: impossible
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    with pytest.raises(BadInputError, match=r"row 3: low is above"):
        load_freqtrade_json(path)


def test_json_times_must_increase(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([ROWS[1], ROWS[0]]), encoding="utf-8")
    with pytest.raises(BadInputError, match=r"row 2: open_time_ms is not strictly increasing"):
        load_freqtrade_json(path)


def test_csv_with_column_mapping_and_extra_columns(tmp_path: Path) -> None:
    header = "date_ms,o,h,l,c,vol,trades"
    lines = [",".join(str(v) for v in row) + ",7" for row in ROWS]
    path = _write_csv(tmp_path / "c.csv", header, lines)
    mapping = {"open_time_ms": "date_ms", "open": "o", "high": "h", "low": "l", "close": "c",
               "volume": "vol"}
    np.testing.assert_array_equal(load_csv(path, mapping), _candles())


def test_csv_default_header(tmp_path: Path) -> None:
    lines = [",".join(str(v) for v in row) for row in ROWS]
    path = _write_csv(tmp_path / "c.csv", ",".join(CANDLE_COLUMNS), lines)
    np.testing.assert_array_equal(load_csv(path), _candles())


@pytest.mark.parametrize(
    ("lines", "match"),
    [
        (["1746372780000,1,1,1,1,1", "1746372840000,1,1,1,1"], r"row 3: expected 6 fields"),
        (["1746372780000,1,1,1,1,1", "1746372840000,1,x,1,1,1"], r"row 3: high 'x' is not a"),
        (["1746372780000.5,1,1,1,1,1"], r"row 2: open_time_ms is not whole ms"),
        (["1746372780000,1,1,1,1,-1"], r"row 2: volume is negative"),
        (["1746372780000,1,1,1,nan,1"], r"row 2: close is not finite"),
        ([], r"no candles"),
    ],
)
def test_csv_malformed_names_file_and_row(tmp_path: Path, lines: list[str], match: str) -> None:
    path = _write_csv(tmp_path / "bad.csv", ",".join(CANDLE_COLUMNS), lines)
    with pytest.raises(BadInputError, match=rf"bad\.csv: {match}"):
        load_csv(path)


def test_csv_missing_header_column(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "bad.csv", "open_time_ms,open,high,low,close", ["1,1,1,1,1"])
    with pytest.raises(BadInputError, match=r"row 1: header lacks \['volume'\]"):
        load_csv(path)


def test_csv_unknown_mapping_key(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "c.csv", ",".join(CANDLE_COLUMNS), ["1,1,1,1,1,1"])
    with pytest.raises(BadInputError, match="unknown columns"):
        load_csv(path, {"price": "p"})


def test_npz_round_trip_and_missing_column(tmp_path: Path) -> None:
    candles = _candles()
    good = tmp_path / "good.npz"
    columns: dict[str, Any] = {col: candles[col] for col in CANDLE_COLUMNS}
    np.savez_compressed(good, **columns)
    np.testing.assert_array_equal(load_npz(good), candles)
    bad = tmp_path / "bad.npz"
    del columns["volume"]
    np.savez_compressed(bad, **columns)
    with pytest.raises(BadInputError, match=r"bad\.npz: missing arrays \['volume'\]"):
        load_npz(bad)
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(BadInputError, match=r"junk\.npz"):
        load_npz(tmp_path / "junk.npz")


def test_candles_to_ticks_order_timestamps_and_sizes() -> None:
    candles = _candles()
    ticks = candles_to_ticks(candles, 7, SourceId.REPLAY, TickFlag.REPLAY)
    assert ticks.dtype == TICK_DTYPE
    assert len(ticks) == 4 * len(candles)
    prices = ticks["price"].reshape(-1, 4)
    # Down candle: open, high, low, close. Up (and flat) candle: open, low, high, close.
    np.testing.assert_array_equal(prices[0], [146.78, 146.83, 146.7, 146.74])
    np.testing.assert_array_equal(prices[1], [146.74, 146.68, 146.80, 146.79])
    np.testing.assert_array_equal(prices[2], [146.71, 146.7, 146.8, 146.71])
    start_ns = candles["open_time_ms"][:, None] * 1_000_000
    offsets_ns = np.array([0, 15, 30, 45]) * 1_000_000_000
    np.testing.assert_array_equal(ticks["source_ts_ns"].reshape(-1, 4), start_ns + offsets_ns)
    assert np.all(np.diff(ticks["source_ts_ns"]) == 15_000_000_000)
    np.testing.assert_allclose(ticks["size"].reshape(-1, 4).sum(axis=1), candles["volume"])
    assert set(ticks["symbol_id"]) == {7}
    assert set(ticks["source_id"]) == {SourceId.REPLAY}
    assert set(ticks["flags"]) == {TickFlag.REPLAY}
    assert not ticks["seq"].any()
    assert not ticks["ingest_ns"].any()


def test_candles_to_ticks_empty() -> None:
    ticks = candles_to_ticks(np.zeros(0, CANDLE_DTYPE), 1, SourceId.REPLAY, TickFlag.NONE)
    assert ticks.dtype == TICK_DTYPE
    assert len(ticks) == 0
