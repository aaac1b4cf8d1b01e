"""Average-cost position arithmetic and balance deltas."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.ledger.accounting import PositionState, apply_fills, balance_deltas


def test_open_and_add_average_the_price() -> None:
    pos = PositionState().after_fill(2.0, 100.0, 0.1).after_fill(2.0, 110.0, 0.1)
    assert (pos.quantity, pos.realized_pnl) == (4.0, 0.0)
    assert pos.avg_price == pytest.approx(105.0)
    assert pos.fees == pytest.approx(0.2)


def test_reduce_realises_and_keeps_average() -> None:
    pos = PositionState(4.0, 105.0, 0.0, 0.0).after_fill(-1.0, 115.0, 0.0)
    assert pos.quantity == 3.0
    assert pos.avg_price == 105.0
    assert pos.realized_pnl == pytest.approx(10.0)


def test_close_goes_flat() -> None:
    pos = PositionState(0.3, 100.0, 0.0, 0.0).after_fill(-0.1, 90.0, 0.0)
    pos = pos.after_fill(-0.2, 90.0, 0.0)  # 0.3 - 0.1 - 0.2 leaves float residue
    assert pos.quantity == 0.0
    assert pos.avg_price == 0.0
    assert pos.realized_pnl == pytest.approx(-3.0)


def test_flip_opens_remainder_at_fill_price() -> None:
    pos = PositionState(1.0, 100.0, 0.0, 0.0).after_fill(-3.0, 120.0, 0.0)
    assert pos.quantity == -2.0
    assert pos.avg_price == 120.0
    assert pos.realized_pnl == pytest.approx(20.0)


def test_short_profits_when_price_falls() -> None:
    pos = PositionState().after_fill(-2.0, 100.0, 0.0).after_fill(1.0, 90.0, 0.0)
    assert pos.quantity == -1.0
    assert pos.avg_price == 100.0
    assert pos.realized_pnl == pytest.approx(10.0)


fills_strategy = st.lists(
    st.tuples(st.sampled_from([1.0, -1.0]), st.floats(0.001, 50.0), st.floats(1.0, 500.0)),
    min_size=1, max_size=60,
)


@given(fills_strategy)
def test_realized_plus_open_cost_equals_cash_flow(fills: list[tuple[float, float, float]]) -> None:
    """realized = -sum(q*p) + Q*avg: the identity of average-cost accounting."""
    signed = np.array([s * q for s, q, _ in fills])
    prices = np.array([p for _, _, p in fills])
    pos = apply_fills({}, ["X"] * len(fills), signed, prices, np.zeros(len(fills)))["X"]
    assert pos.quantity == pytest.approx(signed.sum(), abs=1e-9)
    cash_flow = -(signed * prices).sum()
    scale = (np.abs(signed) * prices).sum()
    assert pos.realized_pnl == pytest.approx(cash_flow + pos.quantity * pos.avg_price,
                                             abs=1e-9 * scale)


def test_apply_fills_does_not_touch_the_input() -> None:
    before = {"X": PositionState(1.0, 10.0, 0.0, 0.0)}
    changed = apply_fills(before, ["X", "Y"], np.array([1.0, -1.0]), np.array([20.0, 5.0]),
                          np.array([0.5, 0.5]))
    assert before == {"X": PositionState(1.0, 10.0, 0.0, 0.0)}
    assert changed["X"] == PositionState(2.0, 15.0, 0.0, 0.5)
    assert changed["Y"] == PositionState(-1.0, 5.0, 0.0, 0.5)


def test_balance_deltas_per_asset() -> None:
    deltas = balance_deltas(
        np.array([1, 2, 1], dtype=np.uint32),
        np.array([2.0, -10.0, -1.0]),
        np.array([100.0, 1.0, 110.0]),
        np.array([0.2, 0.01, 0.1]),
        {1: ("SOL", "USDT"), 2: ("JUP", "USDT")},
    )
    assert deltas == {
        "SOL": pytest.approx(1.0),
        "JUP": pytest.approx(-10.0),
        "USDT": pytest.approx(-200.0 - 0.2 + 10.0 - 0.01 + 110.0 - 0.1),
    }
    assert balance_deltas(np.array([], dtype=np.uint32), np.array([]), np.array([]),
                          np.array([]), {}) == {}
