"""The risk engine's scalar path for live-sized batches decides exactly as the vectorised one."""

from __future__ import annotations

import numpy as np

from pipeline.records import INTENT_DTYPE, TICK_DTYPE, empty
from pipeline.strategy.config import RiskConfig
from pipeline.strategy.risk import RiskEngine


def _intents(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    intents = empty(INTENT_DTYPE, n)
    intents["symbol_id"] = rng.choice([1, 2, 9], n)  # 9: no price seen yet
    intents["side"] = rng.choice([1, -1, 1, -1, 0], n)
    intents["quantity"] = rng.choice([0.5, 1.0, 3.0, 40.0, -1.0, np.nan], n)
    intents["limit_price"] = 150.0 * (1.0 + rng.normal(0.0, 0.01, n))
    intents["limit_price"][rng.random(n) < 0.05] = np.inf
    return intents


def _engine() -> RiskEngine:
    engine = RiskEngine(RiskConfig(max_position=5.0, max_orders_per_s=20.0))
    ticks = empty(TICK_DTYPE, 2)
    ticks["symbol_id"] = [1, 2]
    ticks["price"] = [150.0, 151.0]
    engine.on_ticks(ticks)
    return engine


def test_one_at_a_time_equals_one_batch() -> None:
    intents = _intents(300, seed=7)
    batched, single = _engine(), _engine()
    now_ns = 10**12
    accepted, reasons = batched.check(intents, now_ns)
    singles = [single.check(intents[i:i + 1], now_ns) for i in range(len(intents))]
    assert np.array_equal(reasons, np.concatenate([r for _, r in singles]))
    assert np.array_equal(accepted, np.concatenate([a for a, _ in singles]))
    assert batched.reject_counts() == single.reject_counts()
    assert all(batched.position(s) == single.position(s) for s in (1, 2, 9))
    assert len(set(reasons.tolist())) >= 5  # every kind of outcome was exercised
