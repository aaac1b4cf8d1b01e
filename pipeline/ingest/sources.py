"""Live price sources: Coingecko, Hermes and Jupiter over HTTP, Pyth accounts over Solana RPC.

Each source turns one provider answer into :class:`Quote` objects for the configured
symbols (mapped per source in ``[[symbols]]``). Sources raise
:class:`~pipeline.errors.TemporaryError` (retry later) or
:class:`~pipeline.errors.BadInputError` (a malformed answer, counted) and never touch the
tick ring: :mod:`pipeline.ingest.live` runs them on their own thread.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from pipeline.errors import BadInputError, TemporaryError
from pipeline.ingest.http import HttpClient
from pipeline.ingest.pyth import PYTH_OWNERS, PythPrice, decode_price_update, parse_hermes
from pipeline.records import SourceId

if TYPE_CHECKING:
    from solana.rpc.async_api import AsyncClient

_NS_PER_S: Final = 1_000_000_000
_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Quote:
    """One price for one symbol; ``source_ts_ns`` is the provider's time (Unix ns)."""

    symbol_id: int
    price: float
    source_ts_ns: int
    source: SourceId


class CoingeckoSource:
    """``/simple/price`` with ``include_last_updated_at`` (the source timestamp)."""

    source = SourceId.COINGECKO

    def __init__(self, http: HttpClient, ids: Mapping[str, int], vs_currency: str) -> None:
        self.http = http
        self._ids = dict(ids)  # coingecko id -> symbol id
        self._vs = vs_currency

    def fetch(self) -> list[Quote]:
        body = self.http.get_json("/simple/price", {
            "ids": ",".join(sorted(self._ids)), "vs_currencies": self._vs,
            "include_last_updated_at": "true"})
        if not isinstance(body, Mapping):
            raise BadInputError("coingecko: expected a JSON object")
        quotes = []
        for coin, symbol_id in self._ids.items():
            entry = body.get(coin)
            if not isinstance(entry, Mapping):
                raise BadInputError(f"coingecko: no entry for {coin!r}")
            price, updated = entry.get(self._vs), entry.get("last_updated_at")
            if (not isinstance(price, int | float) or isinstance(price, bool)
                    or not isinstance(updated, int) or isinstance(updated, bool)):
                raise BadInputError(f"coingecko: {coin!r} lacks a numeric {self._vs!r} "
                                    "and last_updated_at")
            quotes.append(Quote(symbol_id, float(price), updated * _NS_PER_S, self.source))
        return quotes


class HermesSource:
    """Pyth's Hermes ``/v2/updates/price/latest`` (integer strings scaled by ``10^expo``)."""

    source = SourceId.HERMES

    def __init__(self, http: HttpClient, feeds: Mapping[str, int], max_conf_bps: float) -> None:
        self.http = http
        self._feeds = dict(feeds)  # normalised feed id -> symbol id
        self._max_conf_bps = max_conf_bps

    def fetch(self) -> list[Quote]:
        body = self.http.get_json("/v2/updates/price/latest",
                                  {"ids[]": sorted(self._feeds), "parsed": "true"})
        return pyth_quotes(parse_hermes(body), self._feeds, self._max_conf_bps, self.source)


class JupiterSource:
    """A Jupiter quote for one base unit: the on-chain executable price, as a cross-check.

    Quotes carry no timestamp, so the receive time stands in for the source time.
    """

    source = SourceId.JUPITER

    def __init__(self, http: HttpClient, pairs: Mapping[int, tuple[str, str, int, int]],
                 clock_ns: Callable[[], int] = time.time_ns) -> None:
        self.http = http
        self._pairs = dict(pairs)  # symbol id -> (base mint, quote mint, decimals, decimals)
        self._clock_ns = clock_ns

    def fetch(self) -> list[Quote]:
        quotes = []
        for symbol_id, (base, quote, base_dec, quote_dec) in self._pairs.items():
            amount = 10**base_dec
            body = self.http.get_json("/swap/v1/quote", {
                "inputMint": base, "outputMint": quote, "amount": str(amount),
                "slippageBps": "50"})
            try:
                in_amount, out_amount = int(body["inAmount"]), int(body["outAmount"])
            except (KeyError, TypeError, ValueError) as exc:
                raise BadInputError(f"jupiter: malformed quote: {exc!r}") from exc
            if in_amount <= 0:
                raise BadInputError(f"jupiter: inAmount {in_amount}")
            price = (out_amount / 10**quote_dec) / (in_amount / 10**base_dec)
            quotes.append(Quote(symbol_id, price, self._clock_ns(), self.source))
        return quotes


