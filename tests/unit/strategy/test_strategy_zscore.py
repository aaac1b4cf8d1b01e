"""ZScoreReversion: entries, exits, holding, and batch-split invariance."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategykit import AssumedFills, decide

from pipeline.records import Side
from pipeline.strategy.zscore import ZScoreReversion

TickMaker = Callable[..., np.ndarray]
Walk = Callable[[int, int], np.ndarray]


def _reference_targets(
    prices: np.ndarray, window: int, entry_z: float, exit_z: float, short: float
) -> list[float]:
    """The rule written out one tick at a time, as a reader would check it by hand."""
    targets, target = [], 0.0
    for i in range(prices.size):
        if i >= window - 1:
            recent = prices[i - window + 1 : i + 1]
            z = (prices[i] - recent.mean()) / recent.std()
            if z < -entry_z:
                target = 1.0
            elif z > entry_z:
                target = short
            elif abs(z) < exit_z:
                target = 0.0
        targets.append(target)
    return targets


def test_buys_a_drop_and_exits_near_the_mean(make_ticks: TickMaker) -> None:
    # A ripple with a period of one window never reaches |z| = 2 (its peak z is sqrt 2).
    ripple = 0.05 * np.sin(np.arange(200) * 2 * np.pi / 20)
    prices = np.where(np.arange(200) < 100, 150.0, 149.0) + ripple
    intents = decide(ZScoreReversion(window=20, entry_z=2.0, exit_z=0.5, quantity=1.0, bar_s=0.0),
        make_ticks(prices)
    )
    assert intents["side"].tolist() == [Side.BUY, Side.SELL]
    assert intents["tick_seq"][0] == 101  # the drop itself
    assert 101 + 14 <= intents["tick_seq"][1] <= 101 + 19  # once 149 dominates the window
    assert intents["limit_price"][0] == pytest.approx(prices[100] * 1.002)


@pytest.mark.parametrize("allow_short", [False, True])
def test_matches_the_rule_tick_by_tick(
    allow_short: bool, make_ticks: TickMaker, random_walk: Walk
) -> None:
    prices = random_walk(3000, 4)
    strategy = ZScoreReversion(window=30, entry_z=1.5, exit_z=0.3, allow_short=allow_short,
                               bar_s=0.0)
    intents = decide(strategy, make_ticks(prices))
    expected = _reference_targets(prices, 30, 1.5, 0.3, -1.0 if allow_short else 0.0)
    changes = np.flatnonzero(np.diff(expected, prepend=0.0))
    assert changes.size > 10
    assert (intents["tick_seq"] - 1).tolist() == changes.tolist()
    position = np.cumsum(intents["side"] * intents["quantity"])
    assert position.tolist() == [expected[i] for i in changes]


def test_a_step_trades_once_then_flat_prices_never_trade(make_ticks: TickMaker) -> None:
    prices = np.concatenate((np.full(50, 150.0), np.full(500, 151.37)))
    strategy = ZScoreReversion(window=10, entry_z=2.0, exit_z=0.45, allow_short=True, bar_s=0.0)
    intents = decide(strategy, make_ticks(prices))
    # With k of 10 prices after the step, z = sqrt((10 - k) / k): 3 at the step (short),
    # below 0.45 from k = 9 (cover); then every window is flat, z = 0, and nothing trades.
    assert intents["side"].tolist() == [Side.SELL, Side.BUY]
    assert intents["tick_seq"].tolist() == [51, 59]


def test_other_symbols_are_ignored(make_ticks: TickMaker, random_walk: Walk) -> None:
    prices = random_walk(1000, 5)
    strategy = ZScoreReversion(window=20, entry_z=1.5, exit_z=0.3, symbol_id=2, bar_s=0.0)
    alone = decide(strategy, make_ticks(prices, symbol_ids=2))
    mixed_prices = np.repeat(prices, 2)
    mixed_prices[1::2] = 7.0
    symbols = np.tile(np.array([2, 3], dtype=np.uint32), 1000)
    mixed = decide(ZScoreReversion(window=20, entry_z=1.5, exit_z=0.3, symbol_id=2, bar_s=0.0),
        make_ticks(mixed_prices, symbol_ids=symbols)
    )
    assert alone.size > 0
    assert mixed["tick_seq"].tolist() == (2 * alone["tick_seq"] - 1).tolist()


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window": 1},
        {"entry_z": 1.0, "exit_z": 1.0},
        {"exit_z": -0.1},
        {"entry_z": float("inf")},
        {"quantity": -1.0},
        {"limit_slippage_bps": float("nan")},
    ],
)
def test_bad_parameters_raise_value_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the loader turns any into a ConfigError
        ZScoreReversion(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(
    window=st.integers(2, 300),
    allow_short=st.booleans(),
    seed=st.integers(0, 2**16),
    cuts=st.lists(st.integers(0, 10**6), max_size=40),
)
def test_intents_do_not_depend_on_batching(  # noqa: PLR0917 - hypothesis supplies them
    window: int,
    allow_short: bool,
    seed: int,
    cuts: list[int],
    make_ticks: TickMaker,
    random_walk: Walk,
) -> None:
    ticks = make_ticks(random_walk(2000, seed), symbol_ids=np.arange(2000) % 3 // 2 + 1)

    def strategy() -> ZScoreReversion:
        return ZScoreReversion(window=window, entry_z=1.5, exit_z=0.3, allow_short=allow_short,
                               bar_s=0.0)

    whole = decide(strategy(), ticks)
    split, book = strategy(), AssumedFills()
    edges = [0, *sorted({c % 2001 for c in cuts}), 2000]
    together = np.concatenate([decide(split, ticks[a:b], book)
                               for a, b in itertools.pairwise(edges)])
    assert together.tolist() == whole.tolist()  # bit-for-bit, beyond the 1e-9 asked
