"""A :class:`~pipeline.ingest.feed.Feed` over network sources, run off the tick path.

The sources (HTTP with its cache and rate limiter, Solana RPC, websockets) run on one
background thread with its own asyncio loop; they hand ticks to the ingest loop through a
deque, so a slow provider, a 429 back-off or a reconnect never blocks ``poll``. The ingest
loop checks the deque every :data:`POLL_NS` (a few milliseconds, against provider round
trips of ~80 ms and prices that update every few hundred ms at best).

Optionally a second source cross-checks the first: a tick more than
``cross_check_max_bps`` from a recent cross-check price is flagged SUSPECT.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Protocol

import numpy as np

from pipeline.errors import BadInputError, TemporaryError
from pipeline.ingest.http import HttpClient, RateLimitedError, RequestFn
from pipeline.ingest.pyth import normalise_feed_id
from pipeline.ingest.sources import (
    CoingeckoSource,
    HermesSource,
    JupiterSource,
    PythRpcSource,
    Quote,
)
from pipeline.ingest.validate import BurstLog
from pipeline.records import TICK_DTYPE, TickFlag

if TYPE_CHECKING:
    from pipeline.config import SymbolConfig
    from pipeline.ingest.config import IngestConfig

POLL_NS: Final = 5_000_000
_NS_PER_S: Final = 1_000_000_000
_SUSPECT: Final = int(TickFlag.SUSPECT)

ErrorFn = Callable[[str, str], None]  # (source name, reason)


class Source(Protocol):
    source: Any

    def fetch(self) -> list[Quote]: ...


class LiveFeed:
    """Ticks from ``primary`` (and a cross-check), fetched on a background thread."""

    def __init__(self, primary: Source | PythRpcSource, cross: Source | PythRpcSource | None,
                 *,
                 interval_s: float, cross_max_bps: float, cross_max_age_s: float,
                 ws_urls: Sequence[str] = (), ws_retry_s: float = 30.0,
                 log: logging.Logger | None = None, on_error: ErrorFn | None = None,
                 clock_ns: Callable[[], int] = time.monotonic_ns) -> None:
        self._primary = primary
        self._cross = cross
        self._interval_s = interval_s
        self._cross_max = cross_max_bps / 1e4
        self._cross_max_age_ns = int(cross_max_age_s * _NS_PER_S)
        self._ws_urls = list(ws_urls)
        self._ws_retry_s = ws_retry_s
        self._log = log or logging.getLogger(__name__)
        self._burst = BurstLog(self._log, 30.0)
        self._on_error = on_error
        self._clock_ns = clock_ns
        self._ready: collections.deque[np.ndarray] = collections.deque()
        self._last_ts: dict[int, int] = {}  # symbol -> newest source time emitted
        self._cross_prices: dict[int, tuple[float, int]] = {}  # symbol -> (price, mono ns)
        self.streaming = False  # a websocket subscription is delivering
        self.errors = 0
        self.cross_flagged = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._thread_main, name="live-sources",
                                        daemon=True)
        self._thread.start()

    # -- the Feed interface (ingest loop thread) -------------------------------------------
    @property
    def exhausted(self) -> bool:
        return False

    def poll(self, now_ns: int, max_ticks: int) -> np.ndarray:
        """Ticks fetched since the last poll (at most ``max_ticks``, the rest stay queued)."""
        pieces: list[np.ndarray] = []
        taken = 0
        while self._ready and taken < max_ticks:
            batch = self._ready.popleft()
            if taken + len(batch) > max_ticks:
                self._ready.appendleft(batch[max_ticks - taken:])
                batch = batch[: max_ticks - taken]
            pieces.append(batch)
            taken += len(batch)
        if not pieces:
            return np.empty(0, dtype=TICK_DTYPE)
        return pieces[0] if len(pieces) == 1 else np.concatenate(pieces)

    def next_due_ns(self) -> int:
        return self._clock_ns() + POLL_NS

    def close(self) -> None:
        """Stop the source thread (it finishes its current request first)."""
        self._stop.set()
        self._thread.join(timeout=5.0)

    # -- the source thread -------------------------------------------------------------------
    def _thread_main(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        tasks = [asyncio.create_task(self._pump(self._primary, self._emit))]
        if self._cross is not None:
            tasks.append(asyncio.create_task(self._pump(self._cross, self._remember_cross)))
        if self._ws_urls and isinstance(self._primary, PythRpcSource):
            tasks.append(asyncio.create_task(self._stream(self._primary)))
        while not self._stop.is_set():
            await asyncio.sleep(0.05)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for source in (self._primary, self._cross):
            if isinstance(source, PythRpcSource):
                await source.aclose()
            elif source is not None and isinstance(getattr(source, "http", None), HttpClient):
                source.http.close()  # type: ignore[attr-defined]

    async def _pump(self, source: Source | PythRpcSource,
                    deliver: Callable[[list[Quote]], None]) -> None:
        """Fetch, deliver, wait; errors are counted and logged once per burst, never fatal."""
        name = source.source.name.lower()
        while True:
            wait_s = self._interval_s
            if not (self.streaming and source is self._primary):
                try:
                    if isinstance(source, PythRpcSource):
                        quotes = await source.fetch_async()
                    else:
                        quotes = await asyncio.to_thread(source.fetch)
                    deliver(quotes)
                except RateLimitedError as exc:
                    self._error(name, "rate_limited", exc)
                    wait_s = max(wait_s, exc.retry_after_s)
                except TemporaryError as exc:
                    self._error(name, "unavailable", exc)
                except BadInputError as exc:
                    self._error(name, "malformed", exc)
            await asyncio.sleep(wait_s)

    async def _stream(self, source: PythRpcSource) -> None:
        """Prefer accountSubscribe; while it is down, the poller covers (see ``_pump``)."""
        index = 0
        while True:
            url = self._ws_urls[index % len(self._ws_urls)]
            try:
                await source.subscribe(url, self._emit, self._subscribed)
                raise TemporaryError("websocket closed by the server")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # any failure: fall back to polling, retry later
                self.streaming = False
                self._error("pyth", "websocket", exc)
            index += 1
            await asyncio.sleep(self._ws_retry_s)

    def _subscribed(self) -> None:
        self.streaming = True
        self._log.info("Pyth accounts streaming over accountSubscribe; polling paused",
                       extra={"event": "ingest.ws_subscribed"})

    def _error(self, name: str, reason: str, exc: BaseException) -> None:
        self.errors += 1
        if self._on_error is not None:
            self._on_error(name, reason)
        self._burst.note("source_error", f"{name}.{reason}", 1, str(exc)[:300])

    def _remember_cross(self, quotes: list[Quote]) -> None:
        now = self._clock_ns()
        for quote in quotes:
            self._cross_prices[quote.symbol_id] = (quote.price, now)

    def _emit(self, quotes: list[Quote]) -> None:
        """Queue the quotes newer than the last one per symbol as ticks."""
        fresh = [q for q in quotes if q.source_ts_ns > self._last_ts.get(q.symbol_id, -1)]
        if not fresh:
            return  # a cached or unchanged answer: the same print is not a new tick
        ticks = np.zeros(len(fresh), dtype=TICK_DTYPE)
        now = self._clock_ns()
        for i, quote in enumerate(fresh):
            self._last_ts[quote.symbol_id] = quote.source_ts_ns
            ticks[i] = (0, 0, quote.source_ts_ns, quote.price, 0.0, quote.symbol_id,
                        int(quote.source), self._cross_flag(quote, now))
        self._ready.append(ticks)

    def _cross_flag(self, quote: Quote, now_ns: int) -> int:
        reference = self._cross_prices.get(quote.symbol_id)
        if reference is None or now_ns - reference[1] > self._cross_max_age_ns:
            return 0
        if abs(quote.price / reference[0] - 1.0) > self._cross_max:
            self.cross_flagged += 1
            if self._on_error is not None:
                self._on_error(quote.source.name.lower(), "cross_check")
            return _SUSPECT
        return 0


def make_live_feed(config: IngestConfig, symbols: Sequence[SymbolConfig], data_dir: Path,
                   log: logging.Logger | None = None,
                   on_error: ErrorFn | None = None, *,
                   on_request: RequestFn | None = None) -> LiveFeed:
    """The live feed ``config.feed`` names, for the symbols that map to it."""
    live = config.live
    primary = _make_source(config.feed, config, symbols, data_dir, on_request)
    cross = (_make_source(live.cross_check, config, symbols, data_dir, on_request)
             if live.cross_check else None)
    return LiveFeed(primary, cross, interval_s=live.poll_interval_s,
                    cross_max_bps=live.cross_check_max_bps,
                    cross_max_age_s=live.cross_check_max_age_s, ws_urls=live.ws_urls,
                    ws_retry_s=live.ws_retry_s, log=log, on_error=on_error)


def _make_source(name: str, config: IngestConfig, symbols: Sequence[SymbolConfig],
                 data_dir: Path, on_request: RequestFn | None) -> Source | PythRpcSource:
    from pipeline.errors import ConfigError

    live = config.live
    cache_dir = data_dir / "cache"

    def http(base_url: str, headers: dict[str, str]) -> HttpClient:
        return HttpClient(name, base_url, cache_dir=cache_dir, cache_ttl_s=live.cache_ttl_s,
                          calls_per_min=live.calls_per_min,
                          timeouts_s=(live.connect_timeout_s, live.read_timeout_s),
                          max_retry_after_s=live.max_retry_after_s, headers=headers,
                          on_request=on_request)

    source: Source | PythRpcSource
    if name == "coingecko":
        ids = {s.coingecko_id: s.id for s in symbols if s.coingecko_id}
        pro = live.coingecko_key_kind == "pro"
        headers = {}
        if live.coingecko_api_key:
            headers[f"x-cg-{live.coingecko_key_kind}-api-key"] = live.coingecko_api_key
        source = CoingeckoSource(http(live.coingecko_pro_url if pro else live.coingecko_url,
                                      headers), ids, live.coingecko_vs_currency)
        mapped, key = bool(ids), "coingecko_id"
    elif name == "hermes":
        by_feed = {normalise_feed_id(s.pyth_feed_id): s.id for s in symbols if s.pyth_feed_id}
        headers = ({"Authorization": f"Bearer {live.hermes_api_key}"}
                   if live.hermes_api_key else {})
        source = HermesSource(http(live.hermes_url, headers), by_feed, live.pyth_max_conf_bps)
        mapped, key = bool(by_feed), "pyth_feed_id"
    elif name == "jupiter":
        pairs = {s.id: (s.base_mint, s.quote_mint, s.base_decimals, s.quote_decimals)
                 for s in symbols if s.base_mint and s.quote_mint}
        headers = {"x-api-key": live.jupiter_api_key} if live.jupiter_api_key else {}
        source = JupiterSource(http(live.jupiter_url, headers), pairs)
        mapped, key = bool(pairs), "base_mint and quote_mint"
    else:  # pyth
        accounts = {s.pyth_account: s.id for s in symbols if s.pyth_account}
        feeds = {s.pyth_account: normalise_feed_id(s.pyth_feed_id)
                 for s in symbols if s.pyth_account}
        source = PythRpcSource(live.rpc_urls, accounts, feeds, live.pyth_max_conf_bps,
                               live.read_timeout_s)
        mapped, key = bool(accounts), "pyth_account"
    if not mapped:
        raise ConfigError(f"symbols[].{key}", "", f"feed {name!r} needs at least one symbol "
                          f"with {key} set")
    return source
