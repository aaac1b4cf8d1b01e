"""Mean reversion: buy when the price is far below its rolling mean, exit near the mean."""

from __future__ import annotations

import numpy as np

from pipeline.strategy.api import TargetStrategy
from pipeline.strategy.bars import BarCloses, hold_from
from pipeline.strategy.rolling import RollingMoments


class ZScoreReversion(TargetStrategy):
    """Trade the z-score ``(close - mean) / std`` over the last ``window`` bar closes.

    ``z < -entry_z``: target long; ``z > entry_z``: target short (flat unless
    ``allow_short``); ``|z| < exit_z``: flat; in between: keep the previous target. A flat
    window (std 0) reads as z = 0. ``window`` counts bars of ``bar_s`` seconds (1-minute
    candles by default; ``bar_s = 0``: ticks); the target changes when a bar closes. No
    opinion until the window is full. Orders as in
    :class:`~pipeline.strategy.api.TargetStrategy`.
    """

    def __init__(
        self,
        window: int = 60,
        entry_z: float = 2.0,
        exit_z: float = 0.5,
        quantity: float = 1.0,
        *,
        symbol_id: int = 1,
        bar_s: float = 60.0,
        allow_short: bool = False,
        limit_slippage_bps: float = 20.0,
        min_quantity: float | None = None,
    ) -> None:
        if not 0.0 <= exit_z < entry_z < np.inf:
            raise ValueError(f"need 0 <= exit_z < entry_z, got exit_z={exit_z} entry_z={entry_z}")
        super().__init__(symbol_id=symbol_id, quantity=quantity,
                         limit_slippage_bps=limit_slippage_bps, min_quantity=min_quantity)
        self._bars = BarCloses(bar_s)
        self._moments = RollingMoments(window)
        self._entry_z = float(entry_z)
        self._exit_z = float(exit_z)
        self._long = float(quantity)
        self._short = -float(quantity) if allow_short else 0.0
        self._signal = np.nan  # the last target set by a bar (NaN: none yet)
        self._target = np.nan  # after the last tick seen

    def targets(self, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        index = np.flatnonzero(ticks["symbol_id"] == self.symbol_id)
        if index.size == 0:
            return index, np.empty(0)
        closes, at = self._bars.update(ticks["source_ts_ns"][index], ticks["price"][index])
        per_bar = self._per_bar(closes) if closes.size else closes
        target = hold_from(at, per_bar, index.size, self._target)
        self._target = float(target[-1])
        return index, target

    def _per_bar(self, closes: np.ndarray) -> np.ndarray:
        """The target after each close: a set signal, else the previous one held."""
        mean, std = self._moments.update(closes)
        z = np.zeros(closes.size)
        np.divide(closes - mean, std, out=z, where=std > 0.0)  # a flat window reads as 0
        signal = np.full(closes.size, np.nan)  # NaN: hold the previous target
        signal[z < -self._entry_z] = self._long
        signal[z > self._entry_z] = self._short
        signal[np.abs(z) < self._exit_z] = 0.0
        signal[np.isnan(std)] = np.nan  # no opinion while the window fills
        positions = np.arange(signal.size)
        last_set = np.maximum.accumulate(np.where(np.isnan(signal), -1, positions))
        held = np.where(last_set >= 0, signal[np.maximum(last_set, 0)], self._signal)
        self._signal = float(held[-1])
        return held
