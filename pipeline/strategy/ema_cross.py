"""Trend following: long while a fast EMA of the bar closes is above a slow one."""

from __future__ import annotations

import math

import numpy as np

from pipeline.strategy.api import TargetStrategy
from pipeline.strategy.bars import BarCloses, hold_from
from pipeline.strategy.rolling import Ema


class EmaCross(TargetStrategy):
    """Target ``+quantity`` while EMA(fast) > EMA(slow) of the closes, else flat (or
    ``-quantity`` with ``allow_short``).

    ``fast`` and ``slow`` count bars of ``bar_s`` seconds (1-minute candles by default;
    ``bar_s = 0``: ticks). The target changes when a bar closes, at the first tick of the
    next bar. No opinion until ``slow`` bars have closed: a slow EMA over fewer bars is
    mostly its seed. Orders as in :class:`~pipeline.strategy.api.TargetStrategy`. Ticks of
    other symbols are ignored.
    """

    def __init__(
        self,
        fast: int = 12,
        slow: int = 48,
        quantity: float = 1.0,
        *,
        symbol_id: int = 1,
        bar_s: float = 60.0,
        allow_short: bool = False,
        limit_slippage_bps: float = 20.0,
        min_quantity: float | None = None,
    ) -> None:
        if not 1 <= fast < slow:
            raise ValueError(f"need 1 <= fast < slow, got fast={fast} slow={slow}")
        super().__init__(symbol_id=symbol_id, quantity=quantity,
                         limit_slippage_bps=limit_slippage_bps, min_quantity=min_quantity)
        self._bars = BarCloses(bar_s)
        self._fast = Ema(fast)
        self._slow = Ema(slow)
        self._warmup = slow
        self._long = float(quantity)
        self._otherwise = -float(quantity) if allow_short else 0.0
        self._closed = 0  # bars closed so far
        self._target = np.nan  # after the last tick seen

    def targets(self, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        index = np.flatnonzero(ticks["symbol_id"] == self.symbol_id)
        if index.size == 0:
            return index, np.empty(0)
        closes, at = self._bars.update(ticks["source_ts_ns"][index], ticks["price"][index])
        if closes.size:
            above = self._fast.update(closes) > self._slow.update(closes)
            per_bar = np.where(above, self._long, self._otherwise)
            warming = self._closed + np.arange(1, closes.size + 1) < self._warmup
            per_bar[warming] = np.nan
            self._closed += closes.size
        else:
            per_bar = closes
        target = hold_from(at, per_bar, index.size, self._target)
        self._target = float(target[-1])
        return index, target

    def target_step(self, source_ts_ns: int, price: float) -> float:
        close = self._bars.step(source_ts_ns, price)
        if close is not None:
            above = self._fast.step(close) > self._slow.step(close)
            self._closed += 1
            self._target = (math.nan if self._closed < self._warmup
                            else self._long if above else self._otherwise)
        return self._target
