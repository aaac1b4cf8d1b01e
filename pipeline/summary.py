"""What a run left in the ledger, read through a read-only engine."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from sqlalchemy import text

from pipeline.ledger.db import make_engine


@dataclass(frozen=True)
class RunSummary:
    duration_s: float
    orders_by_status: dict[str, int]
    fills: int
    positions: dict[str, tuple[float, float, float]]  # symbol -> (qty, realized PnL, fees)
    balances: dict[str, float]
    latency_us: dict[str, float] = field(default_factory=dict)


def read_summary(database: Path, duration_s: float) -> RunSummary | None:
    """Summarise the ledger; None if the ledger never created its database."""
    if not database.exists():
        return None
    engine = make_engine(database, read_only=True)
    try:
        with engine.connect() as conn:
            by_status = {str(s): int(n) for s, n in conn.execute(
                text("SELECT status, count(*) FROM orders GROUP BY status"))}
            fills = int(conn.execute(text("SELECT count(*) FROM fills")).scalar_one())
            positions = {str(sym): (float(q), float(p), float(f)) for sym, q, p, f in conn.execute(
                text("SELECT symbol, quantity, realized_pnl, fees FROM positions"))}
            balances = {str(a): float(v) for a, v in conn.execute(text(
                "SELECT asset, amount FROM balances WHERE id IN "
                "(SELECT max(id) FROM balances GROUP BY asset)"))}
            latencies = np.array([row[0] for row in conn.execute(text(
                "SELECT tick_to_order_ns FROM orders WHERE send_ns > 0 AND status != 'rejected' "
                "ORDER BY id DESC LIMIT 100000"))], dtype=np.float64)
    finally:
        engine.dispose()
    latency_us: dict[str, float] = {}
    if len(latencies):
        q = np.percentile(latencies / 1000, [50, 99, 99.9, 100])
        latency_us = dict(zip(("p50", "p99", "p99.9", "max"), (round(float(v), 1) for v in q),
                              strict=True))
    return RunSummary(duration_s, by_status, fills, positions, balances, latency_us)


def format_summary(summary: RunSummary | None, database: Path) -> str:
    if summary is None:
        return f"no ledger database at {database}"
    orders = sum(summary.orders_by_status.values())
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(summary.orders_by_status.items()))
    lines = [f"run summary ({summary.duration_s:.1f} s) - ledger {database}",
             f"  orders    {orders} ({statuses or 'none'})", f"  fills     {summary.fills}"]
    for symbol, (qty, pnl, fees) in summary.positions.items():
        lines.append(f"  position  {symbol} {qty:+.4f}  realized PnL {pnl:+.4f}  fees {fees:.4f}")
    lines.append("  balances  " + ", ".join(f"{a} {v:,.4f}" for a, v in summary.balances.items()))
    if summary.latency_us:
        lat = summary.latency_us
        lines.append(f"  tick-to-order  p50 {lat['p50']} us  p99 {lat['p99']} us  "
                     f"p99.9 {lat['p99.9']} us  max {lat['max']} us")
    return "\n".join(lines)
