"""Refusal back-off in backtests: on source time, repeatable, and a no-op when it holds
nothing back (the results are those of a run without it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from pipeline.backtest.engine import run_backtest
from pipeline.config import load_config
from pipeline.ingest.history import load_ticks
from pipeline.records import OrderStatus, RejectReason

JSON = Path(__file__).resolve().parents[2] / "data" / "SOL_USDT-1m-2021-head300.json"
NO_BACKOFF = {"refusal_backoff_base_s": 0.0, "refusal_backoff_max_s": 0.0,
              "refusal_pause_after": 0}
# A limit 1 bp from the decision price against 3 bp of slippage: most orders are refused.
REFUSED = {"strategy": {"params": {"fast": 3, "slow": 8, "quantity": 1.0,
                                   "limit_slippage_bps": 1.0}},
           "executor": {"slippage_bps": 3.0}}
MINUTE_NS = 60 * 1_000_000_000


def _run(overrides: dict[str, Any], risk: dict[str, Any]) -> Any:
    # The paper venue's refusals here are limits not marketable: opted in.
    table = {**overrides, "risk": {"max_orders_per_s": 1000.0,
                                   "refusal_reasons": ["limit_not_marketable"], **risk}}
    return run_backtest(load_ticks(JSON, "json", 1), load_config(environ={}, overrides=table))


def test_a_back_off_that_holds_nothing_changes_nothing() -> None:
    """Default back-off (0.5 s to 30 s) against one-minute candles: refusals happen, but
    each hold ends before the next tick."""
    with_backoff, without = _run(REFUSED, {}), _run(REFUSED, NO_BACKOFF)
    refused = with_backoff.reports["reject_reason"] == RejectReason.LIMIT_NOT_MARKETABLE
    assert refused.sum() > 10
    assert with_backoff.reports.tobytes() == without.reports.tobytes()
    assert with_backoff.risk_rejects == without.risk_rejects


def test_holds_run_on_source_time_and_repeat_exactly() -> None:
    risk = {"refusal_backoff_base_s": 60.0, "refusal_backoff_max_s": 480.0,
            "refusal_pause_after": 0}
    run = _run(REFUSED, risk)
    assert run.risk_rejects.get("refusal_backoff", 0) > 10
    assert _run(REFUSED, risk).reports.tobytes() == run.reports.tobytes()
    # After the n-th refusal in a row no order is decided within 60 s * 2^(n-1) (<= 480 s)
    # of the refused one's decision, in the ticks' time.
    finals = run.reports[run.reports["status"] != OrderStatus.NEW]
    finals = finals[np.argsort(finals["decision_ns"], kind="stable")]
    streak, earliest_ns = 0, 0
    for report in finals:
        assert int(report["decision_ns"]) >= earliest_ns
        if report["status"] == OrderStatus.FILLED:
            streak, earliest_ns = 0, 0
        elif report["reject_reason"] == RejectReason.LIMIT_NOT_MARKETABLE:
            streak += 1
            delay_ns = min(MINUTE_NS << (streak - 1), 8 * MINUTE_NS)
            earliest_ns = max(earliest_ns, int(report["decision_ns"]) + delay_ns)


def test_pauses_in_a_backtest_end_with_the_cool_down() -> None:
    risk = {"refusal_backoff_base_s": 0.0, "refusal_backoff_max_s": 0.0,
            "refusal_pause_after": 2, "refusal_pause_cooldown_s": 1800.0}
    run = _run(REFUSED, risk)
    assert run.risk_rejects.get("symbol_paused", 0) > 0
    decided = np.unique(run.reports["decision_ns"])
    assert (np.diff(decided) >= 30 * MINUTE_NS).any()  # a 30-minute silence, then orders
