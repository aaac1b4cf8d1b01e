"""The latency targets of section c, judged from the figures of one bench run.

The ring pipeline is held against the same-work ZeroMQ pipeline (same feed, strategy,
risk engine, paper venue, ledger and reports flow): its tick-to-order p50 at most half of
ZeroMQ's, its p99 no worse than ZeroMQ's, its p99.9 under the 3 ms operating limit, and,
as a stretch, its p50 at most 100 us. Each figure is the median over the run's trials.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

P999_LIMIT_US: Final = 3000.0
STRETCH_P50_US: Final = 100.0


def ring_row(rate_hz: int) -> str:
    return f"ring pipeline, {rate_hz} ticks/s"


def zmq_pipeline_row(rate_hz: int) -> str:
    return f"ZeroMQ pipeline, {rate_hz} ticks/s"


def zmq_chain_row(rate_hz: int) -> str:
    return f"ZeroMQ chain, {rate_hz} ticks/s"


def judge(section_c: Mapping[str, Mapping[str, Any]], rate_hz: int) -> dict[str, Any]:
    """Per target at ``rate_hz``: the ring's figure, the limit it is held to and ``met``
    (None when a row has no figure, e.g. no order was sent)."""
    ring = _medians(section_c.get(ring_row(rate_hz), {}))
    zmq = _medians(section_c.get(zmq_pipeline_row(rate_hz), {}))
    half = zmq["p50"] / 2 if "p50" in zmq else None
    checks = {
        "p50 <= half of ZeroMQ pipeline p50": (ring.get("p50"), half, False),
        "p99 <= ZeroMQ pipeline p99": (ring.get("p99"), zmq.get("p99"), False),
        "p99.9 < 3 ms": (ring.get("p99.9"), P999_LIMIT_US, True),
        "stretch: p50 <= 100 us": (ring.get("p50"), STRETCH_P50_US, False),
    }
    out: dict[str, Any] = {}
    for name, (value, limit, strict) in checks.items():
        met = None if value is None or limit is None else (
            value < limit if strict else value <= limit)
        out[name] = {"ring_us": value, "limit_us": limit, "met": met}
    return out


def _medians(row: Mapping[str, Any]) -> dict[str, float]:
    return {k: float(row[k]["median"]) for k in ("p50", "p99", "p99.9") if k in row}


def verdict(met: bool | None) -> str:
    return "not measured" if met is None else "met" if met else "not met"
