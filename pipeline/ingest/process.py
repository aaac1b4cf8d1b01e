"""The ingest process: runs a feed and writes ticks into the lossy tick ring.

Ticks get their sequence and ``ingest_ns`` stamp here, immediately before publication, so
tick-to-order latency starts when the pipeline owns the tick.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Final

import numpy as np

from pipeline.config import PipelineConfig
from pipeline.control import Handler
from pipeline.errors import ConfigError
from pipeline.ingest.config import LIVE_FEEDS, IngestConfig
from pipeline.ingest.feed import Feed, make_feed
from pipeline.ingest.validate import make_validator
from pipeline.metrics import IngestMetrics
from pipeline.records import SourceId
from pipeline.runtime import Runtime
from pipeline.service import Service

_HTTP_FEEDS: Final = ("coingecko", "hermes", "jupiter")  # through HttpClient and its cache


class IngestService(Service):
    def __init__(self, runtime: Runtime, feed: Feed | None = None) -> None:
        self._runtime = runtime
        self._config = runtime.config.ingest
        self._metrics = IngestMetrics(runtime.registry)
        self._feed = feed or self._make_feed(runtime.config)
        self._metrics.configure_sources(*_sources(self._config))
        self._validator = make_validator(runtime.config, runtime.log, self._metrics)
        self._writer = runtime.ports.writer("ticks")
        self._symbols = {s.id: s.name for s in runtime.config.symbols}
        self.ticks_written = 0
        self._last_price = float("nan")
        self._rate_window: tuple[float, int] = (time.monotonic(), 0)
        self._ticks_per_s = 0.0
        if not self._writer.created and self._writer.previous_run_id != runtime.run_id:
            runtime.log.info("reusing tick ring", extra={
                "event": "ring.reused", "ring": self._writer.spec.name,
                "previous_run_id": str(self._writer.previous_run_id), "seq": self._writer.seq})

    def _make_feed(self, config: PipelineConfig) -> Feed:
        """The configured feed; live feeds need the symbols (their per-source ids), the data
        dir (HTTP cache, rate-limit state) and the log, at start and on every reload alike."""
        return make_feed(
            config.ingest, time.monotonic_ns, symbols=config.symbols,
            data_dir=config.paths.data_dir, log=self._runtime.log,
            on_error=lambda source, why: self._metrics.source_errors.labels(source, why).inc(),
            on_request=lambda source, cache: self._metrics.http_requests.labels(
                source, cache).inc())

    def step(self) -> bool:
        polled = self._feed.poll(time.monotonic_ns(), self._config.batch_max)
        ticks = self._validator.validate(polled)
        n = len(ticks)
        if n == 0:
            return len(polled) > 0
        seq = self._writer.seq
        ticks["seq"] = np.arange(seq, seq + n, dtype=np.uint64)
        ticks["ingest_ns"] = time.monotonic_ns()
        self._writer.write(ticks)
        self.ticks_written += n
        self._last_price = float(ticks["price"][-1])
        now_s = time.time()
        for source in np.unique(ticks["source_id"]):
            count = int(np.count_nonzero(ticks["source_id"] == source))
            self._metrics.ticks_written(SourceId(int(source)).name.lower(), count, now_s)
        return True

    def idle_timeout_s(self) -> float | None:
        due = self._feed.next_due_ns()
        if due is None:
            return None
        return max(0.0, (due - time.monotonic_ns()) / 1e9)

    def drain(self) -> bool:
        return True  # a tick not yet read from the feed is not ours to lose

    def on_heartbeat(self) -> None:
        start, count = self._rate_window
        now = time.monotonic()
        if now - start >= 1.0:
            self._ticks_per_s = (self.ticks_written - count) / (now - start)
            self._rate_window = (now, self.ticks_written)

    def heartbeat(self) -> dict[str, Any]:
        return {"ticks": self.ticks_written, "ticks_per_s": round(self._ticks_per_s, 1),
                "last_price": self._last_price, "write_seq": self._writer.seq,
                "feed_exhausted": self._feed.exhausted}

    def update_metrics(self) -> None:
        name = self._symbols.get(self._config.symbol_id, str(self._config.symbol_id))
        if self._last_price == self._last_price:
            self._metrics.last_price.labels(name).set(self._last_price)

    live_sections = ("ingest",)

    def reload(self, config: PipelineConfig) -> None:
        """A new feed from the new settings; sequence numbers continue in the same ring.

        The new feed is built first (a bad setting keeps the old one running), then the old
        one is closed: a live feed's source thread must not outlive it."""
        try:
            feed = self._make_feed(config)
        except OSError as exc:
            raise ConfigError("ingest.replay_path", config.ingest.replay_path, str(exc)) from exc
        old, self._feed, self._config = self._feed, feed, config.ingest
        _close_feed(old)
        self._metrics.configure_sources(*_sources(self._config))

    def handlers(self) -> Mapping[str, Handler]:
        return {}

    def close(self) -> None:
        _close_feed(self._feed)
        self._writer.close()


def _sources(config: IngestConfig) -> tuple[list[str], list[str]]:
    """(the source whose ticks enter the ring, the sources called over cached HTTP): the
    feed's source and its cross-check, by the names the metrics carry."""
    cross = [config.live.cross_check] if config.feed in LIVE_FEEDS and config.live.cross_check \
        else []
    http = [name for name in (config.feed, *cross) if name in _HTTP_FEEDS]
    return [config.feed], http


def _close_feed(feed: Feed) -> None:
    """Stop a live feed's source thread; replay and synthetic feeds hold nothing."""
    close = getattr(feed, "close", None)
    if close is not None:
        close()
