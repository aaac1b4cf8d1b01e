"""IngestConfig validation names the key and value; TOML tables build through configtools."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.configtools import build
from pipeline.errors import ConfigError
from pipeline.ingest.config import IngestConfig


def test_defaults() -> None:
    config = IngestConfig()
    assert config.feed == "replay"
    assert config.rate_hz == 300.0
    assert config.speed == 0.0
    assert config.loop
    assert config.replay_path == ""
    assert config.batch_max == 256


def test_builds_from_a_toml_table() -> None:
    table = {"feed": "synthetic", "rate_hz": 1000, "synthetic_seed": 3,
             "csv_columns": {"open": "o"}}
    config = build(IngestConfig, table, "ingest")
    assert config.rate_hz == 1000.0
    assert config.csv_columns == {"open": "o"}


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"feed": "bloomberg"}, "ingest.feed"),
        ({"rate_hz": -1.0}, "ingest.rate_hz"),
        ({"rate_hz": float("nan")}, "ingest.rate_hz"),
        ({"speed": -2.0}, "ingest.speed"),
        ({"speed": 10.0, "feed": "synthetic"}, "ingest.speed"),
        ({"replay_format": "parquet"}, "ingest.replay_format"),
        ({"replay_format": "json"}, "ingest.replay_format"),  # bundled data is npz
        ({"csv_columns": {"price": "p"}}, "ingest.csv_columns"),
        ({"symbol_id": -1}, "ingest.symbol_id"),
        ({"symbol_id": 2**32}, "ingest.symbol_id"),
        ({"synthetic_seed": -1}, "ingest.synthetic_seed"),
        ({"synthetic_start_price": 0.0}, "ingest.synthetic_start_price"),
        ({"synthetic_volatility_bps": -1.0}, "ingest.synthetic_volatility_bps"),
        ({"batch_max": 0}, "ingest.batch_max"),
    ],
)
def test_invalid_values_name_the_key(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        IngestConfig(**kwargs)
    assert caught.value.key == key
