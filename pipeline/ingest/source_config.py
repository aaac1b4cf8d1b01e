"""Config tables of the live sources and of tick validation (``[ingest.live]``,
``[ingest.validation]``), nested in :class:`~pipeline.ingest.config.IngestConfig`.

Kept apart from the feed/pacing options because they change for other reasons: endpoints,
keys and rate limits follow the provider's plan; validation limits follow the market.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from pipeline.configtools import require

CROSS_CHECKS: Final = ("", "jupiter", "coingecko", "hermes")
COINGECKO_KEY_KINDS: Final = ("demo", "pro")


def _positive(key: str, value: float) -> None:
    require(math.isfinite(value) and value > 0.0, key, value, "must be a finite number > 0")


@dataclass(frozen=True)
class LiveConfig:
    """Endpoints, keys, timeouts and rate limits of the network price sources.

    Timeouts suit ~80 ms round trips: a TCP + TLS handshake is 2-3 round trips, so
    ``connect_timeout_s`` 0.5 leaves room for one lost SYN; ``read_timeout_s`` bounds a
    slow provider so the source thread moves on to the next endpoint.
    """

    poll_interval_s: float = 2.0  # how often each HTTP/RPC source is asked
    connect_timeout_s: float = 0.5
    read_timeout_s: float = 1.5
    cache_ttl_s: float = 30.0  # requests-cache expiry of HTTP responses
    calls_per_min: float = 30.0  # per HTTP provider; the Coingecko demo tier allows 30
    max_retry_after_s: float = 600.0  # cap on a provider's Retry-After
    coingecko_url: str = "https://api.coingecko.com/api/v3"
    coingecko_pro_url: str = "https://pro-api.coingecko.com/api/v3"
    coingecko_api_key: str = ""
    coingecko_key_kind: str = "demo"  # demo | pro (pro uses coingecko_pro_url)
    coingecko_vs_currency: str = "usd"
    hermes_url: str = "https://hermes.pyth.network"
    hermes_api_key: str = ""  # sent as Authorization: Bearer
    jupiter_url: str = "https://api.jup.ag"
    jupiter_api_key: str = ""  # sent as x-api-key
    rpc_urls: tuple[str, ...] = ("https://api.mainnet-beta.solana.com",)
    ws_urls: tuple[str, ...] = ()  # accountSubscribe endpoints; empty = poll only
    ws_retry_s: float = 30.0  # after a websocket failure, poll this long before retrying it
    pyth_max_conf_bps: float = 50.0  # reject a Pyth price whose conf/price is wider
    cross_check: str = ""  # "" | jupiter | coingecko | hermes
    cross_check_max_bps: float = 100.0  # flag ticks this far from the cross-check price
    cross_check_max_age_s: float = 30.0  # an older cross-check price is not compared

    def __post_init__(self) -> None:
        for key in ("poll_interval_s", "connect_timeout_s", "read_timeout_s", "calls_per_min",
                    "max_retry_after_s", "ws_retry_s", "pyth_max_conf_bps",
                    "cross_check_max_bps", "cross_check_max_age_s"):
            _positive(f"ingest.live.{key}", getattr(self, key))
        require(math.isfinite(self.cache_ttl_s) and self.cache_ttl_s >= 0.0,
                "ingest.live.cache_ttl_s", self.cache_ttl_s, "must be >= 0 (0 = no cache)")
        require(self.coingecko_key_kind in COINGECKO_KEY_KINDS, "ingest.live.coingecko_key_kind",
                self.coingecko_key_kind, f"must be one of {COINGECKO_KEY_KINDS}")
        require(self.cross_check in CROSS_CHECKS, "ingest.live.cross_check", self.cross_check,
                f"must be one of {CROSS_CHECKS}")
        require(len(self.rpc_urls) >= 1, "ingest.live.rpc_urls", self.rpc_urls,
                "need at least one RPC endpoint")
        for key, urls in (("rpc_urls", self.rpc_urls), ("ws_urls", self.ws_urls)):
            schemes = ("http://", "https://") if key == "rpc_urls" else ("ws://", "wss://")
            bad = [u for u in urls if not u.startswith(schemes)]
            require(not bad, f"ingest.live.{key}", bad, f"must start with {' or '.join(schemes)}")

    def __repr__(self) -> str:  # keys must never reach a log line
        return f"LiveConfig(poll_interval_s={self.poll_interval_s}, rpc_urls={self.rpc_urls})"


@dataclass(frozen=True)
class ValidationConfig:
    """Limits applied to every tick just before it enters the tick ring.

    Rejected: not finite, <= 0, unknown symbol, source time not after the last accepted one
    for the symbol, older than ``max_age_s`` (live sources only: replayed history is old by
    design), a move beyond ``max_jump_pct`` from the last good price (after
    ``jump_reanchor_ticks`` consecutive such rejects the new level is accepted, flagged),
    and a flat zero-volume run longer than ``halt_flat_ticks`` (a halted market prints
    no real prices; only sources with volume). Flagged SUSPECT: the first tick after a gap
    in source time longer than ``max_gap_s``.
    """

    enabled: bool = True
    max_age_s: float = 120.0
    max_jump_pct: float = 10.0
    jump_reanchor_ticks: int = 5
    max_gap_s: float = 300.0
    halt_flat_ticks: int = 40  # 10 flat one-minute candles of four ticks each
    log_quiet_s: float = 10.0  # a reason logs again only after this long without it

    def __post_init__(self) -> None:
        for key in ("max_age_s", "max_jump_pct", "max_gap_s", "log_quiet_s"):
            _positive(f"ingest.validation.{key}", getattr(self, key))
        require(self.jump_reanchor_ticks >= 1, "ingest.validation.jump_reanchor_ticks",
                self.jump_reanchor_ticks, "must be >= 1")
        require(self.halt_flat_ticks >= 2, "ingest.validation.halt_flat_ticks",
                self.halt_flat_ticks, "must be >= 2")
