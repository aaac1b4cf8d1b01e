"""The maker's price: the latest tick per symbol, read from the pipeline's tick ring.

The localnet reads the lossy tick ring as its own declared reader (``localnet``, see
:mod:`pipeline.topology`), so the maker quotes where the market is now; before the first
tick it has no price and refuses to quote.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from pipeline.ports import InputPort


class TickPrices:
    """``price_of(base, quote)`` from the tick ring; thread-safe, reads on demand."""

    def __init__(self, open_ticks: Callable[[], InputPort],
                 symbols: dict[tuple[str, str], int]) -> None:
        """``open_ticks`` opens the tick port at the first question (the ring may not exist
        before the pipeline starts; either side may create it)."""
        self._open_ticks = open_ticks
        self._symbols = symbols  # (base, quote) -> symbol_id
        self._lock = threading.Lock()
        self._ticks: InputPort | None = None
        self._last: dict[int, float] = {}

    def price_of(self, base: str, quote: str) -> float | None:
        symbol_id = self._symbols.get((base, quote))
        if symbol_id is None:
            return None
        with self._lock:
            self._refresh()
            return self._last.get(symbol_id)

    def _refresh(self) -> None:
        if self._ticks is None:
            self._ticks = self._open_ticks()
        self._ticks.follow()
        while len(ticks := self._ticks.read(4096)):
            for symbol_id, price in zip(ticks["symbol_id"].tolist(), ticks["price"].tolist(),
                                        strict=True):
                self._last[symbol_id] = price

    def close(self) -> None:
        with self._lock:
            if self._ticks is not None:
                self._ticks.close()
