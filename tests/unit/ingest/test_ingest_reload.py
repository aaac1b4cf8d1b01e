"""Reloading a live feed keeps its symbols and stops the old source thread (SIGHUP path)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import LocalServer, Request, Route, json_reply
from testkit import eventually, scratch_shm_dir

from pipeline.config import PipelineConfig, load_config
from pipeline.ingest.process import IngestService
from pipeline.runtime import Runtime

Start = Callable[[dict[str, Route]], LocalServer]


def _config(tmp_path: Path, shm: Path, url: str, poll_interval_s: float) -> PipelineConfig:
    return load_config(environ={}, overrides={
        "data_dir": str(tmp_path / "var"), "rings": {"shm_dir": str(shm)},
        "symbols": [{"id": 1, "name": "SOL/USDT", "base": "SOL", "quote": "USDT",
                     "coingecko_id": "solana"}],
        "ingest": {"feed": "coingecko", "symbol_id": 1,
                   "live": {"coingecko_url": url, "poll_interval_s": poll_interval_s,
                            "cache_ttl_s": 0.0, "calls_per_min": 6000.0}}})


@pytest.fixture
def server(local_http: Start) -> LocalServer:
    def price(_request: Request) -> tuple[int, dict[str, str], bytes]:
        # A fresh print each second: the same print twice is not a new tick.
        return json_reply({"solana": {"usd": 142.0, "last_updated_at": int(time.time())}})
    return local_http({"/simple/price": price})


@pytest.fixture
def ingest(tmp_path: Path, server: LocalServer) -> Iterator[tuple[IngestService, Any]]:
    with scratch_shm_dir() as shm:
        config = _config(tmp_path, shm, server.url, 0.05)
        runtime = Runtime.build(config, "ingest", to_stderr=False)
        service = IngestService(runtime)
        try:
            yield service, lambda interval_s: _config(tmp_path, shm, server.url, interval_s)
        finally:
            service.close()
            runtime.close()


def _source_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "live-sources" and t.is_alive()]


def _ticks_flow(service: IngestService) -> None:
    start = service.ticks_written
    eventually(lambda: service.step() and service.ticks_written > start, timeout_s=10)


def test_reload_keeps_the_symbol_map_and_stops_the_old_feed_thread(
        ingest: tuple[IngestService, Any], server: LocalServer) -> None:
    service, config_with = ingest
    _ticks_flow(service)
    old_threads = _source_threads()
    assert len(old_threads) == 1
    service.reload(config_with(0.02))
    assert not old_threads[0].is_alive(), "the old feed's thread leaked"
    assert len(_source_threads()) == 1
    requests_before = server.hits("/simple/price")
    _ticks_flow(service)  # the new feed still maps "solana" to symbol 1
    # The new thread may have asked before requests_before was read: it keeps asking.
    eventually(lambda: server.hits("/simple/price") > requests_before, timeout_s=10)
    assert service.heartbeat()["last_price"] == 142.0
