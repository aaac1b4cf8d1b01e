"""The backtest gives the same orders, fills and rejects however the ticks are batched.

Random candle paths with what makes batching matter: limit orders the next tick rejects
(a thin limit against a volatile path), venue refusals backing the symbol off and pausing
it (``limit_not_marketable`` counted as a refusal), risk rejects (a notional limit that
refuses the double-sized order flipping long to short, re-decided every tick), gaps in the
data (a halted market) and flat zero-volume stretches. Every built-in strategy, bars of a
minute and of a tick, batch sizes 1, 2, 7, 64, 4096 and 16384.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.backtest.engine import run_backtest
from pipeline.config import load_config
from pipeline.ingest.candles import CANDLE_DTYPE, candles_to_ticks
from pipeline.records import OrderStatus, RejectReason, SourceId, TickFlag

BATCHES = (1, 2, 7, 64, 4096, 16384)
STRATEGIES: dict[str, dict[str, Any]] = {
    "ema_cross": {"fast": 3, "slow": 9},
    "zscore": {"window": 12, "entry_z": 1.2, "exit_z": 0.3},
}
MINUTE_MS = 60_000


def _candles(seed: int, n: int, gaps: int, flat: int) -> np.ndarray:
    """A volatile SOL-like path, with ``gaps`` halts of 30-120 minutes and ``flat``
    zero-volume stretches where the price does not move."""
    rng = np.random.default_rng(seed)
    steps = rng.normal(0.0, 4e-3, (n, 4))
    path = 150.0 * np.exp(np.cumsum(steps.ravel())).reshape(n, 4)
    candles = np.zeros(n, dtype=CANDLE_DTYPE)
    candles["open"], candles["close"] = path[:, 0], path[:, 3]
    candles["high"] = path.max(axis=1)
    candles["low"] = path.min(axis=1)
    candles["volume"] = rng.uniform(10.0, 1000.0, n)
    for start in rng.integers(0, n, flat):
        stretch = slice(int(start), int(start) + 20)
        price = float(candles["close"][max(int(start) - 1, 0)])
        for column in ("open", "high", "low", "close"):
            candles[column][stretch] = price
        candles["volume"][stretch] = 0.0
    minutes = np.ones(n, dtype=np.int64)
    minutes[rng.integers(1, n, gaps)] = rng.integers(30, 120, gaps)
    candles["open_time_ms"] = 1_700_000_000_000 + np.cumsum(minutes) * MINUTE_MS
    return candles


def _config(strategy: str, bar_s: float, allow_short: bool) -> Any:
    params = {**STRATEGIES[strategy], "quantity": 1.0, "bar_s": bar_s,
              "allow_short": allow_short, "limit_slippage_bps": 5.0}
    return load_config(None, environ={}, overrides={
        "strategy": {"name": strategy, "params": params},
        "executor": {"slippage_bps": 2.0, "fee_bps": 5.0},
        "risk": {"max_order_notional": 250.0, "allow_short": allow_short,
                 "price_band_bps": 300.0, "refusal_reasons": ["limit_not_marketable"],
                 "refusal_backoff_base_s": 20.0, "refusal_backoff_max_s": 120.0,
                 "refusal_pause_after": 3, "refusal_pause_cooldown_s": 600.0}})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), candles=st.integers(150, 400),
       gaps=st.integers(0, 4), flat=st.integers(0, 3),
       strategy=st.sampled_from(sorted(STRATEGIES)), bar_s=st.sampled_from([0.0, 60.0]),
       allow_short=st.booleans())
def test_every_batch_size_gives_the_same_reports(  # noqa: PLR0917 - hypothesis supplies them
        seed: int, candles: int, gaps: int, flat: int, strategy: str, bar_s: float,
        allow_short: bool) -> None:
    ticks = candles_to_ticks(_candles(seed, candles, gaps, flat), 1, SourceId.REPLAY,
                             TickFlag.REPLAY)
    config = _config(strategy, bar_s, allow_short)
    runs = {size: run_backtest(ticks, config, batch_ticks=size) for size in BATCHES}
    reference = runs[1]
    for size, run in runs.items():
        assert run.reports.tobytes() == reference.reports.tobytes(), f"batch {size}"
        assert run.risk_rejects == reference.risk_rejects, f"batch {size}"


def test_the_fixture_exercises_what_batching_could_break() -> None:
    """One fixed path: fills, limit rejects, refusal pauses, risk rejects all happen (the
    property above would pass trivially on a path where nothing is ever refused)."""
    ticks = candles_to_ticks(_candles(7, 400, 3, 2), 1, SourceId.REPLAY, TickFlag.REPLAY)
    run = run_backtest(ticks, _config("ema_cross", 0.0, True), batch_ticks=1)
    reports = run.reports
    assert (reports["status"] == OrderStatus.FILLED).sum() >= 10
    assert (reports["reject_reason"] == RejectReason.LIMIT_NOT_MARKETABLE).sum() >= 3
    assert run.risk_rejects.get("max_notional", 0) >= 1
    assert run.risk_rejects.get("refusal_backoff", 0) >= 1
    assert run.risk_rejects.get("symbol_paused", 0) >= 1
