"""StrategyConfig and RiskConfig: defaults load, bad values name their key."""

from __future__ import annotations

import math
from typing import Any

import pytest

from pipeline.configtools import build
from pipeline.errors import ConfigError
from pipeline.strategy.config import RiskConfig, StrategyConfig


def test_defaults_are_valid() -> None:
    assert StrategyConfig().name == "ema_cross"
    assert RiskConfig().max_position == 10.0


def test_builds_from_a_toml_table() -> None:
    table = {"name": "zscore", "params": {"window": 30, "entry_z": 2.5}, "spin_us": 0}
    config = build(StrategyConfig, table, "strategy")
    assert config.params == {"window": 30, "entry_z": 2.5}
    assert config.spin_us == 0


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ({"name": " "}, "strategy.name"),
        ({"spin_us": -1}, "strategy.spin_us"),
        ({"symbol_id": -1}, "strategy.symbol_id"),
        ({"symbol_id": 2**32}, "strategy.symbol_id"),
        ({"params": {"symbol_id": 2}}, "strategy.params.symbol_id"),
    ],
)
def test_bad_strategy_values_name_the_key(table: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        build(StrategyConfig, table, "strategy")
    assert caught.value.key == key


@pytest.mark.parametrize(
    "field", ["max_position", "max_order_notional", "max_orders_per_s", "price_band_bps"]
)
@pytest.mark.parametrize("value", [0.0, -1.0, math.inf, math.nan])
def test_risk_limits_must_be_positive_and_finite(field: str, value: float) -> None:
    with pytest.raises(ConfigError) as caught:
        build(RiskConfig, {field: value}, "risk")
    assert caught.value.key == f"risk.{field}"


def test_order_rate_below_one_would_block_everything() -> None:
    with pytest.raises(ConfigError, match=r"risk\.max_orders_per_s"):
        RiskConfig(max_orders_per_s=0.5)
