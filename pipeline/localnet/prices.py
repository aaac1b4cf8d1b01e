"""The maker's price: the latest tick per symbol, read from the pipeline's tick ring.

The localnet reads the lossy tick ring as its own reader (``monitor``), so the maker quotes
where the market is now; before the first tick it has no price and refuses to quote.
"""

from __future__ import annotations

import logging
import threading
import uuid
from pathlib import Path
from typing import Any

from pipeline.reattach import follow
from pipeline.ring import RingReader, RingSpec

_READER = "monitor"


class TickPrices:
    """``price_of(base, quote)`` from the tick ring; thread-safe, reads on demand."""

    def __init__(self, spec: RingSpec, env: str, shm_dir: Path,
                 symbols: dict[tuple[str, str], int], log: logging.Logger) -> None:
        self._spec = spec
        self._kwargs: dict[str, Any] = {"env": env, "run_id": uuid.uuid4(), "shm_dir": shm_dir}
        self._symbols = symbols  # (base, quote) -> symbol_id
        self._log = log
        self._lock = threading.Lock()
        self._reader: RingReader | None = None
        self._last: dict[int, float] = {}

    def price_of(self, base: str, quote: str) -> float | None:
        symbol_id = self._symbols.get((base, quote))
        if symbol_id is None:
            return None
        with self._lock:
            self._refresh()
            return self._last.get(symbol_id)

    def _refresh(self) -> None:
        if self._reader is None:
            self._reader = RingReader(self._spec, _READER, **self._kwargs)
        self._reader = follow(self._reader, self._spec, _READER, self._log, **self._kwargs)
        while len(ticks := self._reader.read(4096)):
            for symbol_id, price in zip(ticks["symbol_id"].tolist(), ticks["price"].tolist(),
                                        strict=True):
                self._last[symbol_id] = price

    def close(self) -> None:
        with self._lock:
            if self._reader is not None:
                self._reader.close()
