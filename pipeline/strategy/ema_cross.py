"""Trend following: long while a fast EMA of the price is above a slow one."""

from __future__ import annotations

import numpy as np

from pipeline.records import INTENT_DTYPE, empty
from pipeline.strategy.api import Strategy, min_order_quantity, target_orders
from pipeline.strategy.rolling import Ema


class EmaCross(Strategy):
    """Target ``+quantity`` while EMA(fast) > EMA(slow), else flat (or ``-quantity``).

    Each change of target is one limit order for the difference, ``limit_slippage_bps``
    through the tick price; differences below ``min_quantity`` (default 1% of ``quantity``)
    are left alone. No orders until ``slow`` ticks of the symbol have been seen: a slow EMA
    over fewer ticks is mostly its seed. No orders while one is working (see
    :meth:`Strategy.bind_exposure`). Ticks of other symbols are ignored.
    """

    def __init__(
        self,
        fast: int = 20,
        slow: int = 100,
        quantity: float = 1.0,
        *,
        symbol_id: int = 1,
        allow_short: bool = False,
        limit_slippage_bps: float = 20.0,
        min_quantity: float | None = None,
    ) -> None:
        if not 1 <= fast < slow:
            raise ValueError(f"need 1 <= fast < slow, got fast={fast} slow={slow}")
        if not (np.isfinite(quantity) and quantity > 0):
            raise ValueError(f"quantity must be a finite number > 0, got {quantity}")
        if not (np.isfinite(limit_slippage_bps) and limit_slippage_bps >= 0):
            raise ValueError(f"limit_slippage_bps must be >= 0, got {limit_slippage_bps}")
        self._fast = Ema(fast)
        self._slow = Ema(slow)
        self._warmup = slow
        self._long = float(quantity)
        self._otherwise = -float(quantity) if allow_short else 0.0
        self._symbol_id = symbol_id
        self._slippage_bps = float(limit_slippage_bps)
        self._min_quantity = min_order_quantity(min_quantity, quantity)
        self._seen = 0
        self._target = 0.0

    def on_ticks(self, ticks: np.ndarray) -> np.ndarray:
        """Intents for the target changes in this batch."""
        index = np.flatnonzero(ticks["symbol_id"] == self._symbol_id)
        if index.size == 0:
            return empty(INTENT_DTYPE)
        price = ticks["price"][index]
        above = self._fast.update(price) > self._slow.update(price)
        target = np.where(above, self._long, self._otherwise)
        held = self.held(self._symbol_id, self._target)
        warming = self._seen + np.arange(1, index.size + 1) < self._warmup
        target[warming] = held  # no opinion while warming up: keep what is held
        if self.working(self._symbol_id):
            target[:] = held
        self._seen += index.size
        intents = target_orders(ticks, index, target, held, self._slippage_bps,
                                min_quantity=self._min_quantity)
        self._target = float(target[-1])
        return intents
