"""Shared builders for the strategy tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from pipeline.records import TICK_DTYPE, empty

TickMaker = Callable[..., np.ndarray]


def _make_ticks(
    prices: np.ndarray, symbol_ids: np.ndarray | int = 1, first_seq: int = 1
) -> np.ndarray:
    """Ticks with the given prices; seq counts from ``first_seq``, ingest_ns = 1000 * seq."""
    ticks = empty(TICK_DTYPE, len(prices))
    ticks["seq"] = np.arange(first_seq, first_seq + len(prices))
    ticks["ingest_ns"] = ticks["seq"].astype(np.int64) * 1000
    ticks["price"] = prices
    ticks["size"] = 1.0
    ticks["symbol_id"] = symbol_ids
    return ticks


@pytest.fixture(scope="session")
def make_ticks() -> TickMaker:
    """Build a TICK_DTYPE batch from prices (session scope: usable under hypothesis)."""
    return _make_ticks


@pytest.fixture(scope="session")
def random_walk() -> Callable[[int, int], np.ndarray]:
    """Deterministic SOL-like prices: a seeded geometric random walk around 150."""

    def walk(n: int, seed: int) -> np.ndarray:
        rng = np.random.default_rng(seed)
        return 150.0 * np.exp(np.cumsum(rng.normal(0.0, 2e-3, n)))

    return walk

