"""Prometheus metrics, one registry per process, served on 127.0.0.1 only by default.

Names follow the Prometheus conventions: ``pipeline_`` prefix, base units, ``_total`` for
counters, and low-cardinality labels only. Each process builds the metric set it uses and
receives the registry from ``main()`` (tests build fresh ones).

No metric carries a ``process`` label: Prometheus adds ``process`` (and ``environment``) to
every series of a target (deploy/prometheus/prometheus.yml), and a label of our own by the
same name would be renamed ``exported_process``. Every registry also holds the standard
process collector, so a restart shows as a new ``process_start_time_seconds``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)

# Tick-to-order buckets: dense around the 50 us - 1 ms we aim at, every half millisecond up
# to the 5 ms budget (so "how far over" reads true), then up to 1 s: a 200 ms stall must
# read as 250 ms, not as the last bucket below it.
LATENCY_BUCKETS_S: Final = (
    10e-6, 20e-6, 30e-6, 50e-6, 75e-6, 100e-6, 150e-6, 200e-6, 300e-6, 500e-6,
    750e-6, 1e-3, 1.5e-3, 2e-3, 2.5e-3, 3e-3, 3.5e-3, 4e-3, 4.5e-3, 5e-3, 7.5e-3, 10e-3,
    25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1.0,
)
COMMIT_BUCKETS_S: Final = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1.0)
ROWS_BUCKETS: Final = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
STATES: Final = ("starting", "running", "draining", "stopped")


class CommonMetrics:
    """What every process exports: lifecycle state, heartbeat, rings, and the standard
    ``process_*`` series (start time, memory, CPU, open files)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        ProcessCollector(registry=registry)
        self.state = Gauge("pipeline_process_state", "1 for the current lifecycle state",
                           ["state"], registry=registry)
        self.heartbeat = Gauge("pipeline_heartbeat_timestamp_seconds",
                               "Unix time of the last heartbeat", registry=registry)
        self.ring_lag = Gauge("pipeline_ring_lag_records", "Published records not yet read",
                              ["ring", "reader"], registry=registry)
        self.ring_lost = Counter("pipeline_ring_overrun_records_total",
                                 "Records a lossy reader lost to overruns", ["ring", "reader"],
                                 registry=registry)
        self.backpressure_waits = Counter("pipeline_ring_backpressure_waits_total",
                                          "Times a writer waited for a lossless reader",
                                          ["ring"], registry=registry)
        self.backpressure_timeouts = Counter(
            "pipeline_ring_backpressure_timeouts_total",
            "Times a writer gave up waiting with records left over", ["ring"], registry=registry)
        self.bad_control = Counter("pipeline_control_bad_requests_total",
                                   "Malformed or unknown control requests", ["code"],
                                   registry=registry)
        self.handler_errors = Counter(
            "pipeline_control_handler_errors_total",
            "Control handlers that failed with an unexpected exception (a bug: answered "
            "internal_error, traceback in the log)", ["command"], registry=registry)
        self.reload_refused = Counter("pipeline_config_reload_refused_total",
                                      "Config reloads refused (invalid or unreadable config); "
                                      "the old config stayed in force",
                                      registry=registry)

        self._exported: dict[tuple[str, str], int] = {}

    def export_writer(self, ring: str, waits: int, timeouts: int) -> None:
        """Bring the back-pressure counters up to a writer's running totals."""
        self._advance(self.backpressure_waits.labels(ring), (ring, "waits"), waits)
        self._advance(self.backpressure_timeouts.labels(ring), (ring, "timeouts"), timeouts)

    def export_reader(self, ring: str, reader: str, lost: int) -> None:
        """Bring the overrun counter up to a reader's running total."""
        self._advance(self.ring_lost.labels(ring, reader), (ring, reader), lost)

    def _advance(self, counter: Counter, key: tuple[str, str], total: int) -> None:
        delta = total - self._exported.get(key, 0)
        if delta > 0:
            counter.inc(delta)
        self._exported[key] = max(total, self._exported.get(key, 0))

    def set_state(self, state: str) -> None:
        for name in STATES:
            self.state.labels(name).set(1.0 if name == state else 0.0)


class IngestMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.ticks = Counter("pipeline_ticks_total", "Ticks written to the tick ring",
                             ["source"], registry=registry)
        self.last_tick = Gauge("pipeline_feed_last_tick_timestamp_seconds",
                               "Unix time of the last tick of this source written to the ring "
                               "(the process start time until the first)", ["source"],
                               registry=registry)
        self.http_requests = Counter("pipeline_feed_http_requests_total",
                                     "Provider HTTP requests, answered from the local cache "
                                     "(hit) or sent to the provider (miss)",
                                     ["source", "cache"], registry=registry)
        self.last_price = Gauge("pipeline_last_price", "Last tick price", ["symbol"],
                                registry=registry)
        self.rejected = Counter("pipeline_ticks_rejected_total",
                                "Ticks validation kept out of the ring", ["reason"],
                                registry=registry)
        self.flagged = Counter("pipeline_ticks_flagged_total",
                               "Ticks published with the SUSPECT flag", ["reason"],
                               registry=registry)
        self.source_errors = Counter("pipeline_feed_errors_total",
                                     "Failed or refused answers of live price sources",
                                     ["source", "reason"], registry=registry)
        self._tick_sources: set[str] = set()

    def configure_sources(self, tick_sources: Iterable[str], http_sources: Iterable[str],
                          now_s: float | None = None) -> None:
        """Export every configured source from the start, so a feed that never delivers
        has a flat ticks series and a last-tick time that ages (alerts need a series).

        Called again after a reload: a source no longer configured stops being exported
        (it must not page as stale), a new one starts from ``now_s``."""
        started = time.time() if now_s is None else now_s
        wanted = set(tick_sources)
        for source in self._tick_sources - wanted:
            self.ticks.remove(source)
            self.last_tick.remove(source)
        for source in wanted - self._tick_sources:
            self.ticks.labels(source)
            self.last_tick.labels(source).set(started)
        self._tick_sources = wanted
        for source in http_sources:
            for cache in ("hit", "miss"):
                self.http_requests.labels(source, cache)

    def ticks_written(self, source: str, count: int, now_s: float) -> None:
        """``count`` ticks of ``source`` entered the ring at Unix time ``now_s``."""
        self.ticks.labels(source).inc(count)
        self.last_tick.labels(source).set(now_s)


class StrategyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.ticks = Counter("pipeline_strategy_ticks_total", "Ticks the strategy processed",
                             registry=registry)
        self.intents = Counter("pipeline_intents_total", "Order intents written",
                               registry=registry)
        self.rejects = Counter("pipeline_risk_rejects_total", "Intents refused before sending",
                               ["reason"], registry=registry)
        self.decision = Histogram("pipeline_tick_to_decision_seconds",
                                  "Ingest stamp to strategy decision", buckets=LATENCY_BUCKETS_S,
                                  registry=registry)
        self.paused = Gauge("pipeline_strategy_paused", "1 while paused", registry=registry)
        self.withheld = Counter("pipeline_strategy_intents_withheld_total",
                                "Intents decided while trading was halted or the strategy "
                                "paused: not sent, not booked", ["reason"], registry=registry)
        self.venue_refusals = Counter("pipeline_strategy_venue_refusals_total",
                                      "Orders the venue refused, as the strategy saw them",
                                      ["reason"], registry=registry)
        self.paused_symbols = Gauge("pipeline_strategy_paused_symbols",
                                    "Symbols paused after venue refusals in a row",
                                    registry=registry)
        self._refusals_exported: dict[str, int] = {}
        self._ticks_exported = 0

    def export_ticks(self, total: int) -> None:
        """Bring the ticks counter up to the strategy's running total (off the tick path)."""
        if total > self._ticks_exported:
            self.ticks.inc(total - self._ticks_exported)
            self._ticks_exported = total

    def export_refusals(self, totals: Mapping[str, int]) -> None:
        """Bring the venue refusal counters up to the risk engine's running totals."""
        for reason, total in totals.items():
            delta = total - self._refusals_exported.get(reason, 0)
            child = self.venue_refusals.labels(reason)  # exported at 0 from the start
            if delta > 0:
                child.inc(delta)
                self._refusals_exported[reason] = total


class ExecutorMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.orders = Counter("pipeline_orders_total", "Orders sent to the venue", ["venue"],
                              registry=registry)
        self.rejects = Counter("pipeline_order_rejects_total", "Orders rejected or cancelled",
                               ["reason"], registry=registry)
        self.fills = Counter("pipeline_fills_total", "Fills reported by the venue", ["venue"],
                             registry=registry)
        self.tick_to_order = Histogram("pipeline_tick_to_order_seconds",
                                       "Ingest stamp to executor send stamp",
                                       buckets=LATENCY_BUCKETS_S, registry=registry)
        self.trade_enabled = Gauge("pipeline_trade_enabled",
                                   "Kill switch as the executor sees it (-1 unknown)",
                                   registry=registry)
        self.pending = Gauge("pipeline_orders_pending", "Orders at the venue, not yet final",
                             registry=registry)


class LedgerMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.commit_seconds = Histogram("pipeline_sqlite_commit_seconds",
                                        "Duration of one ledger commit",
                                        buckets=COMMIT_BUCKETS_S, registry=registry)
        self.rows_per_commit = Histogram("pipeline_sqlite_rows_per_commit",
                                         "Execution reports per commit", buckets=ROWS_BUCKETS,
                                         registry=registry)
        self.reports = Counter("pipeline_ledger_reports_total", "Execution reports committed",
                               registry=registry)
        self.duplicates = Counter("pipeline_ledger_duplicate_reports_total",
                                  "Reports ignored as already applied", registry=registry)
        self.commit_errors = Counter("pipeline_sqlite_commit_errors_total", "Failed commits",
                                     registry=registry)
        self.position = Gauge("pipeline_position", "Position in base units", ["symbol"],
                              registry=registry)
        self.realized_pnl = Gauge("pipeline_realized_pnl", "Realized PnL in quote units",
                                  ["symbol"], registry=registry)
        self.trade_enabled = Gauge("pipeline_ledger_trade_enabled",
                                   "TRADE_ENABLED in the config table", registry=registry)
        self.halted = Gauge("pipeline_trading_halted",
                            "1 for each reason the ledger's trading state halts trading",
                            ["reason"], registry=registry)
        self.wal_written = Counter("pipeline_ledger_wal_written_bytes_total",
                                   "WAL bytes written by commits (estimated from the rows, "
                                   "as the commit pacer counts them)", registry=registry)


def serve(registry: CollectorRegistry, host: str, port: int, port_file: Path | None, *,
          certfile: str = "", keyfile: str = "", client_cafile: str = "") -> int:
    """Start the /metrics endpoint; returns the bound port (``port=0`` picks a free one).

    With ``certfile`` the endpoint speaks TLS and requires a client certificate signed by
    ``client_cafile`` (mTLS): only the Prometheus holding such a certificate can scrape.
    """
    if certfile:
        server, _thread = start_http_server(port, addr=host, registry=registry,
                                            certfile=certfile, keyfile=keyfile,
                                            client_cafile=client_cafile,
                                            client_auth_required=True)
    else:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    bound = int(server.server_address[1])
    if port_file is not None:
        port_file.write_text(f"{bound}\n")
    return bound


class ConsolidatorMetrics:
    """``pipeline consolidate``: how fresh the consolidated copy of one host's ledger is."""

    def __init__(self, registry: CollectorRegistry, host: str) -> None:
        self._host = host
        self.last_success = Gauge(
            "pipeline_consolidator_last_success_timestamp_seconds",
            "Unix time the last pass ended with the host's ledger fully shipped", ["host"],
            registry=registry)
        self.rows = Counter("pipeline_consolidator_rows_total",
                            "Rows shipped into PostgreSQL", ["host", "table"],
                            registry=registry)
        self.postgres_lost = Counter("pipeline_consolidator_postgres_lost_total",
                                     "Passes that found PostgreSQL unreachable", ["host"],
                                     registry=registry)
        self.postgres_lost.labels(host)  # from 0: an increase is a first outage

    def shipped(self, counts: Mapping[str, int]) -> None:
        for table, rows in counts.items():
            if rows:
                self.rows.labels(self._host, table).inc(rows)
        self.last_success.labels(self._host).set(time.time())

    def lost_postgres(self) -> None:
        self.postgres_lost.labels(self._host).inc()


class BootstrapMetrics:
    """Results of the bootstrap checks run at process start (see pipeline/bootstrap.py)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.failed = Gauge("pipeline_bootstrap_failed",
                            "1 if any bootstrap check failed at this process's start",
                            registry=registry)
        self.check_failed = Gauge("pipeline_bootstrap_check_failed",
                                  "1 for each bootstrap check that failed", ["check"],
                                  registry=registry)
