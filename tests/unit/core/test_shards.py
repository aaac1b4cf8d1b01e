"""Which shard holds a market and which shards this host runs; the start-up check that keeps
a host from trading a market of another host's shard."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from pipeline import bootstrap
from pipeline.cluster.shards import (
    IMPLICIT_SHARD,
    Market,
    Shard,
    ShardMap,
    configured_shard,
    shard_map,
)
from pipeline.config import PROCESSES, PipelineConfig, load_config
from pipeline.errors import ConfigError, OperationalError

SYMBOLS = [{"id": 1, "name": "SOL/USDT", "base": "SOL", "quote": "USDT"},
           {"id": 2, "name": "JUP/USDC", "base": "JUP", "quote": "USDC"},
           {"id": 3, "name": "BONK/USDC", "base": "BONK", "quote": "USDC"}]
CLUSTER = {"hosts": ["a", "b"], "shards": [
    {"id": 7, "host": "a", "markets": [{"venue": "paper", "symbol": "SOL/USDT"},
                                       {"venue": "solana", "symbol": 1}]},
    {"id": 9, "host": "b", "markets": [{"venue": "paper", "symbol": 2}]},
]}


def _config(tmp_path: Path, host: str = "a", symbol_id: int = 1,
            **table: Any) -> PipelineConfig:
    return load_config(environ={}, overrides={
        "data_dir": str(tmp_path / "var"), "symbols": SYMBOLS,
        "cluster": {**CLUSTER, "host": host}, "strategy": {"symbol_id": symbol_id}, **table})


def test_markets_resolve_by_name_or_id_to_their_shard(tmp_path: Path) -> None:
    shards = shard_map(_config(tmp_path))
    sol = frozenset({Market("paper", 1), Market("solana", 1)})
    assert shards.shard_of(Market("paper", 1)) == Shard(7, "a", sol)
    assert shards.shard_of(Market("solana", 1)) == Shard(7, "a", sol)
    assert shards.shard_of(Market("paper", 2)) == Shard(9, "b", frozenset({Market("paper", 2)}))
    assert shards.shard_of(Market("paper", 3)) is None
    assert shards.shard_of(Market("solana", 2)) is None
    assert [s.id for s in shards.local()] == [7]
    assert [s.id for s in shard_map(_config(tmp_path, host="b")).local()] == [9]


def test_without_shards_the_implicit_shard_holds_every_market(tmp_path: Path) -> None:
    config = load_config(environ={}, overrides={"data_dir": str(tmp_path / "var")})
    shards = shard_map(config)
    assert shards.shard_of(Market("solana", 12345)) == IMPLICIT_SHARD
    assert shards.local() == (IMPLICIT_SHARD,)
    assert IMPLICIT_SHARD.id == 0
    assert IMPLICIT_SHARD.host == "local"
    assert configured_shard(config) == IMPLICIT_SHARD


def test_a_host_with_no_shard_runs_none() -> None:
    assert ShardMap("c", [Shard(1, "a", frozenset({Market("paper", 1)}))]).local() == ()


def test_the_configured_market_s_shard_is_this_host_s(tmp_path: Path) -> None:
    assert configured_shard(_config(tmp_path)).id == 7
    assert configured_shard(_config(tmp_path, host="b", symbol_id=2)).id == 9


@pytest.mark.parametrize(("host", "symbol_id", "words"), [
    ("b", 1, "is in shard 7, which runs on host 'a', not on this host 'b'"),
    ("a", 2, "is in shard 9, which runs on host 'b', not on this host 'a'"),
    ("a", 3, "market paper BONK/USDC (executor.venue, strategy.symbol_id) is in no shard"),
    ("a", 99, "market paper 99 (executor.venue, strategy.symbol_id) is in no shard"),
])
def test_a_market_this_host_does_not_run_is_refused_naming_it(
        tmp_path: Path, host: str, symbol_id: int, words: str) -> None:
    config = _config(tmp_path, host=host, symbol_id=symbol_id)
    with pytest.raises(ConfigError, match=re.escape(words)) as caught:
        configured_shard(config)
    assert caught.value.key == "strategy.symbol_id"
    check = {r.name: r for r in bootstrap.run_checks(config, only=frozenset({"shard"}))}
    assert check["shard"].failed
    quiet = _config(tmp_path, host=host, symbol_id=symbol_id, check={"on_start": False})
    for process in PROCESSES:  # all four, with the other start-up checks on or off
        for each in (config, quiet):
            with pytest.raises(OperationalError, match=f"check shard failed: .*{re.escape(words)}"):
                bootstrap.refuse_at_start(process, each, CollectorRegistry(),
                                          logging.getLogger("test"))


def test_the_check_passes_for_this_host_s_market(tmp_path: Path) -> None:
    result, = bootstrap.run_checks(_config(tmp_path), only=frozenset({"shard"}))
    assert result.status == bootstrap.PASS
    assert "shard 7 on this host 'a'" in result.detail
