"""The strategy API helpers, and the example in the user documentation."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest
from strategykit import AssumedFills, decide

from pipeline.records import INTENT_DTYPE, OrderType, Side
from pipeline.strategy import api
from pipeline.strategy.api import (
    OrderStrategy,
    Strategy,
    TargetStrategy,
    limit_prices,
    make_intents,
)

TickMaker = Callable[..., np.ndarray]


def test_make_intents_copies_the_deciding_ticks(make_ticks: TickMaker) -> None:
    ticks = make_ticks(np.array([100.0, 101.0, 102.0]), np.array([1, 2, 1]), first_seq=10)
    side = np.array([Side.BUY, Side.SELL], dtype=np.int8)
    intents = make_intents(ticks, np.array([0, 1]), side, 2.0, np.array([100.5, 100.0]))
    assert intents.dtype == INTENT_DTYPE
    assert intents["tick_seq"].tolist() == [10, 11]
    assert intents["tick_ingest_ns"].tolist() == [10_000, 11_000]
    assert intents["symbol_id"].tolist() == [1, 2]
    assert intents["side"].tolist() == [1, -1]
    assert intents["quantity"].tolist() == [2.0, 2.0]
    assert intents["limit_price"].tolist() == [100.5, 100.0]
    assert (intents["order_type"] == OrderType.LIMIT).all()
    assert (intents["client_order_id"] == 0).all()
    assert (intents["decision_ns"] == 0).all()


def test_limit_prices_buy_above_and_sell_below() -> None:
    side = np.array([Side.BUY, Side.SELL], dtype=np.int8)
    assert limit_prices(np.array([100.0, 100.0]), side, 20.0) == pytest.approx([100.2, 99.8])


class _Fixed(TargetStrategy):
    """Targets given by the test, one per tick of symbol 1."""

    def __init__(self, targets: list[float]) -> None:
        super().__init__(symbol_id=1, quantity=1.0, limit_slippage_bps=0.0, min_quantity=0.1)
        self._targets = np.array(targets)
        self._seen = 0

    def targets(self, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        index = np.flatnonzero(ticks["symbol_id"] == 1)
        target = self._targets[self._seen : self._seen + index.size]
        self._seen += index.size
        return index, target


class _Refusing(AssumedFills):
    """Rejects the orders of the ticks listed, fills the rest at once; records every until."""

    def __init__(self, refuse_at: set[int]) -> None:
        super().__init__()
        self.refuse_at = refuse_at
        self.now = -1
        self.untils: list[int] = []

    def until(self, position: int) -> None:
        self.untils.append(position)
        self.now = position

    def send(self, intents: np.ndarray) -> None:
        if self.now in self.refuse_at:
            return
        super().send(intents)


def test_a_target_strategy_orders_the_difference_from_what_is_held(
        make_ticks: TickMaker) -> None:
    ticks = make_ticks(np.array([100.0, 101.0, 102.0, 103.0, 104.0, 105.0]))
    nan = float("nan")
    intents = decide(_Fixed([nan, 1.0, 1.0, -1.0, -1.05, 0.0]), ticks)
    assert intents["tick_seq"].tolist() == [2, 4, 6]  # -1.05 is 0.05 from -1: dust
    assert intents["side"].tolist() == [1, -1, 1]
    assert intents["quantity"].tolist() == [1.0, 2.0, 1.0]
    assert intents["limit_price"].tolist() == [101.0, 103.0, 105.0]


def test_a_rejected_order_is_decided_again_at_the_next_tick(make_ticks: TickMaker) -> None:
    ticks = make_ticks(np.array([100.0, 101.0, 102.0, 103.0]))
    book = _Refusing(refuse_at={0, 1})
    intents = decide(_Fixed([1.0, 1.0, 1.0, 1.0]), ticks, book)
    assert intents["tick_seq"].tolist() == [3]  # refused at ticks 1 and 2, filled at 3
    assert book.untils == [0, 1, 2, 3]  # at 3 the target is held: no order, no more visits


def test_nothing_is_ordered_while_an_order_of_the_symbol_works(make_ticks: TickMaker) -> None:
    class Busy(AssumedFills):
        def working(self, symbol_id: int) -> bool:
            return bool(self.sent)  # the first order never ends

    intents = decide(_Fixed([1.0, -1.0, 0.0, 1.0]), make_ticks(np.arange(1.0, 5.0)), Busy())
    assert intents["tick_seq"].tolist() == [1]


def test_an_order_strategy_sends_in_time_order_after_the_book_caught_up(
        make_ticks: TickMaker) -> None:
    class Every(OrderStrategy):
        def on_ticks(self, ticks: np.ndarray) -> np.ndarray:
            index = np.array([2, 0, 2])
            side = np.ones(3, dtype=np.int8)
            return make_intents(ticks, index, side, 1.0, ticks["price"][index])

    book = _Refusing(refuse_at=set())
    intents = decide(Every(), make_ticks(np.array([5.0, 6.0, 7.0]), first_seq=40), book)
    assert intents["tick_seq"].tolist() == [40, 42, 42]
    assert book.untils == [0, 2]


def test_strategy_is_abstract() -> None:
    with pytest.raises(TypeError):
        Strategy()  # type: ignore[abstract]


def test_documented_example_runs(make_ticks: TickMaker) -> None:
    """The example in the module docstring is real code that does what it says."""
    doc = api.__doc__ or ""
    example = re.search(r"::\n\n((?:    .*\n|\n)+)", doc)
    assert example is not None
    code = "\n".join(line[4:] for line in example.group(1).splitlines())
    namespace: dict[str, object] = {}
    exec(compile(code, "api-example", "exec"), namespace)
    strategy = namespace["BuyTheDip"](symbol_id=1, drop_bps=50.0)  # type: ignore[operator]
    first = strategy.on_ticks(make_ticks(np.array([100.0, 99.0, 99.0])))
    second = strategy.on_ticks(make_ticks(np.array([98.0, 98.0]), first_seq=4))
    assert first["tick_seq"].tolist() == [2]
    assert second["tick_seq"].tolist() == [4]  # the dip across the batch edge counts
    assert (second["side"] == Side.BUY).all()
