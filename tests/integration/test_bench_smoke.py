"""`pipeline bench --quick --json` runs end to end and writes well-formed results.

A smoke test only: benchmarks are not tests, so no figure is compared with a target here.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


def _is_figure(value: Any) -> bool:
    return (isinstance(value, dict) and {"median", "min", "max", "unit", "trials"} <= set(value)
            and all(math.isfinite(value[k]) for k in ("median", "min", "max"))
            and value["min"] <= value["median"] <= value["max"] and value["trials"] >= 2)


@pytest.mark.timeout(240)
def test_bench_quick_writes_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run([sys.executable, "-m", "pipeline", "bench", "--quick", "--json",
                           str(out)], capture_output=True, text=True, timeout=230, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "tick-to-order" in done.stdout
    assert "M records/s" in done.stdout
    results = json.loads(out.read_text(encoding="utf-8"))
    machine = results["machine"]
    assert machine["cpu_model"]
    assert machine["logical_cores"] >= 1
    assert {"numpy", "pyzmq", "faster-fifo"} <= set(machine["libraries"])
    assert len(results["a_throughput"]) == 8
    assert all(_is_figure(f) for f in results["a_throughput"].values())
    for section in ("b_hop_latency", "c_tick_to_order"):
        for row in results[section].values():
            assert all(_is_figure(row[k]) for k in ("p50", "p99", "p99.9", "max")), row
    rows = results["c_tick_to_order"]
    assert len(rows) == 6  # per rate: ring pipeline, ZeroMQ pipeline, ZeroMQ chain
    assert all(rows[f"{kind} pipeline, {rate} ticks/s"]["orders"] > 0
               for kind in ("ring", "ZeroMQ") for rate in (1000, 10000))
    for rate in (1000, 10000):
        checks = results["c_targets"][f"{rate} ticks/s"]
        assert len(checks) == 4
        assert all(isinstance(c["met"], bool) for c in checks.values()), checks
    assert "targets at 1000 ticks/s, ring pipeline vs ZeroMQ pipeline" in done.stdout
    assert all(_is_figure(f) for f in results["d_sustained"].values())
    for memory in results["e_peak_rss"].values():
        assert set(memory["per_process_mib"]) == {"ingest", "strategy", "executor", "ledger"}
        assert memory["pipeline_mib"] > 0
    assert all(_is_figure(f) for f in results["f_backtest"].values())
