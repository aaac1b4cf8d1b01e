"""The built-in ``ema_cross`` strategy on the paper venue against backtesting.py.

backtesting.py (PyPI ``backtesting``) is a well-known, independent backtester. The same EMA
crossover runs in both on the bundled candles, one bar (one tick) per candle at its close:

- decisions: long 1 unit while EMA(fast) > EMA(slow) of the closes, flat otherwise; the EMA
  is ``alpha = 2 / (span + 1)`` seeded with the first close (pandas ``ewm(adjust=False)``
  in backtesting.py, :class:`pipeline.strategy.rolling.Ema` here); nothing is decided
  before ``slow`` closes were seen (the project's warm-up, mirrored in ``next``);
- fills: the project decides on tick k and the paper venue fills at tick k + 1's price;
  backtesting.py fills a market order placed in ``next`` at bar k at bar k + 1's open, and
  the bars are fed with Open = High = Low = Close = close, so both fill at close k + 1.
  Zero slippage on both sides; the project's limit orders are priced far enough through
  the market (1%, against a largest one-minute move of 0.41% in this data) that none is
  ever unmarketable, so they behave as market orders (asserted: no rejects);
- fees: ``fee_bps`` of each fill's notional, on entries and exits alike, which is how
  backtesting.py applies ``commission`` (a relative rate, charged at trade open and again
  at trade close, on the fill price).

End of data: PnL is the equity change with a position still open marked at the last close
and no closing fill, in both: backtesting.py's final equity (``finalize_trades=False``; its
open trade has paid its entry commission only) and, here, cash after every fill and fee
plus the position at the last tick's price (an order decided on the last tick has no tick
to fill at and is cancelled by the engine, as backtesting.py never fills an order placed on
its last bar). Closing out instead would add a fill the project never makes.
"""

from __future__ import annotations

import warnings
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pytest
from backtesting import Backtest, Strategy

from pipeline.backtest.engine import run_backtest
from pipeline.config import load_config
from pipeline.ingest.candles import load_bundled
from pipeline.records import TICK_DTYPE, OrderStatus, SourceId, TickFlag

CASH = 1_000_000.0  # ample: backtesting.py cancels an order the cash cannot cover
CLOSE_OFFSET_NS = 59 * 1_000_000_000  # each candle's one tick, a second before it closes
LIMIT_SLIPPAGE_BPS = 100.0  # through the market by more than any one-minute move here


class Fill(NamedTuple):
    bar: int  # index of the candle (tick) whose close filled the order
    side: int  # +1 buy, -1 sell
    price: float


class Result(NamedTuple):
    fills: list[Fill]
    pnl: float  # equity change, the open position marked at the last close
    unfilled: int  # orders decided on the last bar, left without a bar to fill at


def closes_as_ticks(candles: np.ndarray) -> np.ndarray:
    """One replayed tick per candle: its close, stamped just before the candle ends."""
    ticks = np.zeros(len(candles), dtype=TICK_DTYPE)
    ticks["source_ts_ns"] = candles["open_time_ms"].astype(np.int64) * 1_000_000 \
        + CLOSE_OFFSET_NS
    ticks["price"] = candles["close"]
    ticks["size"] = candles["volume"]
    ticks["symbol_id"] = 1
    ticks["source_id"] = int(SourceId.REPLAY)
    ticks["flags"] = int(TickFlag.REPLAY)
    return ticks


def run_project(ticks: np.ndarray, fast: int, slow: int, fee_bps: float) -> Result:
    """The project's backtest of ``ema_cross`` on the paper venue (the one place to adapt
    when the engine's or the strategy's API changes)."""
    config = load_config(None, environ={}, overrides={
        "strategy": {"name": "ema_cross", "params": {
            "fast": fast, "slow": slow, "quantity": 1.0,
            # One tick per candle, its close: each tick is a bar that closes at once, the
            # decision on close k, as backtesting.py's next() (a 60 s bar would only close
            # at the next candle's tick, one candle later).
            "bar_s": 0.0, "limit_slippage_bps": LIMIT_SLIPPAGE_BPS}},
        "executor": {"venue": "paper", "slippage_bps": 0.0, "fee_bps": fee_bps},
        # The price band must admit limits LIMIT_SLIPPAGE_BPS through the tick price.
        "risk": {"price_band_bps": 5 * LIMIT_SLIPPAGE_BPS},
    })
    run = run_backtest(ticks, config)
    assert run.ticks_rejected == {}, "every candle must reach the strategy"
    assert run.risk_rejects == {}
    reports = run.reports
    filled = reports[reports["status"] == OrderStatus.FILLED]
    others = reports[reports["status"] != OrderStatus.FILLED]
    # Only an order decided on the last tick may end unfilled (cancelled at the end).
    assert (others["status"] == OrderStatus.CANCELLED).all()
    assert (others["tick_seq"] == len(ticks) - 1).all()
    assert (filled["filled_qty"] == 1.0).all()
    side = filled["side"].astype(np.float64)
    cash = -float((side * filled["avg_price"]).sum()) - float(filled["fee"].sum())
    position = float(side.sum())
    fills = [Fill(int(seq) + 1, int(s), float(p))
             for seq, s, p in zip(filled["tick_seq"], filled["side"], filled["avg_price"],
                                  strict=True)]
    return Result(fills, cash + position * float(run.ticks["price"][-1]), len(others))