class PythRpcSource:
    """``PriceUpdateV2`` accounts read with ``getMultipleAccounts``, failing over endpoints.

    Only accounts owned by the Pyth push oracle or receiver programs are trusted. The last
    endpoint that answered is tried first; a timeout or error moves to the next.
    """

    source = SourceId.PYTH

    def __init__(self, rpc_urls: Sequence[str], accounts: Mapping[str, int],
                 feeds: Mapping[str, str], max_conf_bps: float, timeout_s: float) -> None:
        self._urls = list(rpc_urls)
        self.accounts = dict(accounts)  # base58 account -> symbol id
        self._feeds = dict(feeds)  # base58 account -> expected feed id ("" = any)
        self._max_conf_bps = max_conf_bps
        self._timeout_s = timeout_s
        self._clients: dict[str, AsyncClient] = {}
        self.current = 0  # index of the endpoint tried first
        self.failovers = 0

    async def fetch_async(self) -> list[Quote]:
        from solders.pubkey import Pubkey

        keys = [Pubkey.from_string(a) for a in self.accounts]
        errors = []
        for attempt in range(len(self._urls)):
            index = (self.current + attempt) % len(self._urls)
            url = self._urls[index]
            try:
                response = await asyncio.wait_for(
                    self._client(url).get_multiple_accounts(keys), self._timeout_s)
            except Exception as exc:  # any endpoint failure means: try the next one
                errors.append(f"{url}: {type(exc).__name__}: {exc}"[:200])
                continue
            if index != self.current:
                self.failovers += 1
                _log.warning("Solana RPC failed over to endpoint %d", index,
                             extra={"event": "ingest.rpc_failover", "endpoint": index})
                self.current = index
            return self.decode([(str(k), v.owner, v.data) if v is not None else (str(k), None, b"")
                                for k, v in zip(keys, response.value, strict=True)])
        raise TemporaryError(f"every RPC endpoint failed: {'; '.join(errors)}")

    def decode(self, accounts: Sequence[tuple[str, Any, bytes]]) -> list[Quote]:
        """Quotes from (account, owner, data) triples; BadInputError on the first bad one."""
        prices = []
        for account, owner, data in accounts:
            if owner is None:
                raise BadInputError(f"pyth: account {account} does not exist")
            if str(owner) not in PYTH_OWNERS:
                raise BadInputError(f"pyth: account {account} is owned by {owner}, "
                                    "not a Pyth program")
            price = decode_price_update(bytes(data))
            expected = self._feeds.get(account, "")
            if expected and price.feed_id != expected:
                raise BadInputError(f"pyth: account {account} holds feed {price.feed_id}, "
                                    f"expected {expected}")
            prices.append((account, price))
        quotes = []
        for account, price in prices:
            quotes.extend(pyth_quotes([price], {price.feed_id: self.accounts[account]},
                                      self._max_conf_bps, self.source))
        return quotes

    def _client(self, url: str) -> AsyncClient:
        client = self._clients.get(url)
        if client is None:
            from solana.rpc.async_api import AsyncClient
            from solana.rpc.commitment import Confirmed

            # Commitment set explicitly: the client's default is Finalized (~13 s behind).
            client = AsyncClient(url, commitment=Confirmed, timeout=self._timeout_s)
            self._clients[url] = client
        return client

    async def subscribe(self, ws_url: str, emit: Callable[[list[Quote]], None],
                        on_subscribed: Callable[[], None]) -> None:
        """Stream the accounts over ``accountSubscribe`` until the socket fails (raises)."""
        from solana.rpc.commitment import Confirmed
        from solana.rpc.websocket_api import SolanaWsClient
        from solders.pubkey import Pubkey

        async with SolanaWsClient(ws_url, request_timeout=self._timeout_s,
                                  open_timeout=self._timeout_s * 2) as ws:
            by_subscription: dict[int, str] = {}
            for account in self.accounts:
                sub = await ws.account_subscribe(pubkey=Pubkey.from_string(account),
                                                 commitment=Confirmed, encoding="base64")
                by_subscription[sub.subscription_id] = account
            on_subscribed()
            async for note in ws:
                account_key = by_subscription.get(note.subscription)
                value = getattr(getattr(note, "result", None), "value", None)
                if account_key is None or value is None:
                    continue
                data = value.data
                if isinstance(data, str | list):  # tolerate a JSON-shaped base64 payload
                    data = base64.b64decode(data[0] if isinstance(data, list) else data)
                emit(self.decode([(account_key, value.owner, bytes(data))]))

    async def aclose(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()


def pyth_quotes(prices: Sequence[PythPrice], feeds: Mapping[str, int], max_conf_bps: float,
                source: SourceId) -> list[Quote]:
    """Quotes for the configured feeds; a price with too wide a confidence is BadInputError."""
    quotes = []
    for price in prices:
        symbol_id = feeds.get(price.feed_id)
        if symbol_id is None:
            continue
        if not price.conf_bps <= max_conf_bps:
            raise BadInputError(f"pyth: feed {price.feed_id} conf/price {price.conf_bps:.1f} bps "
                                f"is wider than {max_conf_bps} bps")
        quotes.append(Quote(symbol_id, price.price, price.publish_ns, source))
    return quotes
