"""Books for strategy tests: decisions without a venue."""

from __future__ import annotations

import numpy as np

from pipeline.records import INTENT_DTYPE, empty
from pipeline.strategy.api import Book, Strategy


class AssumedFills(Book):
    """Every order fills in full at once: the strategy trades on its own targets."""

    def __init__(self) -> None:
        self.held: dict[int, float] = {}
        self.sent: list[np.ndarray] = []

    def until(self, position: int) -> None:
        """Nothing to replay."""

    def position(self, symbol_id: int) -> float:
        return self.held.get(symbol_id, 0.0)

    def working(self, symbol_id: int) -> bool:
        return False

    def send(self, intents: np.ndarray) -> None:
        self.sent.append(intents.copy())
        for symbol, signed in zip(intents["symbol_id"].tolist(),
                                  (intents["side"] * intents["quantity"]).tolist(), strict=True):
            self.held[symbol] = self.held.get(symbol, 0.0) + signed

    def intents(self) -> np.ndarray:
        return np.concatenate(self.sent) if self.sent else empty(INTENT_DTYPE)


def decide(strategy: Strategy, ticks: np.ndarray,
           book: AssumedFills | None = None) -> np.ndarray:
    """The intents ``strategy`` sends on ``ticks`` (this batch only) into ``book``."""
    book = AssumedFills() if book is None else book
    before = len(book.sent)
    strategy.decide(ticks, book)
    sent = book.sent[before:]
    return np.concatenate(sent) if sent else empty(INTENT_DTYPE)