def _ema(values: np.ndarray, span: int) -> np.ndarray:
    """alpha = 2 / (span + 1), seeded with the first value: the project's recursion."""
    ema: np.ndarray = pd.Series(values).ewm(span=span, adjust=False).mean().to_numpy()
    return ema


class EmaCrossLong(Strategy):
    """Long one unit while EMA(fast) > EMA(slow), flat otherwise, after ``slow`` closes."""

    fast = 12
    slow = 48

    def init(self) -> None:
        self.fast_ema = self.I(_ema, self.data.Close, self.fast)
        self.slow_ema = self.I(_ema, self.data.Close, self.slow)

    def next(self) -> None:
        if len(self.data) < self.slow:  # the project's warm-up: `slow` ticks seen
            return
        target = 1 if self.fast_ema[-1] > self.slow_ema[-1] else 0
        held = self.position.size
        if target > held:
            self.buy(size=target - held)
        elif target < held:
            self.position.close()


def run_library(candles: np.ndarray, fast: int, slow: int, fee_bps: float) -> Result:
    """The same strategy in backtesting.py, every bar flat at the candle's close."""
    close = candles["close"]
    index = pd.to_datetime(candles["open_time_ms"], unit="ms")
    bars = pd.DataFrame({"Open": close, "High": close, "Low": close, "Close": close,
                         "Volume": candles["volume"]}, index=index)
    backtest = Backtest(bars, EmaCrossLong, cash=CASH, commission=fee_bps / 1e4, spread=0.0,
                        trade_on_close=False, exclusive_orders=False, finalize_trades=False)
    with warnings.catch_warnings():
        # Our PnL keeps the last position open (see the module docstring), which it warns of.
        warnings.filterwarnings("ignore", message="Some trades remain open")
        stats = backtest.run(fast=fast, slow=slow)
    fills: list[Fill] = []
    for trade in stats["_trades"].itertuples():
        direction = 1 if trade.Size > 0 else -1
        fills.append(Fill(int(trade.EntryBar), direction, float(trade.EntryPrice)))
        fills.append(Fill(int(trade.ExitBar), -direction, float(trade.ExitPrice)))
    strategy: Any = stats["_strategy"]
    for open_trade in strategy.trades:
        direction = 1 if open_trade.size > 0 else -1
        fills.append(Fill(int(open_trade.entry_bar), direction, float(open_trade.entry_price)))
    fills.sort(key=lambda fill: (fill.bar, fill.side))
    return Result(fills, float(stats["Equity Final [$]"]) - CASH, len(strategy.orders))


class Case(NamedTuple):
    fast: int
    slow: int
    fee_bps: float
    candles_used: int  # the first this many bundled candles
    held_at_end: int  # position left open, marked at the last close
    unfilled: int  # orders decided on the last candle


CASES = {
    "12-48-all-ends-flat": Case(12, 48, 5.0, 4320, 0, 0),
    "20-100-all-ends-flat": Case(20, 100, 10.0, 4320, 0, 0),
    # Cut 16 candles after the buy filled at candle 4234: the position is marked open.
    "12-48-ends-long": Case(12, 48, 5.0, 4250, 1, 0),
    # Cut so the decision to buy is on the last candle: neither side may fill it.
    "12-48-last-decision-unfilled": Case(12, 48, 5.0, 4234, 0, 1),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_ema_cross_matches_backtesting_py(case: Case) -> None:
    candles = load_bundled()[: case.candles_used]
    ours = run_project(closes_as_ticks(candles), case.fast, case.slow, case.fee_bps)
    theirs = run_library(candles, case.fast, case.slow, case.fee_bps)
    first_difference = next(
        ((n, a, b) for n, (a, b) in enumerate(zip(ours.fills, theirs.fills, strict=False))
         if a != b), None)
    assert first_difference is None, f"fill #{first_difference}: (ours, backtesting.py)"
    assert len(ours.fills) == len(theirs.fills)
    assert len(ours.fills) > 20  # a real test: many round trips
    assert sum(fill.side for fill in ours.fills) == case.held_at_end
    assert ours.unfilled == theirs.unfilled == case.unfilled
    assert ours.pnl == pytest.approx(theirs.pnl, abs=1e-6)
