"""A live reload may change the strategy's market only within its shard.

Order ids carry the shard (pipeline.ids); a process that reloaded into another shard's
market would go on issuing ids of the old shard for it, or trade a market another host owns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.config import PipelineConfig, load_config
from pipeline.errors import ConfigError
from pipeline.runtime import Runtime
from pipeline.strategy.process import StrategyService

SYMBOLS = [{"id": 1, "name": "SOL/USDT", "base": "SOL", "quote": "USDT"},
           {"id": 2, "name": "JUP/USDC", "base": "JUP", "quote": "USDC"},
           {"id": 3, "name": "BONK/USDC", "base": "BONK", "quote": "USDC"}]
CLUSTER = {"host": "a", "hosts": ["a", "b"], "shards": [
    {"id": 7, "host": "a", "markets": [{"venue": "paper", "symbol": 1},
                                       {"venue": "paper", "symbol": 3}]},
    {"id": 8, "host": "a", "markets": [{"venue": "paper", "symbol": 2}]},
]}


@pytest.fixture
def config(tmp_path: Path, shm_dir: Path) -> PipelineConfig:
    return load_config(None, environ={}, overrides={
        "data_dir": str(tmp_path / "var"), "rings": {"shm_dir": str(shm_dir)},
        "symbols": SYMBOLS, "cluster": CLUSTER, "strategy": {"symbol_id": 1}})


@pytest.fixture
def strategy(config: PipelineConfig) -> Iterator[StrategyService]:
    runtime = Runtime.build(config, "strategy", to_stderr=False)
    service = StrategyService(runtime)
    try:
        yield service
    finally:
        service.close()
        runtime.close()


def _with_symbol(config: PipelineConfig, symbol_id: int) -> PipelineConfig:
    return dataclasses.replace(
        config, strategy=dataclasses.replace(config.strategy, symbol_id=symbol_id))


def test_a_market_of_the_same_shard_reloads(config: PipelineConfig,
                                            strategy: StrategyService) -> None:
    strategy.reload(_with_symbol(config, 3))


def test_a_market_of_another_shard_is_refused(config: PipelineConfig,
                                              strategy: StrategyService) -> None:
    with pytest.raises(ConfigError, match="moves trading to shard 8") as refused:
        strategy.reload(_with_symbol(config, 2))
    assert refused.value.key == "strategy.symbol_id"

