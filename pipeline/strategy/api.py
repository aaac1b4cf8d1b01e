"""How to write a strategy.

A strategy turns ticks (``TICK_DTYPE`` records, in sequence order, possibly for several
symbols) into order intents (``INTENT_DTYPE``). The strategy process and ``pipeline
backtest`` both call :meth:`Strategy.decide` with a batch of ticks and a :class:`Book`: the
process with the few ticks of one ring read, the backtest with thousands. Decisions must not
depend on how the stream was cut into batches, and that holds by construction for both kinds
of strategy:

- :class:`TargetStrategy` (the built-ins): say, per tick, which position you want to hold
  (``targets``, vectorised with numpy). The framework walks the batch in time order and,
  whenever nothing of the symbol is working, orders the difference between that target and
  the position really held: every fill and reject that precedes a decision in time is seen
  by it, whatever the batch size, because only the indicators are computed a batch at a
  time.
- :class:`OrderStrategy`: return intents from ``on_ticks`` without looking at the position
  (a position-blind signal). They are checked and sent in time order at their ticks.

In both, work on the whole batch with numpy, no Python loop over ticks; keep whatever state
you need (last values, running sums) between calls, the same whatever the batch size
(:mod:`pipeline.strategy.rolling` does this bit for bit). The risk engine may reject intents
(position, notional, rate and price-band limits), so outputs are requests, not trades. The
constructor receives ``symbol_id`` (from ``strategy.symbol_id``) and the keyword arguments in
``strategy.params``; raise ``ValueError`` for bad values.

Example: buy ``quantity`` whenever the price drops more than ``drop_bps`` between two
consecutive ticks of the symbol::

    import numpy as np
    from pipeline.records import Side
    from pipeline.strategy.api import OrderStrategy, limit_prices, make_intents

    class BuyTheDip(OrderStrategy):
        def __init__(self, symbol_id: int = 1, drop_bps: float = 50.0,
                     quantity: float = 1.0) -> None:
            self.symbol_id, self.drop_bps, self.quantity = symbol_id, drop_bps, quantity
            self.last_price = np.nan  # carried between batches

        def on_ticks(self, ticks: np.ndarray) -> np.ndarray:
            index = np.flatnonzero(ticks["symbol_id"] == self.symbol_id)
            price = ticks["price"][index]
            previous = np.concatenate(([self.last_price], price[:-1]))
            if index.size:
                self.last_price = float(price[-1])
            dip = np.flatnonzero(price < previous * (1 - self.drop_bps / 1e4))
            side = np.full(dip.size, Side.BUY, dtype=np.int8)
            return make_intents(ticks, index[dip], side, self.quantity,
                                limit_prices(price[dip], side, slippage_bps=20.0))

Run it with ``[strategy] name = "my_package.dips:BuyTheDip"`` and
``params = {drop_bps = 30.0}``.
"""

from __future__ import annotations

import abc
import math
from typing import Any, Final, Protocol

import numpy as np

from pipeline.records import INTENT_DTYPE, OrderType, empty

_SCALAR_TICKS: Final = 4  # batches this short take target_step when a strategy has one


class Book(Protocol):
    """The world a decision sees: fills and rejects up to the tick being decided on.

    The backtest engine replays the paper venue and the risk engine up to that tick; the
    strategy process has already applied every report the executor sent (they arrive
    between ring reads), so its ``until`` has nothing to do.
    """

    def until(self, position: int) -> None:
        """Let everything up to and including tick ``position`` of the batch happen."""

    def position(self, symbol_id: int) -> float:
        """Base units held of ``symbol_id``."""

    def working(self, symbol_id: int) -> bool:
        """True while an order of ``symbol_id`` is open."""

    def send(self, intents: np.ndarray) -> None:
        """Check and send ``intents``, decided at the tick of the last ``until``."""


class Strategy(abc.ABC):
    """Decides on batches of ticks; see the module docstring for the two kinds."""

    @abc.abstractmethod
    def decide(self, ticks: np.ndarray, book: Book) -> None:
        """Send, through ``book``, the intents decided on this batch, in time order."""


class OrderStrategy(Strategy):
    """A position-blind strategy: intents from ticks alone."""

    @abc.abstractmethod
    def on_ticks(self, ticks: np.ndarray) -> np.ndarray:
        """The ``INTENT_DTYPE`` records decided on this batch of ``TICK_DTYPE`` ticks."""

    def decide(self, ticks: np.ndarray, book: Book) -> None:
        intents = self.on_ticks(ticks)
        if not len(intents):
            return
        at = np.searchsorted(ticks["seq"], intents["tick_seq"])
        order = np.argsort(at, kind="stable")
        intents, at = intents[order], at[order]
        bounds = np.flatnonzero(np.diff(at)) + 1
        for group in np.split(np.arange(len(at)), bounds):
            book.until(int(at[group[0]]))
            book.send(intents[group])


