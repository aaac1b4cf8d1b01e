"""make_feed: the factory picks and paces the configured feed from an injected clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pipeline.errors import BadInputError
from pipeline.ingest.candles import CANDLE_COLUMNS, load_bundled
from pipeline.ingest.config import IngestConfig
from pipeline.ingest.feed import Feed, load_replay_candles, make_feed
from pipeline.ingest.replay import ReplayFeed
from pipeline.ingest.synthetic import SyntheticFeed
from pipeline.records import SourceId, TickFlag

START_NS = 42_000_000_000
S = 1_000_000_000
ROWS = [[1746372780000, 10.0, 11.0, 9.0, 10.5, 4.0], [1746372840000, 10.5, 10.6, 10.0, 10.1, 8.0]]


def _clock() -> int:
    return START_NS


def test_default_is_looping_bundled_replay_at_300_hz() -> None:
    feed: Feed = make_feed(IngestConfig(), _clock)
    assert isinstance(feed, ReplayFeed)
    ticks = feed.poll(START_NS + S, 1000)
    assert len(ticks) == 300
    candles = load_bundled()
    assert ticks["price"][0] == candles["open"][0]
    assert ticks["source_ts_ns"][0] == candles["open_time_ms"][0] * 1_000_000
    assert set(ticks["source_id"]) == {SourceId.REPLAY}
    assert set(ticks["flags"]) == {TickFlag.REPLAY}
    assert not feed.exhausted


def test_json_replay_without_loop_runs_dry(tmp_path: Path) -> None:
    path = tmp_path / "c.json"
    path.write_text(json.dumps(ROWS), encoding="utf-8")
    config = IngestConfig(replay_path=str(path), replay_format="json", rate_hz=0.0, loop=False,
                          symbol_id=9)
    feed = make_feed(config, _clock)
    ticks = feed.poll(START_NS, 100)
    np.testing.assert_array_equal(ticks["price"], [10.0, 9.0, 11.0, 10.5, 10.5, 10.6, 10.0, 10.1])
    assert set(ticks["symbol_id"]) == {9}
    assert feed.exhausted
    assert feed.next_due_ns() is None


def test_csv_replay_uses_column_mapping(tmp_path: Path) -> None:
    path = tmp_path / "c.csv"
    lines = ["t,o,h,l,c,v", *(",".join(map(str, row)) for row in ROWS)]
    path.write_text("\n".join(lines), encoding="utf-8")
    mapping = dict(zip(CANDLE_COLUMNS, ["t", "o", "h", "l", "c", "v"], strict=True))
    config = IngestConfig(replay_path=str(path), replay_format="csv", csv_columns=mapping)
    assert len(load_replay_candles(config)) == 2


def test_npz_replay_path(tmp_path: Path) -> None:
    candles = load_bundled()[:10]
    path = tmp_path / "c.npz"
    columns: dict[str, Any] = {col: candles[col] for col in CANDLE_COLUMNS}
    np.savez_compressed(path, **columns)
    config = IngestConfig(replay_path=str(path))
    np.testing.assert_array_equal(load_replay_candles(config), candles)


def test_malformed_replay_file_raises_bad_input(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_text("[[1, 2, 3]]", encoding="utf-8")
    with pytest.raises(BadInputError, match="row 1"):
        make_feed(IngestConfig(replay_path=str(path), replay_format="json"), _clock)


def test_speed_option_paces_by_source_time() -> None:
    feed = make_feed(IngestConfig(speed=60.0), _clock)
    assert len(feed.poll(START_NS + S, 1000)) == 5  # a tick per 15 s source = 4 per s, +1 at t=0


def test_synthetic_feed_is_seeded_and_dated_by_the_unix_clock() -> None:
    config = IngestConfig(feed="synthetic", synthetic_seed=5, rate_hz=0.0)
    a = make_feed(config, _clock, unix_clock_ns=lambda: 7 * S)
    b = make_feed(config, _clock, unix_clock_ns=lambda: 7 * S)
    assert isinstance(a, SyntheticFeed)
    ta, tb = a.poll(START_NS, 50), b.poll(START_NS, 50)
    np.testing.assert_array_equal(ta, tb)
    assert ta["source_ts_ns"][0] == 7 * S
