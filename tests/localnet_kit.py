"""A real localnet on 127.0.0.1 for tests: LiteSVM chain, block producer, maker, JSON-RPC.

Everything runs in the test process (the server's threads), so a test can read the chain
directly (``chain.status``, token amounts) while the venue under test talks to it over HTTP
exactly as it would talk to a validator and Jupiter. ``admin()`` posts to ``/admin`` (pause
blocks, inject faults) the way an operator's drill would.
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry
from solders.keypair import Keypair
from solders.pubkey import Pubkey
from testkit import eventually

from pipeline.executor.solana.config import SolanaConfig
from pipeline.executor.solana.venue import SolanaVenue
from pipeline.ledger.inflight import Signed
from pipeline.localnet.chain import LocalChain
from pipeline.localnet.maker import Maker, MakerConfig
from pipeline.localnet.rpc import RpcMethods
from pipeline.localnet.server import LocalnetServer
from pipeline.localnet.world import World, open_world
from pipeline.records import INTENT_DTYPE, REPORT_DTYPE, TICK_DTYPE, OrderStatus, Side
from pipeline.solana.account import Market
from pipeline.solana.tokens import unpack_account

SYMBOL_ID = 1
PRICE_USDT = 150.0
DECIMALS = {"SOL": 9, "USDT": 6}
TRADER_START = {"USDT": 100_000.0, "SOL": 10.0}
MAKER_START = {"SOL": 10_000.0, "USDT": 1_000_000.0}


@dataclass
class Localnet:
    chain: LocalChain
    world: World
    maker: Maker
    server: LocalnetServer
    price: list[float] = field(default_factory=lambda: [PRICE_USDT])

    @property
    def url(self) -> str:
        return self.server.url

    def admin(self, body: dict[str, Any]) -> dict[str, Any]:
        request = urllib.request.Request(self.url + "/admin", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            answer: dict[str, Any] = json.loads(response.read())
        return answer

    def market(self) -> Market:
        sol, usdt = self.world.assets["SOL"], self.world.assets["USDT"]
        return Market(str(sol.mint), sol.decimals, str(usdt.mint), usdt.decimals)

    def tokens(self, owner: Pubkey) -> dict[str, int]:
        """The owner's token balances on chain, in base units."""
        out = {}
        for name in self.world.assets:
            account = self.chain.account(self.world.token_account(owner, name))
            out[name] = unpack_account(bytes(account.data))[2] if account else 0
        return out

    def trader_tokens(self) -> dict[str, int]:
        return self.tokens(self.world.trader.pubkey())


@contextmanager
def running_localnet(data_dir: Path, *, window_blocks: int = 150, block_interval_s: float = 0.02,
                     maker_class: type[Maker] = Maker,
                     trader_start: dict[str, float] | None = None) -> Iterator[Localnet]:
    data_dir.mkdir(parents=True, exist_ok=True)
    chain = LocalChain(window_blocks=window_blocks)
    world = open_world(chain, data_dir, DECIMALS, trader_start or TRADER_START, MAKER_START)
    price = [PRICE_USDT]
    maker = maker_class(chain, world, MakerConfig(), lambda _b, _q: price[0],
                        {"SOL/USDT": ("SOL", "USDT")})
    server = LocalnetServer(chain, RpcMethods(chain, world.accounts), maker, host="127.0.0.1",
                            port=0, block_interval_s=block_interval_s)
    server.start()
    try:
        yield Localnet(chain, world, maker, server, price)
    finally:
        server.stop()


def fast_config(**overrides: Any) -> SolanaConfig:
    """Venue settings for tests: short back-off and resend so faults clear quickly."""
    values: dict[str, Any] = {"rpc_timeout_s": 5.0, "backoff_s": 0.02, "rpc_attempts": 8,
                              "resend_interval_s": 0.2, "confirm_poll_s": 0.02}
    values.update(overrides)
    return SolanaConfig(**values)


def make_venue(net: Localnet, *, config: SolanaConfig | None = None,
               keypair: Keypair | None = None,
               in_flight: Callable[[], dict[int, list[Signed]]] = dict,
               registry: CollectorRegistry | None = None, rpc_url: str = "",
               swap_url: str = "", api_key: str = "") -> SolanaVenue:
    """A venue trading on ``net``; ``rpc_url``/``swap_url`` (default: the localnet itself) let
    a test put a recording proxy in front of either side."""
    venue = SolanaVenue(config or fast_config(), rpc_url=rpc_url or net.url,
                        swap_url=swap_url or net.url, api_key=api_key,
                        keypair=keypair or net.world.trader, markets={SYMBOL_ID: net.market()},
                        ledger_in_flight=in_flight, log=logging.getLogger("test.solana"),
                        registry=registry or CollectorRegistry())
    tick = np.zeros(1, dtype=TICK_DTYPE)
    tick["symbol_id"], tick["price"] = SYMBOL_ID, net.price[0]
    venue.on_ticks(tick)
    return venue


def intent(client_order_id: int, side: Side, quantity: float, limit_price: float) -> np.ndarray:
    row = np.zeros(1, dtype=INTENT_DTYPE)
    row["client_order_id"], row["symbol_id"], row["side"] = client_order_id, SYMBOL_ID, side
    row["quantity"], row["limit_price"] = quantity, limit_price
    return row


def collect(venue: SolanaVenue, client_order_ids: set[int],
            timeout_s: float = 30.0) -> list[np.ndarray]:
    """Poll the venue like the executor does (every report flushed at once) until each order
    has its final report; returns every report seen, in order."""
    seen: list[np.ndarray] = []

    def finished() -> bool:
        for report in venue.poll(reports_flushed=True):
            seen.append(report)
        done = {int(r["client_order_id"]) for r in seen if r["status"] != OrderStatus.NEW}
        return client_order_ids <= done

    eventually(finished, timeout_s=timeout_s, interval_s=0.005,
               message=f"final reports for {sorted(client_order_ids)}")
    return seen


def finals(reports: list[np.ndarray]) -> dict[int, np.ndarray]:
    return {int(r["client_order_id"]): r for r in reports if r["status"] != OrderStatus.NEW}


def signatures_of(reports: list[np.ndarray], status: OrderStatus) -> list[str]:
    return [bytes(r["venue_ref"]).decode() for r in reports if r["status"] == status]


def signed_of(reports: list[np.ndarray]) -> list[Signed]:
    """What the ledger would hold for these NEW reports: signature, lastValidBlockHeight,
    the wallet before signing and the message's fee."""
    return [Signed(bytes(r["venue_ref"]).decode(), int(r["last_valid_height"]),
                   (int(r["wallet_slot"]), int(r["wallet_lamports"]), int(r["wallet_base"]),
                    int(r["wallet_quote"])), int(r["message_fee"]))
            for r in reports if r["status"] == OrderStatus.NEW]


__all__ = ["REPORT_DTYPE", "Localnet", "collect", "fast_config", "finals", "intent",
           "make_venue", "running_localnet", "signatures_of", "signed_of"]