class TargetStrategy(Strategy):
    """Holds a target position of one symbol; the framework orders the difference.

    Each order is one limit order, ``limit_slippage_bps`` through the tick price, for the
    difference between the target and what is held, sent only while nothing of the symbol is
    working (a real venue cannot sell what a buy has not delivered yet, and a swap's output
    is only known when it ends). Differences below ``min_quantity`` are left alone: a swap
    rarely delivers the exact amount ordered, and chasing the dust would be an endless
    stream of tiny orders.
    """

    def __init__(self, *, symbol_id: int, quantity: float, limit_slippage_bps: float,
                 min_quantity: float | None) -> None:
        if not (np.isfinite(quantity) and quantity > 0):
            raise ValueError(f"quantity must be a finite number > 0, got {quantity}")
        if not (np.isfinite(limit_slippage_bps) and limit_slippage_bps >= 0):
            raise ValueError(f"limit_slippage_bps must be >= 0, got {limit_slippage_bps}")
        self.symbol_id = symbol_id
        self.quantity = float(quantity)
        self.slippage = float(limit_slippage_bps) / 1e4
        self.min_quantity = min_order_quantity(min_quantity, quantity)
        self._scalar = type(self).target_step is not TargetStrategy.target_step

    @abc.abstractmethod
    def targets(self, ticks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(positions in ``ticks`` of this symbol's ticks, the target after each; NaN: no
        opinion, keep what is held)."""

    def target_step(self, source_ts_ns: int, price: float) -> float | None:
        """Optional scalar twin of :meth:`targets` for one tick of this symbol: the target
        after it, bit-for-bit what ``targets`` gives (the batch-invariance tests compare
        them). None (the default): not implemented, batches always go through ``targets``.

        Live reads are a tick or two, where numpy's per-call cost is most of the work;
        plain floats make the decision several times faster on the tick-to-order path.
        """
        return None

    def decide(self, ticks: np.ndarray, book: Book) -> None:
        if len(ticks) <= _SCALAR_TICKS and self._scalar:
            self._decide_each(ticks.tolist(), book)
            return
        index, target = self.targets(ticks)
        if not index.size:
            return
        # Held changes only through our own orders, so between two changes of the target
        # nothing new can be decided once the book holds it: jump to the next change.
        same = target[1:] == target[:-1]
        same |= np.isnan(target[1:]) & np.isnan(target[:-1])
        changes = (np.flatnonzero(~same) + 1).tolist()
        targets = target.tolist()
        positions = index.tolist()
        symbol, n, step, p = self.symbol_id, len(positions), 0, 0
        while p < n:
            k = positions[p]
            book.until(k)
            wanted = targets[p]
            if book.working(symbol) or math.isnan(wanted):  # NaN: no opinion
                p += 1
                continue
            delta = wanted - book.position(symbol)
            if delta != 0.0 and abs(delta) >= self.min_quantity:
                seq, ingest_ns, _, price, _, symbol_id, _, _ = ticks[k].item()
                book.send(self._order(seq, ingest_ns, price, symbol_id, delta))
                p += 1
                continue
            while step < len(changes) and changes[step] <= p:
                step += 1
            p = changes[step] if step < len(changes) else n

    def _decide_each(self, rows: list[tuple[Any, ...]], book: Book) -> None:
        """:meth:`decide` one tick at a time (``TICK_DTYPE`` rows as tuples)."""
        symbol = self.symbol_id
        for k, (seq, ingest_ns, source_ts_ns, price, _, symbol_id, _, _) in enumerate(rows):
            if symbol_id != symbol:
                continue
            wanted = self.target_step(source_ts_ns, price)
            book.until(k)
            if wanted is None or math.isnan(wanted) or book.working(symbol):  # NaN: no opinion
                continue
            delta = wanted - book.position(symbol)
            if delta != 0.0 and abs(delta) >= self.min_quantity:
                book.send(self._order(seq, ingest_ns, price, symbol_id, delta))

    def _order(self, seq: int, ingest_ns: int, price: float, symbol_id: int,
               delta: float) -> np.ndarray:
        """One limit order for ``delta`` (signed base units), priced off the tick's price."""
        side = 1 if delta > 0.0 else -1
        intent = empty(INTENT_DTYPE, 1)
        intent[0] = (0, seq, ingest_ns, 0, abs(delta), price * (1.0 + side * self.slippage),
                     symbol_id, side, int(OrderType.LIMIT), 0)
        return intent


def make_intents(
    ticks: np.ndarray,
    index: np.ndarray,
    side: np.ndarray,
    quantity: float | np.ndarray,
    limit_price: np.ndarray,
    *,
    order_type: OrderType = OrderType.LIMIT,
) -> np.ndarray:
    """Intents for the ticks at ``index``, tagged with those ticks' symbol, seq and time."""
    intents = empty(INTENT_DTYPE, index.size)
    rows = ticks[index]
    intents["symbol_id"] = rows["symbol_id"]
    intents["tick_seq"] = rows["seq"]
    intents["tick_ingest_ns"] = rows["ingest_ns"]
    intents["side"] = side
    intents["quantity"] = quantity
    intents["limit_price"] = limit_price
    intents["order_type"] = order_type
    return intents


def min_order_quantity(min_quantity: float | None, quantity: float) -> float:
    """A strategy's smallest order: ``min_quantity`` if given, else 1% of its ``quantity``."""
    value = quantity / 100 if min_quantity is None else float(min_quantity)
    if not (np.isfinite(value) and value >= 0):
        raise ValueError(f"min_quantity must be a finite number >= 0, got {min_quantity}")
    return value


def limit_prices(price: np.ndarray, side: np.ndarray, slippage_bps: float) -> np.ndarray:
    """Worst acceptable prices: ``slippage_bps`` above ``price`` for buys, below for sells."""
    return price * (1.0 + side * (slippage_bps / 1e4))
