"""The ``[cluster]`` section: loaded from TOML and the environment, and each bad value refused
naming its key; without it, one implicit shard 0 on host ``local``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline.cluster.config import LOCAL_HOST, ClusterConfig, MarketConfig, ShardConfig
from pipeline.config import load_config
from pipeline.errors import ConfigError

SYMBOLS = [{"id": 1, "name": "SOL/USDT", "base": "SOL", "quote": "USDT"},
           {"id": 2, "name": "JUP/USDC", "base": "JUP", "quote": "USDC"}]


def _shard(shard_id: int, host: str, *markets: tuple[str, str | int]) -> dict[str, Any]:
    return {"id": shard_id, "host": host,
            "markets": [{"venue": venue, "symbol": symbol} for venue, symbol in markets]}


def _cluster(**cluster: Any) -> dict[str, Any]:
    """A two-host cluster, with ``cluster`` replacing any of its keys."""
    table = {"host": "a", "hosts": ["a", "b"],
             "shards": [_shard(0, "a", ("paper", "SOL/USDT")), _shard(1, "b", ("paper", 2))]}
    return {"symbols": SYMBOLS, "cluster": {**table, **cluster}}


def _refused(overrides: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(None, environ={}, overrides=overrides)
    return caught.value


def test_without_a_cluster_section_one_host_runs_everything() -> None:
    assert load_config(None, environ={}).cluster == ClusterConfig(LOCAL_HOST, (), ())


def test_a_cluster_loads_from_toml_with_symbols_by_name_or_id(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.toml"
    path.write_text('''
[[symbols]]
id = 1
name = "SOL/USDT"
base = "SOL"
quote = "USDT"

[cluster]
host = "b"
hosts = ["a", "b"]

[[cluster.shards]]
id = 0
host = "a"
markets = [{ venue = "paper", symbol = "SOL/USDT" }]

[[cluster.shards]]
id = 1023
host = "b"
markets = [{ venue = "solana", symbol = 1 }]
''')
    cluster = load_config(path, environ={}).cluster
    assert cluster.host == "b"
    assert cluster.shards == (
        ShardConfig(0, "a", (MarketConfig("paper", "SOL/USDT"),)),
        ShardConfig(1023, "b", (MarketConfig("solana", 1),)))


def test_each_host_names_itself_from_the_environment() -> None:
    environ = {"PIPELINE__CLUSTER__HOST": "b", "PIPELINE__CLUSTER__HOSTS": '["a", "b"]',
               "PIPELINE__CLUSTER__SHARDS":
                   '[{ id = 4, host = "b", markets = [{ venue = "paper", symbol = 1 }] }]'}
    cluster = load_config(None, environ=environ).cluster
    assert cluster.host == "b"
    assert cluster.shards == (ShardConfig(4, "b", (MarketConfig("paper", 1),)),)


@pytest.mark.parametrize(("cluster", "key"), [
    # Without shards: a single host, named local.
    ({"hosts": ["a"], "shards": []}, "cluster.shards"),
    ({"host": "a", "hosts": [], "shards": []}, "cluster.host"),
    # Hosts: named, once each, this one among them.
    ({"hosts": []}, "cluster.hosts"),
    ({"hosts": ["a", " "]}, "cluster.hosts[1]"),
    # A host's name is its schema in the consolidated PostgreSQL ledger.
    ({"hosts": ["a", "Host-B"]}, "cluster.hosts[1]"),
    ({"hosts": ["a", "cluster"]}, "cluster.hosts[1]"),
    ({"hosts": ["a", "pg_b"]}, "cluster.hosts[1]"),
    ({"hosts": ["a", "b" * 32]}, "cluster.hosts[1]"),
    ({"hosts": ["a", "b", "a"]}, "cluster.hosts[2]"),
    ({"host": "c"}, "cluster.host"),
    # Shard ids: unique, and within the 10 shard bits of an order id.
    ({"shards": [_shard(-1, "a", ("paper", 1))]}, "cluster.shards[0].id"),
    ({"shards": [_shard(1024, "a", ("paper", 1))]}, "cluster.shards[0].id"),
    ({"shards": [_shard(3, "a", ("paper", 1)), _shard(3, "b", ("paper", 2))]},
     "cluster.shards[1].id"),
    ({"shards": [_shard(True, "a", ("paper", 1))]}, "cluster.shards[0].id"),
    # Every shard on a named host, with markets of known venues and symbols.
    ({"shards": [_shard(0, "c", ("paper", 1))]}, "cluster.shards[0].host"),
    ({"shards": [_shard(0, "a")]}, "cluster.shards[0].markets"),
    ({"shards": [_shard(0, "a", ("binance", 1))]}, "cluster.shards[0].markets[0].venue"),
    ({"shards": [_shard(0, "a", ("paper", "BTC/USDT"))]},
     "cluster.shards[0].markets[0].symbol"),
    ({"shards": [_shard(0, "a", ("paper", 1), ("paper", 9))]},
     "cluster.shards[0].markets[1].symbol"),
    ({"shards": [_shard(0, "a", ("paper", 1.5))]},  # type: ignore[arg-type]
     "cluster.shards[0].markets[0].symbol"),
    # A market in one shard only, whether named by name or by id.
    ({"shards": [_shard(0, "a", ("paper", "SOL/USDT")), _shard(1, "b", ("paper", 1))]},
     "cluster.shards[1].markets[0]"),
    ({"shards": [_shard(0, "a", ("paper", 2), ("paper", "JUP/USDC"))]},
     "cluster.shards[0].markets[1]"),
    # Typos and missing keys.
    ({"shard": []}, "cluster.shard"),
    ({"shards": [{"id": 0, "host": "a"}]}, "cluster.shards[0]"),
    ({"shards": [{**_shard(0, "a", ("paper", 1)), "hots": "a"}]}, "cluster.shards[0].hots"),
])
def test_bad_cluster_values_are_refused_naming_the_key(cluster: dict[str, Any],
                                                       key: str) -> None:
    assert _refused(_cluster(**cluster)).key == key


def test_the_same_market_on_two_venues_is_two_markets() -> None:
    overrides = _cluster(shards=[_shard(0, "a", ("paper", 1)), _shard(1, "b", ("solana", 1))])
    assert len(load_config(None, environ={}, overrides=overrides).cluster.shards) == 2


def test_a_duplicate_market_names_the_shard_that_has_it() -> None:
    error = _refused(_cluster(shards=[_shard(5, "a", ("paper", "SOL/USDT")),
                                      _shard(6, "b", ("paper", 1))]))
    assert "already in cluster.shards[0] (shard 5)" in str(error)
