"""Measured speed of ``pipeline backtest``: every phase of the command, on this machine.

Kept apart from the report because it varies run to run. Each file's ``total_s`` runs from
the start of the command (so the first file carries the imports), and
``since_process_start_s`` adds the interpreter's own start-up where Linux tells it.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from pipeline.backtest.engine import BacktestRun


class PhaseClock:
    """Seconds per named phase, against one start instant (``time.perf_counter``)."""

    def __init__(self, started_s: float) -> None:
        self.started_s = started_s
        self.phases_s: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Add the time spent in the ``with`` block to phase ``name``."""
        begun = time.perf_counter()
        try:
            yield
        finally:
            self.phases_s[name] = self.phases_s.get(name, 0.0) + time.perf_counter() - begun

    def summary(self, run: BacktestRun, candles: int | None) -> dict[str, Any]:
        """Phases, totals and throughput for one file, JSON-ready."""
        now = time.perf_counter()
        file_s = sum(self.phases_s.values())
        phases = dict(self.phases_s)
        if "run" in phases:  # the engine times its own validation: a phase of its own
            validate_s = run.timing.validate_s
            phases = {**phases, "validate": validate_s, "run": phases["run"] - validate_s}
        out: dict[str, Any] = {"phases_s": {k: round(v, 4) for k, v in phases.items()},
                               "file_s": round(file_s, 4),
                               "total_s": round(now - self.started_s, 4)}
        since = _since_process_start_s()
        if since is not None:
            out["since_process_start_s"] = round(since, 3)
        # Linux reports kilobytes; the peak of the whole process so far, all files included.
        out["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
        ticks = len(run.ticks) + sum(run.ticks_rejected.values())
        out["ticks_per_s"] = round(ticks / max(file_s, 1e-9))
        if candles is not None:
            out["candles_per_s"] = round(candles / max(file_s, 1e-9))
            out["candles_per_s_run"] = round(candles / max(phases.get("run", 0.0), 1e-9))
        out.update(_decisions(run))
        return out


def _decisions(run: BacktestRun) -> dict[str, Any]:
    """The cost of a decision batch, if the engine measured it (its Timing may change)."""
    decision_ns = getattr(run.timing, "decision_ns", None)
    batch_ticks = getattr(run.timing, "batch_ticks", None)
    if not decision_ns or not batch_ticks or len(decision_ns) != len(batch_ticks):
        return {}
    per_batch_us = np.array(decision_ns, dtype=np.float64) / 1e3
    per_tick_us = per_batch_us / np.maximum(np.array(batch_ticks), 1)
    return {"tick_to_decision_us": {
        "per_batch_p50": round(float(np.percentile(per_batch_us, 50)), 1),
        "per_batch_p99": round(float(np.percentile(per_batch_us, 99)), 1),
        "per_tick_mean": round(float(per_tick_us.mean()), 3),
        "batch_ticks": int(max(batch_ticks))}}


def _since_process_start_s() -> float | None:
    """Seconds since this process started (Linux /proc, 10 ms resolution), else None."""
    try:
        with open("/proc/self/stat", encoding="ascii") as stat:
            fields = stat.read().rpartition(")")[2].split()
        with open("/proc/uptime", encoding="ascii") as uptime:
            up_s = float(uptime.read().split()[0])
        started_s = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
    except (OSError, ValueError, IndexError):
        return None
    return up_s - started_s
