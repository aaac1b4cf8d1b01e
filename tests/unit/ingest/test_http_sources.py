"""Coingecko, Hermes and Jupiter against local HTTP servers: parsing, keys, cache, 429s,
the persistent rate limiter, timeouts and malformed bodies."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import LocalServer, Request, Route, json_reply, slow

from pipeline.errors import BadInputError, TemporaryError
from pipeline.ingest.http import HttpClient, RateLimitedError, RateLimiter, parse_retry_after
from pipeline.ingest.sources import CoingeckoSource, HermesSource, JupiterSource
from pipeline.records import SourceId

Start = Callable[[dict[str, Route]], LocalServer]
SOL_FEED = "ef0d8b6fda2ceba41da15d4095d1da392a0d2f8ed0c6c7bc0f4cfac8c280b56d"
HTML_429 = (b"<!DOCTYPE html><html><head><title>429 Too Many Requests</title></head>"
            b"<body>Rate limited</body></html>")


def client(server: LocalServer, cache_dir: Path, **kwargs: Any) -> HttpClient:
    options: dict[str, Any] = {"cache_ttl_s": 30.0, "calls_per_min": 30.0,
                               "timeouts_s": (0.5, 1.0), "max_retry_after_s": 600.0}
    options.update(kwargs)
    return HttpClient(kwargs.pop("name", "coingecko"), server.url, cache_dir=cache_dir,
                      **{k: v for k, v in options.items() if k != "name"})


def coingecko_route(price: float = 142.37, updated: int = 1_748_000_000) -> Route:
    def answer(request: Request) -> tuple[int, dict[str, str], bytes]:
        assert request.query["include_last_updated_at"] == ["true"]
        return json_reply({"solana": {"usd": price, "last_updated_at": updated}})
    return answer


def test_coingecko_price_timestamp_key_header_and_cache(local_http: Start,
                                                        tmp_path: Path) -> None:
    server = local_http({"/simple/price": coingecko_route()})
    http = client(server, tmp_path, headers={"x-cg-demo-api-key": "demo-secret"})
    source = CoingeckoSource(http, {"solana": 1}, "usd")
    quotes = source.fetch()
    assert [(q.symbol_id, q.price, q.source_ts_ns, q.source) for q in quotes] == [
        (1, 142.37, 1_748_000_000 * 10**9, SourceId.COINGECKO)]
    assert server.requests[0].headers["x-cg-demo-api-key"] == "demo-secret"
    source.fetch()
    assert server.hits("/simple/price") == 1  # the second answer came from the cache
    http.close()
    restarted = CoingeckoSource(client(server, tmp_path), {"solana": 1}, "usd")
    restarted.fetch()
    assert server.hits("/simple/price") == 1  # the cache file survives a restart
    assert b"demo-secret" not in (tmp_path / "coingecko.sqlite").read_bytes()


def test_429_with_html_body_honours_retry_after_across_restarts(local_http: Start,
                                                                 tmp_path: Path) -> None:
    server = local_http({"/simple/price": lambda _r: (
        429, {"Content-Type": "text/html", "Retry-After": "119"}, HTML_429)})
    http = client(server, tmp_path, cache_ttl_s=0.0)
    with pytest.raises(RateLimitedError) as caught:
        CoingeckoSource(http, {"solana": 1}, "usd").fetch()
    assert caught.value.retry_after_s == 119.0
    restarted = client(server, tmp_path, cache_ttl_s=0.0)
    with pytest.raises(RateLimitedError):
        CoingeckoSource(restarted, {"solana": 1}, "usd").fetch()
    assert server.hits("/simple/price") == 1  # the block held without asking again


def test_missing_retry_after_waits_the_default_and_dates_are_understood() -> None:
    assert parse_retry_after(None, 0.0) is None
    assert parse_retry_after("7", 0.0) == 7.0
    assert parse_retry_after("Thu, 01 Jan 1970 00:01:40 GMT", 40.0) == 60.0
    assert parse_retry_after("soon", 0.0) is None


def test_own_rate_limit_survives_a_restart(local_http: Start, tmp_path: Path) -> None:
    server = local_http({"/simple/price": coingecko_route()})
    now = [1000.0]
    http = client(server, tmp_path, cache_ttl_s=0.0, calls_per_min=2, clock_s=lambda: now[0])
    source = CoingeckoSource(http, {"solana": 1}, "usd")
    source.fetch()
    source.fetch()
    with pytest.raises(RateLimitedError) as caught:
        source.fetch()
    assert caught.value.retry_after_s == pytest.approx(60.0)
    limiter = RateLimiter(tmp_path / "coingecko.ratelimit.json", 2, clock_s=lambda: now[0])
    assert limiter.wait_s() == pytest.approx(60.0)
    now[0] += 61.0
    assert limiter.wait_s() == 0.0
    assert server.hits("/simple/price") == 2


def test_timeouts_errors_and_malformed_bodies(local_http: Start, tmp_path: Path) -> None:
    server = local_http({
        "/slow": slow(coingecko_route(), 1.0),
        "/broken": lambda _r: (502, {"Content-Type": "text/html"}, b"<html>bad gateway</html>"),
        "/garbage": lambda _r: (200, {"Content-Type": "application/json"}, b"{not json"),
        "/simple/price": lambda _r: json_reply({"solana": {"usd": "142"}}),
    })
    http = client(server, tmp_path, cache_ttl_s=0.0, timeouts_s=(0.5, 0.2))
    with pytest.raises(TemporaryError, match="timed out"):
        http.get_json("/slow", {})
    with pytest.raises(TemporaryError, match="HTTP 502"):
        http.get_json("/broken", {})
    with pytest.raises(BadInputError, match="malformed body"):
        http.get_json("/garbage", {})
    with pytest.raises(BadInputError, match="last_updated_at"):
        CoingeckoSource(http, {"solana": 1}, "usd").fetch()


def test_hermes_scales_integer_strings_and_checks_confidence(local_http: Start,
                                                             tmp_path: Path) -> None:
    entry = {"id": SOL_FEED, "price": {"price": "14237000000", "conf": "7120000", "expo": -8,
                                       "publish_time": 1748000001},
             "ema_price": {"price": "14230000000", "conf": "7000000", "expo": -8,
                           "publish_time": 1748000001},
             "metadata": {"slot": 345, "proof_available_time": 1748000002}}
    wide = {**entry, "price": {**entry["price"], "conf": "900000000"}}
    answers = iter([entry, wide])
    server = local_http({"/v2/updates/price/latest": lambda _r: json_reply(
        {"binary": {"encoding": "hex", "data": ["00"]}, "parsed": [next(answers)]})})
    http = client(server, tmp_path, name="hermes", cache_ttl_s=0.0,
                  headers={"Authorization": "Bearer hermes-secret"})
    source = HermesSource(http, {SOL_FEED: 1}, max_conf_bps=50.0)
    [quote] = source.fetch()
    assert quote.price == pytest.approx(142.37)
    assert quote.source_ts_ns == 1748000001 * 10**9
    request = server.requests[0]
    assert request.query["ids[]"] == [SOL_FEED]
    assert request.headers["authorization"] == "Bearer hermes-secret"
    with pytest.raises(BadInputError, match="conf/price"):
        source.fetch()


def test_jupiter_quote_gives_the_price_of_one_base_unit(local_http: Start,
                                                        tmp_path: Path) -> None:
    server = local_http({"/swap/v1/quote": lambda r: json_reply({
        "inputMint": r.query["inputMint"][0], "inAmount": r.query["amount"][0],
        "outputMint": r.query["outputMint"][0], "outAmount": "142310000",
        "otherAmountThreshold": "141598450", "swapMode": "ExactIn", "slippageBps": 50,
        "priceImpactPct": "0", "routePlan": []})})
    http = client(server, tmp_path, name="jupiter", headers={"x-api-key": "jup-secret"})
    source = JupiterSource(http, {1: ("So11111111111111111111111111111111111111112",
                                      "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB", 9, 6)},
                           clock_ns=lambda: 5)
    [quote] = source.fetch()
    assert quote.price == pytest.approx(142.31)
    assert quote.source_ts_ns == 5
    assert server.requests[0].query["amount"] == ["1000000000"]
    assert server.requests[0].headers["x-api-key"] == "jup-secret"
