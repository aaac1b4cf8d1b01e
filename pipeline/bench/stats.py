"""Figures as the median of several trials with their min and max, and the machine they ran on."""

from __future__ import annotations

import os
import platform
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any

import numpy as np

_LIBRARIES = ("numpy", "pyzmq", "faster-fifo", "SQLAlchemy", "psutil")


@dataclass(frozen=True)
class Figure:
    """One benchmark figure: the median of ``trials`` with the spread, in ``unit``."""

    median: float
    low: float
    high: float
    unit: str
    trials: int

    @classmethod
    def of(cls, values: Sequence[float], unit: str) -> Figure:
        if not values:
            raise ValueError("a figure needs at least one trial")
        return cls(float(statistics.median(values)), float(min(values)), float(max(values)),
                   unit, len(values))

    def as_dict(self) -> dict[str, Any]:
        return {"median": self.median, "min": self.low, "max": self.high, "unit": self.unit,
                "trials": self.trials}


def repeat(trials: int, measure: Callable[[], float], unit: str) -> Figure:
    """Run ``measure`` ``trials`` times; the figure of its results."""
    return Figure.of([measure() for _ in range(trials)], unit)


def latency_percentiles_us(latency_ns: np.ndarray) -> dict[str, float]:
    """p50, p99, p99.9 and max of one trial's latencies, in microseconds."""
    if latency_ns.size == 0:
        return {}
    p50, p99, p999 = np.percentile(latency_ns, [50.0, 99.0, 99.9]) / 1000.0
    return {"p50": float(p50), "p99": float(p99), "p99.9": float(p999),
            "max": float(latency_ns.max()) / 1000.0}


def latency_figures(trials: Sequence[dict[str, float]]) -> dict[str, Figure]:
    """Per percentile, the figure over trials (each trial a :func:`latency_percentiles_us`)."""
    keys = [k for k in ("p50", "p99", "p99.9", "max") if all(k in t for t in trials)]
    return {k: Figure.of([t[k] for t in trials], "us") for k in keys} if trials else {}


def machine_info() -> dict[str, Any]:
    """CPU model, core counts, OS, Python and library versions, for the JSON report."""
    model = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for name in _LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {"cpu_model": model, "logical_cores": os.cpu_count(),
            "usable_cores": len(os.sched_getaffinity(0)), "platform": platform.platform(),
            "python": platform.python_version(), "libraries": versions}
