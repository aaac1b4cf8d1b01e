"""Feather candles and CSV trade tapes (real data slices in tests/data), and load_ticks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import BadInputError
from pipeline.ingest.config import IngestConfig
from pipeline.ingest.feed import make_feed
from pipeline.ingest.history import guess_format, load_feather, load_ticks, load_trades_csv
from pipeline.records import SourceId, TickFlag

DATA = Path(__file__).resolve().parents[2] / "data"
FEATHER = DATA / "USOL_USDC-1m-head240.feather"
TRADES = DATA / "eth_usdt_trades_head200.csv"
JSON = DATA / "SOL_USDT-1m-2021-head300.json"


def test_feather_candles_match_the_recorded_first_row() -> None:
    candles = load_feather(FEATHER)
    assert len(candles) == 240
    assert int(candles["open_time_ms"][0]) % 60_000 == 0
    assert (np.diff(candles["open_time_ms"]) == 60_000).all()  # no gaps in this market


def test_trades_become_one_tick_each_strictly_increasing() -> None:
    ticks = load_trades_csv(TRADES, symbol_id=3)
    assert len(ticks) == 200
    assert (ticks["price"][0], ticks["size"][0]) == (1666.8, 26.062)
    assert ticks["source_ts_ns"][0] == 1675329600138 * 1_000_000
    assert (np.diff(ticks["source_ts_ns"]) > 0).all()  # same-ms trades 1 ns apart
    assert set(ticks["symbol_id"]) == {3}
    assert set(ticks["flags"]) == {TickFlag.REPLAY}


def test_trade_column_mapping_and_bad_rows(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("ms,px,qty\n1,10.0,1\n2,oops,1\n")
    with pytest.raises(BadInputError, match="row 3"):
        load_trades_csv(path, {"timestamp_ms": "ms", "price": "px", "amount": "qty"})
    path.write_text("ms,px,qty\n5,10.0,1\n4,10.0,1\n")
    with pytest.raises(BadInputError, match="backwards"):
        load_trades_csv(path, {"timestamp_ms": "ms", "price": "px", "amount": "qty"})


def test_formats_are_guessed_from_suffix_and_header() -> None:
    assert guess_format(FEATHER) == "feather"
    assert guess_format(TRADES) == "trades_csv"
    assert guess_format(JSON) == "json"
    with pytest.raises(BadInputError, match="suffix"):
        guess_format(Path("x.parquet"))


def test_replay_feed_reads_feather_and_trades_files() -> None:
    for path, fmt, count in ((FEATHER, "feather", 960), (TRADES, "trades_csv", 200)):
        feed = make_feed(IngestConfig(replay_path=str(path), replay_format=fmt, loop=False,
                                      rate_hz=0.0), lambda: 0)
        out = feed.poll(1, 10_000)
        assert len(out) == count
        assert set(out["source_id"]) == {SourceId.REPLAY}
        assert feed.exhausted
    assert len(load_ticks(JSON, "auto", 1)) == 1200


def test_unreadable_feather_is_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "x.feather"
    path.write_bytes(b"not arrow")
    with pytest.raises(BadInputError, match="feather"):
        load_feather(path)
