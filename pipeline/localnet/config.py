"""The localnet's one config: where it listens, how fast it makes blocks, who owns what."""

from __future__ import annotations

import dataclasses
import math

from pipeline.configtools import require


def _trader() -> dict[str, float]:
    return {"USDT": 100000.0}


def _maker() -> dict[str, float]:
    return {"SOL": 100000.0, "USDT": 10000000.0}


@dataclasses.dataclass(frozen=True)
class LocalnetConfig:
    """``pipeline localnet``: a JSON-RPC + Jupiter-shaped server on one local port.

    Starting balances apply only when the localnet creates its accounts (the first start in
    a data directory); afterwards the saved state is loaded. The ledger takes its opening
    balances from its first chain reading, so they need not repeat ``ledger.initial_balances``.
    """

    host: str = "127.0.0.1"
    port: int = 8899  # 0: any free port (the manifest file says which)
    block_interval_ms: float = 50.0  # mainnet makes a block every ~400 ms
    window_blocks: int = 150  # blocks a blockhash stays valid
    spread_bps: float = 10.0  # the maker's price = last tick +/- this
    quote_ttl_s: float = 5.0
    trader_balances: dict[str, float] = dataclasses.field(default_factory=_trader)
    maker_balances: dict[str, float] = dataclasses.field(default_factory=_maker)

    def __post_init__(self) -> None:
        require(self.host in ("127.0.0.1", "::1", "localhost"), "localnet.host", self.host,
                "the localnet serves keys-in-hand trading: it listens on localhost only")
        require(0 <= self.port < 65536, "localnet.port", self.port, "not a port (0 = any)")
        require(math.isfinite(self.block_interval_ms) and self.block_interval_ms >= 1,
                "localnet.block_interval_ms", self.block_interval_ms, "must be >= 1")
        require(self.window_blocks >= 2, "localnet.window_blocks", self.window_blocks,
                "must be >= 2")
        require(math.isfinite(self.spread_bps) and 0 <= self.spread_bps < 10_000,
                "localnet.spread_bps", self.spread_bps, "must be >= 0 and below 10000")
        require(self.quote_ttl_s > 0, "localnet.quote_ttl_s", self.quote_ttl_s, "must be > 0")
        for table, name in ((self.trader_balances, "trader_balances"),
                            (self.maker_balances, "maker_balances")):
            for asset, amount in table.items():
                require(math.isfinite(amount) and amount >= 0, f"localnet.{name}.{asset}",
                        amount, "must be a finite, non-negative amount")
