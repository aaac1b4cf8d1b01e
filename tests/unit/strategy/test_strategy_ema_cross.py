"""EmaCross: warm-up, orders at each crossing, symbols, and batch-split invariance."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from strategykit import AssumedFills, decide

from pipeline.records import INTENT_DTYPE, Side
from pipeline.strategy.ema_cross import EmaCross

TickMaker = Callable[..., np.ndarray]
Walk = Callable[[int, int], np.ndarray]


def _sine(n: int) -> np.ndarray:
    return 150.0 + 5.0 * np.sin(np.arange(n) * 2 * np.pi / 200)


def test_no_orders_before_slow_ticks(make_ticks: TickMaker) -> None:
    rising = 100.0 + np.arange(30, dtype=float)
    intents = decide(EmaCross(fast=3, slow=10, quantity=1.0, bar_s=0.0), make_ticks(rising))
    assert intents["tick_seq"].tolist() == [10]  # the 10th tick is the first that may trade
    assert intents["side"].tolist() == [Side.BUY]


def test_trades_each_crossing_long_only(make_ticks: TickMaker) -> None:
    ticks = make_ticks(_sine(1000))
    strategy = EmaCross(fast=5, slow=20, quantity=2.0, limit_slippage_bps=10.0, bar_s=0.0)
    intents = decide(strategy, ticks)
    assert len(intents) >= 8
    assert intents["side"].tolist() == [1, -1] * (len(intents) // 2) + [1] * (len(intents) % 2)
    assert (intents["quantity"] == 2.0).all()
    price = ticks["price"][intents["tick_seq"] - 1]
    assert intents["limit_price"] == pytest.approx(price * (1 + intents["side"] * 10e-4))
    assert (intents["tick_ingest_ns"] == intents["tick_seq"].astype(np.int64) * 1000).all()
    assert (intents["client_order_id"] == 0).all()


def test_buys_follow_rising_prices(make_ticks: TickMaker) -> None:
    """Long exactly while the fast EMA is above the slow one: buys come after the trough."""
    prices = _sine(1000)
    intents = decide(EmaCross(fast=5, slow=20, quantity=1.0, bar_s=0.0), make_ticks(prices))
    buys = intents["tick_seq"][intents["side"] == Side.BUY] - 1
    sells = intents["tick_seq"][intents["side"] == Side.SELL] - 1
    assert (prices[buys] > prices[buys - 1]).all()
    assert (prices[sells] < prices[sells - 1]).all()


def test_short_mode_flips_with_twice_the_quantity(make_ticks: TickMaker) -> None:
    intents = decide(EmaCross(fast=5, slow=20, quantity=1.0, allow_short=True, bar_s=0.0),
        make_ticks(_sine(1000))
    )
    position = np.cumsum(intents["side"] * intents["quantity"])
    assert set(position.tolist()) <= {-1.0, 1.0}
    assert (intents["quantity"][1:] == 2.0).all()


def test_other_symbols_are_ignored(make_ticks: TickMaker) -> None:
    prices = _sine(600)
    alone = decide(EmaCross(fast=5, slow=20, quantity=1.0, symbol_id=7, bar_s=0.0),
        make_ticks(prices, symbol_ids=7)
    )
    mixed_prices = np.repeat(prices, 2)
    mixed_prices[1::2] = 1.0  # the other symbol's wildly different price
    symbols = np.tile(np.array([7, 8], dtype=np.uint32), 600)
    mixed = decide(EmaCross(fast=5, slow=20, quantity=1.0, symbol_id=7, bar_s=0.0),
        make_ticks(mixed_prices, symbol_ids=symbols)
    )
    assert (mixed["symbol_id"] == 7).all()
    assert mixed["tick_seq"].tolist() == (2 * alone["tick_seq"] - 1).tolist()
    assert mixed["limit_price"].tolist() == alone["limit_price"].tolist()


def test_empty_and_foreign_batches_return_no_intents(make_ticks: TickMaker) -> None:
    strategy = EmaCross(fast=2, slow=3, quantity=1.0, bar_s=0.0)
    assert decide(strategy, make_ticks(np.array([]))).size == 0
    assert decide(strategy, make_ticks(np.array([1.0, 2.0]), symbol_ids=2)).dtype == INTENT_DTYPE


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fast": 10, "slow": 10},
        {"fast": 0, "slow": 10},
        {"fast": 2, "slow": 10, "quantity": 0.0},
        {"fast": 2, "slow": 10, "quantity": float("nan")},
        {"fast": 2, "slow": 10, "limit_slippage_bps": -1.0},
    ],
)
def test_bad_parameters_raise_value_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - the loader turns any into a ConfigError
        EmaCross(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=50, deadline=None)
@given(
    fast=st.integers(1, 30),
    extra=st.integers(1, 200),
    allow_short=st.booleans(),
    seed=st.integers(0, 2**16),
    cuts=st.lists(st.integers(0, 10**6), max_size=40),
)
def test_intents_do_not_depend_on_batching(  # noqa: PLR0917 - hypothesis supplies them
    fast: int,
    extra: int,
    allow_short: bool,
    seed: int,
    cuts: list[int],
    make_ticks: TickMaker,
    random_walk: Walk,
) -> None:
    ticks = make_ticks(random_walk(2000, seed), symbol_ids=np.arange(2000) % 3 // 2 + 1)

    def strategy() -> EmaCross:
        return EmaCross(fast=fast, slow=fast + extra, quantity=1.5, allow_short=allow_short,
                        bar_s=0.0)

    whole = decide(strategy(), ticks)
    split, book = strategy(), AssumedFills()
    edges = [0, *sorted({c % 2001 for c in cuts}), 2000]
    pieces = [decide(split, ticks[a:b], book) for a, b in itertools.pairwise(edges)]
    together = np.concatenate(pieces)
    assert together.tolist() == whole.tolist()  # bit-for-bit, beyond the 1e-9 asked


class _ManualBook(AssumedFills):
    """The test says what is held and when an order ends; a send starts one."""

    def __init__(self) -> None:
        super().__init__()
        self.is_working = False

    def working(self, symbol_id: int) -> bool:
        return self.is_working

    def send(self, intents: np.ndarray) -> None:
        self.sent.append(intents.copy())
        self.is_working = True


def test_no_order_while_one_works_and_no_chasing_of_dust(make_ticks: TickMaker) -> None:
    """Live trading: a swap delivers slightly less than ordered (0.998 of 1.0) and a sell
    may not go out before the buy it would sell has ended."""
    rising = 100.0 + np.arange(30, dtype=float)
    book = _ManualBook()
    strategy = EmaCross(fast=3, slow=10, quantity=1.0, bar_s=0.0)
    first = decide(strategy, make_ticks(rising[:12]), book)
    assert first["quantity"].tolist() == [1.0], "one order, then it works"
    book.held[1], book.is_working = 1.0, True  # the buy is open
    falling = make_ticks(rising[12:][::-1] - 40.0, first_seq=13)
    assert len(decide(strategy, falling[:5], book)) == 0, "the target flipped, the buy works"
    book.held[1], book.is_working = 0.998, False  # it filled a little short
    exit_order = decide(strategy, falling[5:6], book)
    assert exit_order["side"].tolist() == [Side.SELL]
    assert exit_order["quantity"].tolist() == [0.998]
    book.held[1], book.is_working = 0.0, False  # the sell filled
    decide(strategy, falling[6:], book)
    rebound = make_ticks(np.full(40, 200.0), first_seq=100)
    buy = decide(strategy, rebound[:1], book)
    book.held[1], book.is_working = 0.998, False
    assert buy["side"].tolist() == [Side.BUY]
    assert len(decide(strategy, rebound[1:], book)) == 0, "0.002 short of the target is dust"
