"""Position and balance arithmetic for a batch of fills, free of any database.

Positions use average-cost accounting on a signed quantity: buys and sells that grow the
position move the average price; fills that shrink it realise ``closed_qty x (price - avg)``
(sign-adjusted for shorts) and leave the average alone; a fill that crosses zero closes the
old position and opens the remainder at the fill price. Realised PnL excludes fees, which
are summed separately.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Final

import numpy as np

QTY_EPSILON: Final = 1e-12  # base units: below this a position is flat (float residue)


@dataclasses.dataclass(frozen=True, slots=True)
class PositionState:
    """One symbol's position; what the positions table holds."""

    quantity: float = 0.0  # signed base units
    avg_price: float = 0.0  # quote per base; 0.0 when flat
    realized_pnl: float = 0.0  # quote units, excluding fees
    fees: float = 0.0  # quote units, cumulative

    def after_fill(self, signed_qty: float, price: float, fee: float) -> PositionState:
        """The position after one fill of ``signed_qty`` (buy > 0) at ``price``."""
        old_qty, avg, realized = self.quantity, self.avg_price, self.realized_pnl
        new_qty = old_qty + signed_qty
        if abs(new_qty) < QTY_EPSILON:
            new_qty = 0.0
        if old_qty == 0.0 or (old_qty > 0) == (signed_qty > 0):
            total = abs(old_qty) + abs(signed_qty)
            avg = (avg * abs(old_qty) + price * abs(signed_qty)) / total if new_qty else 0.0
        else:
            closed_qty = min(abs(signed_qty), abs(old_qty))
            realized += closed_qty * (price - avg) * (1.0 if old_qty > 0 else -1.0)
            if new_qty == 0.0:
                avg = 0.0
            elif (new_qty > 0) != (old_qty > 0):
                avg = price  # crossed zero: the remainder opened at this fill
        return PositionState(new_qty, avg, realized, self.fees + fee)


def apply_fills(
    positions: Mapping[str, PositionState],
    symbols: list[str],
    signed_qty: np.ndarray,
    price: np.ndarray,
    fee: np.ndarray,
) -> dict[str, PositionState]:
    """The positions changed by these fills (in batch order); ``positions`` is not modified.

    Average-cost accounting is a sequential recurrence (each fill's effect depends on the
    average left by the previous one), so this walks the fills in Python. It touches only
    fills, at most one per order, on plain floats: about a microsecond each.
    """
    changed: dict[str, PositionState] = {}
    for symbol, qty, px, fe in zip(symbols, signed_qty.tolist(), price.tolist(),
                                   fee.tolist(), strict=True):
        state = changed.get(symbol) or positions.get(symbol) or PositionState()
        changed[symbol] = state.after_fill(qty, px, fe)
    return changed


def balance_deltas(
    symbol_ids: np.ndarray,
    signed_qty: np.ndarray,
    price: np.ndarray,
    fee: np.ndarray,
    assets: Mapping[int, tuple[str, str]],
) -> dict[str, float]:
    """Net change per asset: base +/- qty, quote -/+ notional - fee (buy qty > 0).

    ``assets`` maps symbol_id to (base, quote). Only assets touched by a fill appear.
    """
    deltas: dict[str, float] = {}
    if len(symbol_ids) == 0:
        return deltas
    unique_ids, inverse = np.unique(symbol_ids, return_inverse=True)
    base = np.bincount(inverse, weights=signed_qty, minlength=len(unique_ids))
    quote = np.bincount(inverse, weights=-signed_qty * price - fee, minlength=len(unique_ids))
    for sym_id, base_delta, quote_delta in zip(unique_ids.tolist(), base.tolist(),
                                               quote.tolist(), strict=True):
        base_asset, quote_asset = assets[sym_id]
        deltas[base_asset] = deltas.get(base_asset, 0.0) + base_delta
        deltas[quote_asset] = deltas.get(quote_asset, 0.0) + quote_delta
    return deltas
