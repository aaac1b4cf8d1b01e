"""`pipeline bench` on a plain install: rows needing a dev-only library are skipped with a
note, not a ModuleNotFoundError.

The bench's section-a function runs in a child interpreter in which ``faster_fifo`` cannot
be imported (``sys.modules[...] = None`` makes every import of it fail), as on an install
without the dev extra.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from pipeline.bench.report import format_table

_SECTION_A = """
import json, sys
sys.modules["faster_fifo"] = None  # as if not installed
from pipeline.bench.cli import Plan, throughput_section
plan = Plan(trials=2, scale=0.01, hop_s=0.0, live_s=0.0, sustained_s=0.0, ledger_reports=0,
            backtest_repeat=0, year_candles=0)
print(json.dumps(throughput_section(plan)))
"""


def _figure(value: float) -> dict[str, Any]:
    return {"median": value, "min": value, "max": value, "unit": "", "trials": 2}


@pytest.mark.timeout(120)
def test_section_a_skips_faster_fifo_when_it_cannot_be_imported() -> None:
    done = subprocess.run([sys.executable, "-c", _SECTION_A], capture_output=True, text=True,
                          timeout=110, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    section = json.loads(done.stdout)
    skipped = {k: v for k, v in section.items() if "skipped" in v}
    assert set(skipped) == {"faster-fifo, 1 per send", "faster-fifo, 256 per send"}
    assert all("faster-fifo is not installed" in v["skipped"] for v in skipped.values())
    measured = {k: v for k, v in section.items() if k not in skipped}
    assert len(measured) == 6
    assert all(v["median"] > 0 for v in measured.values())

    results = {"machine": {"cpu_model": "x", "usable_cores": 2, "logical_cores": 2,
                           "python": "3.11"}, "trials": 2, "a_throughput": section,
               "b_hop_latency": {}, "c_tick_to_order": {},
               "d_sustained": {"strategy_ticks_per_s_no_overrun": _figure(1.0),
                               "ledger_reports_per_s": _figure(1.0),
                               "ledger_commits_per_s": _figure(1.0)},
               "e_peak_rss": {}, "f_backtest": {}}
    table = format_table(results)
    assert "| faster-fifo, 1 per send | skipped: faster-fifo is not installed" in table
