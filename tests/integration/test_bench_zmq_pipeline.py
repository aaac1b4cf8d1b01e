"""The same-work ZeroMQ pipeline of `pipeline bench` section c, run briefly for real.

Four forked processes over real ipc:// sockets, the real paper venue and the real ledger
store on a SQLite file; the test reads that file back.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from pipeline.bench.zmq_pipeline import run_zmq_pipeline


@pytest.mark.timeout(120)
def test_zmq_pipeline_sends_orders_and_the_ledger_commits_every_report(tmp_path: Path) -> None:
    result = run_zmq_pipeline(1_000, 1.0, 2, data_dir=tmp_path)

    assert result.orders > 20, "EmaCross(2, 4) at 1k ticks/s trades many times a second"
    assert result.windows, "no latency window after the warm-up"
    for window in result.windows:
        # Positive and plausible: a few hundred microseconds here, never a second.
        assert 0 < window["p50"] <= window["p99"] <= window["max"] < 1_000_000, window
    conn = sqlite3.connect(f"file:{tmp_path / 'ledger-paper.sqlite'}?mode=ro", uri=True)
    try:
        statuses = dict(conn.execute("SELECT status, count(*) FROM orders GROUP BY status"))
        fills = conn.execute("SELECT count(*) FROM fills").fetchone()[0]
        smallest = conn.execute("SELECT min(tick_to_order_ns) FROM orders").fetchone()[0]
        cursor = conn.execute("SELECT cursor FROM ring_cursors WHERE ring = 'reports'").fetchone()
    finally:
        conn.close()
    assert statuses.get("new", 0) == 0, "an order was left without its final report"
    assert statuses["filled"] == fills > 0
    assert result.orders == sum(n for s, n in statuses.items() if s != "rejected")
    assert smallest > 0
    assert cursor == (sum(statuses.values()),), "every report committed with its cursor"
