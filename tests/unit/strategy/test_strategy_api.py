"""The strategy API helpers, and the example in the user documentation."""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pytest

from pipeline.records import INTENT_DTYPE, OrderType, Side
from pipeline.strategy import api
from pipeline.strategy.api import Strategy, limit_prices, make_intents, target_orders

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


def test_target_orders_trade_the_difference(make_ticks: TickMaker) -> None:
    ticks = make_ticks(np.array([100.0, 101.0, 102.0, 103.0]))
    target = np.array([1.0, 1.0, -1.0, 0.0])
    intents = target_orders(ticks, np.arange(4), target, previous_target=0.0, slippage_bps=0.0)
    assert intents["tick_seq"].tolist() == [1, 3, 4]
    assert intents["side"].tolist() == [1, -1, 1]
    assert intents["quantity"].tolist() == [1.0, 2.0, 1.0]
    assert intents["limit_price"].tolist() == [100.0, 102.0, 103.0]


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
