"""Backtest results: equity curve, PnL, fees, drawdown, Sharpe, exposure, and their text form.

Everything here is a pure function of the run's ticks and reports (no clock), so the JSON
and table are byte-identical for the same input and config. Marks are per tick; Sharpe
uses the equity sampled at the end of each ``period_s`` (hourly by default) and annualises
by the number of such periods in 365 days.
"""

from __future__ import annotations

import math
from typing import Any, Final

import numpy as np

from pipeline.backtest.engine import BacktestRun
from pipeline.records import OrderStatus, RejectReason

SECONDS_PER_YEAR: Final = 365 * 24 * 3600
_NS_PER_S: Final = 1_000_000_000


def equity_curve(run: BacktestRun, initial_quote: float) -> tuple[np.ndarray, np.ndarray]:
    """(equity in quote units per tick, position in base units per tick)."""
    ticks = run.ticks
    fills = run.reports[run.reports["status"] == OrderStatus.FILLED]
    at = np.searchsorted(ticks["source_ts_ns"], fills["venue_ts_ns"], side="left")
    signed = fills["side"].astype(np.float64) * fills["filled_qty"]
    cash_change = np.zeros(len(ticks))
    position_change = np.zeros(len(ticks))
    np.add.at(cash_change, at, -signed * fills["avg_price"] - fills["fee"])
    np.add.at(position_change, at, signed)
    position = np.cumsum(position_change)
    equity = initial_quote + np.cumsum(cash_change) + position * ticks["price"]
    return equity, position


def summarise(run: BacktestRun, initial_quote: float, source: str,
              period_s: float = 3600.0) -> dict[str, Any]:
    """The deterministic report as a JSON-ready dict."""
    ticks = run.ticks
    reports = run.reports
    equity, position = equity_curve(run, initial_quote)
    filled = reports[reports["status"] == OrderStatus.FILLED]
    unfilled = reports[reports["status"] != OrderStatus.FILLED]
    times_ns = ticks["source_ts_ns"]
    span_ns = int(times_ns[-1] - times_ns[0]) if len(ticks) else 0
    peak = np.maximum.accumulate(equity) if len(equity) else equity
    drawdown = peak - equity
    worst = int(np.argmax(drawdown)) if len(drawdown) else 0
    held_ns = np.diff(times_ns)[position[:-1] != 0.0].sum() if len(ticks) > 1 else 0
    notional = filled["filled_qty"] * filled["avg_price"]
    final = float(equity[-1]) if len(equity) else initial_quote
    reasons: dict[str, int] = {}
    for code, count in zip(*np.unique(unfilled["reject_reason"], return_counts=True),
                           strict=True):
        reasons[RejectReason(int(code)).name.lower()] = int(count)
    return {
        "source": source,
        "ticks": len(ticks),
        "from_utc_ms": int(times_ns[0] // 1_000_000) if len(ticks) else None,
        "to_utc_ms": int(times_ns[-1] // 1_000_000) if len(ticks) else None,
        "initial_quote": initial_quote,
        "final_equity": _round(final),
        "pnl": _round(final - initial_quote),
        "return_pct": _round((final / initial_quote - 1.0) * 100.0),
        "fees": _round(float(filled["fee"].sum())),
        "trades": len(filled),
        "buys": int(np.count_nonzero(filled["side"] > 0)),
        "sells": int(np.count_nonzero(filled["side"] < 0)),
        "traded_notional": _round(float(notional.sum())),
        "orders_not_filled": reasons,
        "risk_rejects": dict(sorted(run.risk_rejects.items())),
        "ticks_rejected": dict(sorted(run.ticks_rejected.items())),
        "final_position": _round(float(position[-1])) if len(position) else 0.0,
        "max_drawdown": _round(float(drawdown[worst])) if len(drawdown) else 0.0,
        "max_drawdown_pct": _round(float(drawdown[worst] / peak[worst] * 100.0))
        if len(drawdown) else 0.0,
        "sharpe": _sharpe(times_ns, equity, period_s),
        "sharpe_period_s": period_s,
        "exposure_pct": _round(held_ns / span_ns * 100.0) if span_ns else 0.0,
        "fills": [[int(f["venue_ts_ns"] // 1_000_000), "buy" if f["side"] > 0 else "sell",
                   _round(float(f["filled_qty"])), _round(float(f["avg_price"])),
                   _round(float(f["fee"]))] for f in filled],
    }


def timing_summary(run: BacktestRun, candles: int | None) -> dict[str, Any]:
    """Measured speed and the cost of a decision batch (varies run to run)."""
    timing = run.timing
    per_batch_us = np.array(timing.decision_ns, dtype=np.float64) / 1e3
    per_tick_us = per_batch_us / np.maximum(np.array(timing.batch_ticks), 1)
    elapsed = max(timing.elapsed_s, 1e-9)
    out: dict[str, Any] = {"elapsed_s": round(elapsed, 4),
                           "ticks_per_s": round(len(run.ticks) / elapsed)}
    if candles is not None:
        out["candles_per_s"] = round(candles / elapsed)
    if len(per_batch_us):
        out["tick_to_decision_us"] = {
            "per_batch_p50": round(float(np.percentile(per_batch_us, 50)), 1),
            "per_batch_p99": round(float(np.percentile(per_batch_us, 99)), 1),
            "per_tick_mean": round(float(per_tick_us.mean()), 3),
            "batch_ticks": int(max(timing.batch_ticks))}
    return out


def format_table(summary: dict[str, Any]) -> str:
    """The report as aligned ``name  value`` lines (no fills list)."""
    rows = [(key, value) for key, value in summary.items() if key != "fills"]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {_text(value)}" for key, value in rows) + "\n"


def _sharpe(times_ns: np.ndarray, equity: np.ndarray, period_s: float) -> float | None:
    if len(times_ns) < 2:
        return None
    period_ns = int(period_s * _NS_PER_S)
    bucket = (times_ns - times_ns[0]) // period_ns
    ends = np.flatnonzero(np.diff(bucket)) if len(bucket) > 1 else np.empty(0, dtype=np.int64)
    sampled = np.concatenate((equity[:1], equity[ends], equity[-1:]))
    returns = np.diff(sampled) / sampled[:-1]
    if len(returns) < 2 or not np.std(returns, ddof=1) > 0.0:
        return None
    annual = math.sqrt(SECONDS_PER_YEAR / period_s)
    return _round(float(np.mean(returns) / np.std(returns, ddof=1) * annual))


def _round(value: float) -> float:
    """Fixed precision, so the text form does not print float noise."""
    return round(value, 6)


def _text(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items()) or "-"
    return "-" if value is None else str(value)
