"""Round trips from fills: FIFO lots, long or short, and the trades CSV.

A fill first closes the oldest open lots of the opposite direction (a partial close splits
a lot) and whatever is left opens a new lot, so one fill can close a long and open a
short. Each (lot, closing fill) match is one round trip. Fees are charged pro rata to
quantity: a lot carries its entry fee until closed, a closing fill's fee is split across
the lots it closes and the lot it opens. Hence, exactly (up to float rounding):

    sum(round-trip PnL) + open position's mark-to-market == equity-curve PnL.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np

from pipeline.backtest.timefmt import human_duration, iso_utc_array
from pipeline.records import OrderStatus

TRADE_DTYPE: Final = np.dtype(
    [
        ("entry_ns", "<i8"),  # Unix epoch ns of the opening fill
        ("exit_ns", "<i8"),  # Unix epoch ns of the closing fill
        ("quantity", "<f8"),  # base units, positive
        ("entry_price", "<f8"),
        ("exit_price", "<f8"),
        ("fees", "<f8"),  # quote units: the entry and exit fee shares of this quantity
        ("pnl", "<f8"),  # quote units, net of fees
        ("return_pct", "<f8"),  # pnl over the entry notional
        ("side", "<i1"),  # +1 long, -1 short
    ]
)
CSV_HEADER: Final = ("entry_time,exit_time,side,quantity,entry_price,exit_price,fees,pnl,"
                     "return_pct,holding_time,holding_s")
_EPS: Final = 1e-12  # relative: a lot this close to empty is closed (float residue)


@dataclass(frozen=True)
class Book:
    """Closed round trips and what is still open at the end."""

    trades: np.ndarray  # TRADE_DTYPE, in exit order (then FIFO lot order)
    open_quantity: float  # signed base units: > 0 long, < 0 short
    open_cost: float  # sum of signed quantity * entry price over the open lots
    open_fees: float  # entry fees of the open lots, not yet in any round trip

    def open_mark_to_market(self, price: float) -> float:
        """PnL of the open lots at ``price``, net of their entry fees (quote units)."""
        return self.open_quantity * price - self.open_cost - self.open_fees

    @property
    def open_average_price(self) -> float | None:
        """Average entry price of the open lots, or None when flat."""
        return self.open_cost / self.open_quantity if self.open_quantity else None


@dataclass
class _Lot:
    time_ns: int
    side: int
    quantity: float
    price: float
    fee: float  # the part of the entry fee not yet charged to a round trip


def round_trips(reports: np.ndarray) -> Book:
    """Match the FILLED reports of ``reports`` (REPORT_DTYPE) into FIFO round trips."""
    fills = reports[reports["status"] == OrderStatus.FILLED]
    fills = fills[np.argsort(fills["venue_ts_ns"], kind="stable")]
    lots: deque[_Lot] = deque()
    rows: list[tuple[int, int, float, float, float, float, float, float, int]] = []
    # Plain floats: a Python loop over numpy scalars would be several times slower.
    for time_ns, side, quantity, price, fee in zip(
            fills["venue_ts_ns"].tolist(), fills["side"].tolist(),
            fills["filled_qty"].tolist(), fills["avg_price"].tolist(),
            fills["fee"].tolist(), strict=True):
        left, fee_left = quantity, fee
        while lots and lots[0].side != side and left > _EPS * quantity:
            lot = lots[0]
            matched = min(lot.quantity, left)
            whole_lot = lot.quantity - matched <= _EPS * lot.quantity
            entry_fee = lot.fee if whole_lot else lot.fee * matched / lot.quantity
            exit_fee = fee * matched / quantity
            pnl = lot.side * matched * (price - lot.price) - entry_fee - exit_fee
            rows.append((lot.time_ns, time_ns, matched, lot.price, price, entry_fee + exit_fee,
                         pnl, pnl / (matched * lot.price) * 100.0, lot.side))
            left -= matched
            fee_left -= exit_fee
            if whole_lot:
                lots.popleft()
            else:
                lot.quantity -= matched
                lot.fee -= entry_fee
        if left > _EPS * quantity:
            lots.append(_Lot(time_ns, side, left, price, fee_left))
    trades = np.array(rows, dtype=TRADE_DTYPE) if rows else np.zeros(0, dtype=TRADE_DTYPE)
    return Book(trades=trades,
                open_quantity=math.fsum(lot.side * lot.quantity for lot in lots),
                open_cost=math.fsum(lot.side * lot.quantity * lot.price for lot in lots),
                open_fees=math.fsum(lot.fee for lot in lots))


def write_trades_csv(path: Path, trades: np.ndarray) -> None:
    """One line per round trip, ISO 8601 UTC times; same trades, same bytes."""
    held_s = (trades["exit_ns"] - trades["entry_ns"]) / 1e9
    columns = (iso_utc_array(trades["entry_ns"]), iso_utc_array(trades["exit_ns"]),
               np.where(trades["side"] > 0, "long", "short").tolist(),
               *(_text(trades[name]) for name in
                 ("quantity", "entry_price", "exit_price", "fees", "pnl", "return_pct")),
               [human_duration(held) for held in held_s.tolist()], _text(held_s))
    lines = [CSV_HEADER, *(",".join(row) for row in zip(*columns, strict=True))]
    path.write_text("\n".join(lines) + "\n")


def _text(values: np.ndarray) -> list[str]:
    """Shortest text of each value rounded to 9 decimals (no float noise, no lost digits)."""
    text: list[str] = np.round(values.astype(np.float64), 9).astype(str).tolist()
    return text
