"""The section-c targets are judged from the figures: ring pipeline vs ZeroMQ pipeline."""

from __future__ import annotations

from typing import Any

from pipeline.bench.report import target_lines
from pipeline.bench.targets import judge


def _row(p50: float, p99: float, p999: float) -> dict[str, Any]:
    return {k: {"median": v, "min": v, "max": v, "unit": "us", "trials": 3}
            for k, v in (("p50", p50), ("p99", p99), ("p99.9", p999))}


def test_each_target_met_or_not_from_the_medians() -> None:
    section = {"ring pipeline, 1000 ticks/s": _row(90.0, 400.0, 3000.0),
               "ZeroMQ pipeline, 1000 ticks/s": _row(180.0, 399.0, 900.0)}
    checks = judge(section, 1000)
    assert {k: c["met"] for k, c in checks.items()} == {
        "p50 <= half of ZeroMQ pipeline p50": True,  # 90 <= 180 / 2
        "p99 <= ZeroMQ pipeline p99": False,  # 400 > 399
        "p99.9 < 3 ms": False,  # 3000 is not under 3000
        "stretch: p50 <= 100 us": True,
    }
    assert checks["p50 <= half of ZeroMQ pipeline p50"]["limit_us"] == 90.0


def test_a_row_without_figures_is_not_measured() -> None:
    section = {"ring pipeline, 10000 ticks/s": {"orders": 0},
               "ZeroMQ pipeline, 10000 ticks/s": _row(180.0, 400.0, 900.0)}
    checks = judge(section, 10000)
    assert all(c["met"] is None for c in checks.values())
    line = target_lines({"10000 ticks/s": checks})[1]
    assert "p99 <= ZeroMQ pipeline p99: not measured" in line
