"""The ingest feed metrics: every configured source exported from the start, last-tick
times, and provider HTTP requests counted as cache hits or misses against a local server."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from conftest import LocalServer, Route, json_reply
from prometheus_client import CollectorRegistry

from pipeline.ingest.http import HttpClient, RateLimitedError
from pipeline.metrics import IngestMetrics

Start = Callable[[dict[str, Route]], LocalServer]


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_configured_sources_have_series_before_their_first_tick() -> None:
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    metrics.configure_sources(["coingecko"], ["coingecko", "jupiter"], now_s=1000.0)
    assert _value(registry, "pipeline_ticks_total", source="coingecko") == 0.0
    assert _value(registry, "pipeline_feed_last_tick_timestamp_seconds",
                  source="coingecko") == 1000.0
    for source in ("coingecko", "jupiter"):
        for cache in ("hit", "miss"):
            assert _value(registry, "pipeline_feed_http_requests_total", source=source,
                          cache=cache) == 0.0
    metrics.ticks_written("coingecko", 3, 1005.5)
    assert _value(registry, "pipeline_ticks_total", source="coingecko") == 3.0
    assert _value(registry, "pipeline_feed_last_tick_timestamp_seconds",
                  source="coingecko") == 1005.5


def test_a_reload_drops_the_old_source_and_starts_the_new_one() -> None:
    registry = CollectorRegistry()
    metrics = IngestMetrics(registry)
    metrics.configure_sources(["replay"], [], now_s=1000.0)
    metrics.ticks_written("replay", 10, 1001.0)
    metrics.configure_sources(["hermes"], ["hermes"], now_s=2000.0)
    assert _value(registry, "pipeline_ticks_total", source="replay") is None
    assert _value(registry, "pipeline_feed_last_tick_timestamp_seconds", source="replay") is None
    assert _value(registry, "pipeline_feed_last_tick_timestamp_seconds",
                  source="hermes") == 2000.0
    metrics.configure_sources(["hermes"], ["hermes"], now_s=3000.0)  # unchanged: kept
    assert _value(registry, "pipeline_feed_last_tick_timestamp_seconds",
                  source="hermes") == 2000.0


def test_http_requests_are_counted_as_cache_hits_and_misses(local_http: Start,
                                                            tmp_path: Path) -> None:
    server = local_http({"/simple/price": lambda _r: json_reply({"solana": {"usd": 1.0}})})
    counted: list[tuple[str, str]] = []
    http = HttpClient("coingecko", server.url, cache_dir=tmp_path, cache_ttl_s=30.0,
                      calls_per_min=1.0, timeouts_s=(0.5, 1.0), max_retry_after_s=60.0,
                      on_request=lambda source, cache: counted.append((source, cache)))
    http.get_json("/simple/price", {"ids": "solana"})
    http.get_json("/simple/price", {"ids": "solana"})
    assert counted == [("coingecko", "miss"), ("coingecko", "hit")]
    assert server.hits("/simple/price") == 1
    try:  # not cached, and our own limiter (1 call a minute) holds it back: no request
        http.get_json("/simple/price", {"ids": "bitcoin"})
    except RateLimitedError:
        pass
    else:
        raise AssertionError("the rate limiter let a second call through")
    assert counted == [("coingecko", "miss"), ("coingecko", "hit")]
    http.close()
