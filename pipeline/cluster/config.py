"""The ``[cluster]`` config: this host's name, the cluster's hosts, and which shard is where.

A shard is a set of markets (venue, symbol) run together on one host: that host runs the
four processes for it, with its own database and kill word, so nothing on the tick-to-order
path crosses a host. Every host reads the same file and names itself, typically with
``PIPELINE__CLUSTER__HOST=<name>``. Without shards there is one implicit shard 0 on host
``local`` holding every market: a single host, exactly as before sharding.

Checked here: names, shard ids (unique, within the id layout's shard bits), hosts. The
markets' symbols are checked against the ``[[symbols]]`` table by :meth:`check_symbols`,
which :class:`~pipeline.config.PipelineConfig` calls, since only it holds that table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from pipeline.configtools import require
from pipeline.errors import ConfigError
from pipeline.executor.config import VENUES
from pipeline.ids import SHARD_LIMIT

LOCAL_HOST: Final = "local"  # this host's name when no cluster is configured
# A host's name is also its schema in the consolidated PostgreSQL ledger (pipeline.cluster.
# pgschema): an unquoted identifier, not one PostgreSQL or the consolidator uses itself.
HOST_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,30}")
_RESERVED_NAMES: Final = frozenset({"cluster", "public", "information_schema"})


def host_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a host; None if it can."""
    if not HOST_NAME.fullmatch(name) or name in _RESERVED_NAMES or name.startswith("pg_"):
        return (f"must match {HOST_NAME.pattern} (lower-case letters, digits and _, at most "
                f"31 characters) and not be one of {sorted(_RESERVED_NAMES)} or pg_*")
    return None


@dataclass(frozen=True)
class MarketConfig:
    """One market: a venue (an ``executor.venue`` value) and a symbol by name or id."""

    venue: str
    symbol: str | int

    def symbol_id(self, ids_by_name: Mapping[str, int], key: str) -> int:
        """The configured symbol's id; ConfigError naming ``key`` if ``[[symbols]]`` has none."""
        if isinstance(self.symbol, int) and self.symbol in ids_by_name.values():
            return self.symbol
        if isinstance(self.symbol, str) and self.symbol in ids_by_name:
            return ids_by_name[self.symbol]
        raise ConfigError(f"{key}.symbol", self.symbol,
                          "not a configured symbol (a [[symbols]] name or id)")


@dataclass(frozen=True)
class ShardConfig:
    """A shard: its id (carried inside every client order id), its host, its markets."""

    id: int
    host: str
    markets: tuple[MarketConfig, ...]


@dataclass(frozen=True)
class ClusterConfig:
    """The shards, the hosts they run on, and which host this is."""

    host: str = LOCAL_HOST  # this host's name
    hosts: tuple[str, ...] = ()  # every host of the cluster; empty: a single host
    shards: tuple[ShardConfig, ...] = ()

    def __post_init__(self) -> None:
        if not self.shards:
            require(not self.hosts, "cluster.shards", [],
                    "cluster.hosts is set but no shard is: list the shards, or leave the "
                    "[cluster] section out for a single host")
            require(self.host == LOCAL_HOST, "cluster.host", self.host,
                    f"without cluster.shards the one host is {LOCAL_HOST!r}")
            return
        require(bool(self.hosts), "cluster.hosts", list(self.hosts),
                "must name every host of the cluster when cluster.shards is set")
        for index, name in enumerate(self.hosts):
            problem = host_name_problem(name)
            require(problem is None, f"cluster.hosts[{index}]", name, problem or "")
            require(name not in self.hosts[:index], f"cluster.hosts[{index}]", name,
                    "named twice")
        require(self.host in self.hosts, "cluster.host", self.host,
                f"this host must be one of cluster.hosts ({', '.join(self.hosts)})")
        seen: dict[int, int] = {}
        for index, shard in enumerate(self.shards):
            key = f"cluster.shards[{index}]"
            require(0 <= shard.id < SHARD_LIMIT, f"{key}.id", shard.id,
                    f"must be from 0 to {SHARD_LIMIT - 1} (the shard bits of an order id)")
            require(shard.id not in seen, f"{key}.id", shard.id,
                    f"already the id of cluster.shards[{seen.get(shard.id)}]")
            seen[shard.id] = index
            require(shard.host in self.hosts, f"{key}.host", shard.host,
                    f"not one of cluster.hosts ({', '.join(self.hosts)})")
            require(bool(shard.markets), f"{key}.markets", [], "must list at least one market")
            for number, market in enumerate(shard.markets):
                require(market.venue in VENUES, f"{key}.markets[{number}].venue",
                        market.venue, f"must be one of {VENUES} (executor.venue values)")

    def check_symbols(self, ids_by_name: Mapping[str, int]) -> None:
        """Every market names a configured symbol, and is in one shard only."""
        owner: dict[tuple[str, int], str] = {}
        for index, shard in enumerate(self.shards):
            for number, market in enumerate(shard.markets):
                key = f"cluster.shards[{index}].markets[{number}]"
                pair = (market.venue, market.symbol_id(ids_by_name, key))
                require(pair not in owner, key, f"{market.venue} {market.symbol}",
                        f"this market is already in {owner.get(pair)}: a market belongs "
                        "to one shard")
                owner[pair] = f"{key.rpartition('.markets')[0]} (shard {shard.id})"
