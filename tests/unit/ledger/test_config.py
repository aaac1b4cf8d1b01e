"""LedgerConfig: defaults are valid, bad values are refused naming the key."""

from __future__ import annotations

from typing import Any

import pytest

from pipeline.configtools import build
from pipeline.errors import ConfigError
from pipeline.ledger.config import LedgerConfig


def test_defaults() -> None:
    config = LedgerConfig()
    assert config.commits_per_s == 500.0
    assert config.wal_bytes_per_s == 50e6
    assert config.max_batch == 8192
    assert config.synchronous == "FULL"
    assert config.busy_timeout_ms == 100
    assert config.initial_balances == {"USDT": 100000.0}
    assert config.trade_enabled_default is False


def test_builds_from_a_toml_table() -> None:
    config = build(LedgerConfig, {"synchronous": "NORMAL", "initial_balances": {"USDC": 5},
                                  "trade_enabled_default": True}, "ledger")
    assert config.synchronous == "NORMAL"
    assert config.initial_balances == {"USDC": 5.0}
    assert config.trade_enabled_default is True


@pytest.mark.parametrize(("key", "value"), [
    ("commits_per_s", 0.0),
    ("commits_per_s", float("inf")),
    ("wal_bytes_per_s", -1.0),
    ("max_batch", 0),
    ("synchronous", "OFF"),
    ("synchronous", "full"),
    ("busy_timeout_ms", -1),
    ("initial_balances", {"USDT": -1.0}),
    ("initial_balances", {"USDT": float("nan")}),
    ("initial_balances", {"": 1.0}),
])
def test_refuses_bad_values(key: str, value: Any) -> None:
    with pytest.raises(ConfigError) as excinfo:
        LedgerConfig(**{key: value})
    assert excinfo.value.key.startswith(key)


def test_unknown_key_refused() -> None:
    with pytest.raises(ConfigError, match=r"ledger\.synchronus"):
        build(LedgerConfig, {"synchronus": "FULL"}, "ledger")
