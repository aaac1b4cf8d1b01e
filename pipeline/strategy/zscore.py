"""Mean reversion: buy when the price is far below its rolling mean, exit near the mean."""

from __future__ import annotations

import numpy as np

from pipeline.records import INTENT_DTYPE, empty
from pipeline.strategy.api import Strategy, min_order_quantity, target_orders
from pipeline.strategy.rolling import RollingMoments


class ZScoreReversion(Strategy):
    """Trade the z-score ``(price - mean) / std`` over the last ``window`` ticks.

    ``z < -entry_z``: target long; ``z > entry_z``: target short (flat unless
    ``allow_short``); ``|z| < exit_z``: flat; in between: keep the previous target. A flat
    window (std 0) reads as z = 0. Orders as in :func:`pipeline.strategy.api.target_orders`
    (differences below ``min_quantity``, default 1% of ``quantity``, are left alone); none
    while one is working (see :meth:`Strategy.bind_exposure`).
    """

    def __init__(
        self,
        window: int = 60,
        entry_z: float = 2.0,
        exit_z: float = 0.5,
        quantity: float = 1.0,
        *,
        symbol_id: int = 1,
        allow_short: bool = False,
        limit_slippage_bps: float = 20.0,
        min_quantity: float | None = None,
    ) -> None:
        if not 0.0 <= exit_z < entry_z < np.inf:
            raise ValueError(f"need 0 <= exit_z < entry_z, got exit_z={exit_z} entry_z={entry_z}")
        if not (np.isfinite(quantity) and quantity > 0):
            raise ValueError(f"quantity must be a finite number > 0, got {quantity}")
        if not (np.isfinite(limit_slippage_bps) and limit_slippage_bps >= 0):
            raise ValueError(f"limit_slippage_bps must be >= 0, got {limit_slippage_bps}")
        self._moments = RollingMoments(window)
        self._entry_z = float(entry_z)
        self._exit_z = float(exit_z)
        self._long = float(quantity)
        self._short = -float(quantity) if allow_short else 0.0
        self._symbol_id = symbol_id
        self._slippage_bps = float(limit_slippage_bps)
        self._min_quantity = min_order_quantity(min_quantity, quantity)
        self._target = 0.0

    def on_ticks(self, ticks: np.ndarray) -> np.ndarray:
        """Intents for the target changes in this batch."""
        index = np.flatnonzero(ticks["symbol_id"] == self._symbol_id)
        if index.size == 0:
            return empty(INTENT_DTYPE)
        price = ticks["price"][index]
        mean, std = self._moments.update(price)
        z = np.zeros(index.size)
        np.divide(price - mean, std, out=z, where=std > 0.0)  # a flat window reads as 0
        signal = np.full(index.size, np.nan)  # NaN: hold the previous target
        signal[z < -self._entry_z] = self._long
        signal[z > self._entry_z] = self._short
        signal[np.abs(z) < self._exit_z] = 0.0
        signal[np.isnan(std)] = np.nan  # no opinion while the window fills: keep what is held
        held = self.held(self._symbol_id, self._target)
        target = self._hold(signal, held)
        if self.working(self._symbol_id):
            target[:] = held
        intents = target_orders(ticks, index, target, held, self._slippage_bps,
                                min_quantity=self._min_quantity)
        self._target = float(target[-1])
        return intents

    def _hold(self, signal: np.ndarray, held: float) -> np.ndarray:
        """Forward-fill NaNs in ``signal`` with the last set value, starting from ``held``."""
        positions = np.arange(signal.size)
        last_set = np.maximum.accumulate(np.where(np.isnan(signal), -1, positions))
        return np.where(last_set >= 0, signal[last_set], held)
