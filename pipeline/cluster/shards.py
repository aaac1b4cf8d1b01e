"""Which shard a market (venue, symbol) belongs to, and which shards this host runs.

Built from the validated ``[cluster]`` config (:mod:`pipeline.cluster.config`): markets are
resolved to symbol ids there, so a market named ``SOL/USDT`` and one named ``1`` are the
same. Without configured shards, the one implicit shard 0 on host ``local`` holds every
market.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from pipeline.cluster.config import LOCAL_HOST, ClusterConfig
from pipeline.errors import ConfigError

if TYPE_CHECKING:  # pipeline.config imports this package's config: no import cycle at run time
    from pipeline.config import PipelineConfig


@dataclass(frozen=True)
class Market:
    venue: str  # an executor.venue value
    symbol_id: int


@dataclass(frozen=True)
class Shard:
    id: int
    host: str
    markets: frozenset[Market]  # empty for the implicit shard, which holds every market


IMPLICIT_SHARD: Final = Shard(0, LOCAL_HOST, frozenset())


class ShardMap:
    """The cluster's shards, seen from one host."""

    def __init__(self, host: str, shards: Sequence[Shard]) -> None:
        self.host = host
        self.shards = tuple(shards) or (IMPLICIT_SHARD,)
        self._implicit = not shards
        self._by_market = {market: shard for shard in shards for market in shard.markets}

    @classmethod
    def from_config(cls, cluster: ClusterConfig, ids_by_name: Mapping[str, int]) -> ShardMap:
        """From the ``[cluster]`` section and the ``[[symbols]]`` table (name -> id)."""
        shards = []
        for index, shard in enumerate(cluster.shards):
            key = f"cluster.shards[{index}].markets"
            markets = frozenset(Market(m.venue, m.symbol_id(ids_by_name, f"{key}[{number}]"))
                                for number, m in enumerate(shard.markets))
            shards.append(Shard(shard.id, shard.host, markets))
        return cls(cluster.host, shards)

    def shard_of(self, market: Market) -> Shard | None:
        """The shard holding ``market``; None if shards are configured and none holds it."""
        return IMPLICIT_SHARD if self._implicit else self._by_market.get(market)

    def local(self) -> tuple[Shard, ...]:
        """The shards this host runs."""
        return tuple(shard for shard in self.shards if shard.host == self.host)


def shard_map(config: PipelineConfig) -> ShardMap:
    """The config's shards, seen from the host it names (``cluster.host``)."""
    return ShardMap.from_config(config.cluster, {s.name: s.id for s in config.symbols})


def configured_market(config: PipelineConfig) -> Market:
    """The market this host's processes trade: ``strategy.symbol_id`` on ``executor.venue``."""
    return Market(config.executor.venue, config.strategy.symbol_id)


def market_name(config: PipelineConfig, market: Market) -> str:
    """``venue symbol`` for messages, the symbol by its configured name if it has one."""
    names = {s.id: s.name for s in config.symbols}
    return f"{market.venue} {names.get(market.symbol_id, market.symbol_id)}"


def configured_shard(config: PipelineConfig) -> Shard:
    """The shard of the configured market; ConfigError unless this host runs it."""
    shards = shard_map(config)
    market = configured_market(config)
    described = f"market {market_name(config, market)} (executor.venue, strategy.symbol_id)"
    shard = shards.shard_of(market)
    if shard is None:
        raise ConfigError("strategy.symbol_id", market.symbol_id,
                          f"{described} is in no shard of cluster.shards: add it to the "
                          "shard of the host that should trade it")
    if shard.host != shards.host:
        raise ConfigError("strategy.symbol_id", market.symbol_id,
                          f"{described} is in shard {shard.id}, which runs on host "
                          f"{shard.host!r}, not on this host {shards.host!r} (cluster.host): "
                          f"start it on {shard.host!r}, or move the market to a shard of "
                          "this host")
    return shard

