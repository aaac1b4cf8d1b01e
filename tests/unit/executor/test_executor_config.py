"""ExecutorConfig validation names the key and value."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.configtools import build
from pipeline.errors import ConfigError
from pipeline.executor.config import ExecutorConfig


def test_defaults_and_toml_build() -> None:
    config = ExecutorConfig()
    assert (config.venue, config.slippage_bps, config.fee_bps) == ("paper", 2.0, 5.0)
    assert (config.spin_us, config.wake_on_ticks, config.max_pending) == (0, False, 1024)
    config = build(ExecutorConfig, {"fee_bps": 0, "slippage_bps": 1}, "executor")
    assert config.fee_bps == 0.0
    assert config.slippage_bps == 1.0


@pytest.mark.parametrize(
    ("kwargs", "key"),
    [
        ({"venue": "binance"}, "executor.venue"),
        ({"slippage_bps": -0.1}, "executor.slippage_bps"),
        ({"slippage_bps": 10_000.0}, "executor.slippage_bps"),
        ({"fee_bps": -1.0}, "executor.fee_bps"),
        ({"fee_bps": float("inf")}, "executor.fee_bps"),
        ({"spin_us": -1}, "executor.spin_us"),
        ({"max_pending": 0}, "executor.max_pending"),
    ],
)
def test_invalid_values_name_the_key(kwargs: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        ExecutorConfig(**kwargs)
    assert caught.value.key == key
