"""The metric sets in pipeline.metrics: the process collector, no ``process`` label of our
own (the scrape target carries it), latency buckets, and counters exported from totals."""

from __future__ import annotations

from prometheus_client import CollectorRegistry

from pipeline.metrics import (
    LATENCY_BUCKETS_S,
    BootstrapMetrics,
    CommonMetrics,
    ExecutorMetrics,
    IngestMetrics,
    LedgerMetrics,
    StrategyMetrics,
)


def _all_sets() -> CollectorRegistry:
    registry = CollectorRegistry()
    common = CommonMetrics(registry)
    common.set_state("running")
    common.heartbeat.set(1.0)
    common.bad_control.labels("unauthorised").inc()
    common.handler_errors.labels("status").inc()
    common.reload_refused.inc()
    IngestMetrics(registry).configure_sources(["replay"], [])
    StrategyMetrics(registry)
    ExecutorMetrics(registry).orders.labels("paper").inc()
    LedgerMetrics(registry).halted.labels("trade_disabled").set(1)
    BootstrapMetrics(registry).check_failed.labels("clock").set(0)
    return registry


def test_every_registry_exports_the_process_start_time() -> None:
    registry = CollectorRegistry()
    CommonMetrics(registry)
    started = registry.get_sample_value("process_start_time_seconds")
    assert started is not None
    assert started > 1.7e9
    assert registry.get_sample_value("process_resident_memory_bytes")


def test_no_series_carries_a_process_label_of_its_own() -> None:
    labelled = [(metric.name, sample.labels) for metric in _all_sets().collect()
                for sample in metric.samples if "process" in sample.labels]
    assert labelled == []


def test_tick_to_order_buckets_reach_a_second_and_are_fine_up_to_five_ms() -> None:
    assert LATENCY_BUCKETS_S[-1] == 1.0
    assert list(LATENCY_BUCKETS_S) == sorted(set(LATENCY_BUCKETS_S))
    between = [b for b in LATENCY_BUCKETS_S if 1e-3 <= b <= 5e-3]
    assert len(between) == 9  # every half millisecond
    registry = CollectorRegistry()
    ExecutorMetrics(registry).tick_to_order.observe(0.2)  # a 200 ms stall reads as such
    assert registry.get_sample_value("pipeline_tick_to_order_seconds_bucket",
                                     {"le": "0.1"}) == 0.0
    assert registry.get_sample_value("pipeline_tick_to_order_seconds_bucket",
                                     {"le": "0.25"}) == 1.0


def test_strategy_ticks_follow_the_running_total() -> None:
    registry = CollectorRegistry()
    metrics = StrategyMetrics(registry)
    assert registry.get_sample_value("pipeline_strategy_ticks_total") == 0.0
    metrics.export_ticks(5)
    metrics.export_ticks(5)
    metrics.export_ticks(12)
    assert registry.get_sample_value("pipeline_strategy_ticks_total") == 12.0


def test_bootstrap_metrics_carry_no_clock_offset() -> None:
    """The ledger's periodic clock check owns the one offset gauge (pipeline.clock)."""
    registry = CollectorRegistry()
    BootstrapMetrics(registry)
    names = {metric.name for metric in registry.collect()}
    assert "pipeline_clock_offset_seconds" not in names
