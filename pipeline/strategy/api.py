"""How to write a strategy.

A strategy is a class derived from :class:`Strategy` with one method, ``on_ticks``. The
strategy process reads a batch of ticks from the tick ring (``TICK_DTYPE`` records, in
sequence order, possibly for several symbols), calls ``on_ticks(ticks)`` and sends what it
returns (``INTENT_DTYPE`` records) through the risk engine to the executor.

Rules:

- Work on the whole batch with numpy; no Python loop over ticks. A batch may hold one tick
  (live) or a million (backtest), and the result must not depend on how the stream was cut
  into batches: keep whatever state you need (last values, running sums) between calls.
- Fill ``symbol_id``, ``side`` (+1 buy, -1 sell), ``quantity`` (> 0, base units),
  ``limit_price`` (worst acceptable price), ``order_type`` and, from the tick that caused
  the decision, ``tick_seq`` and ``tick_ingest_ns``. Leave ``client_order_id`` and
  ``decision_ns`` at 0: the process stamps them. :func:`make_intents` does all of this.
- You never see fills. The risk engine may reject intents (position, notional, rate and
  price-band limits), so think of your outputs as requests, not trades.
- The constructor receives ``symbol_id`` (from ``strategy.symbol_id``) and the keyword
  arguments in ``strategy.params``; raise ``ValueError`` for bad values.

Example: buy ``quantity`` whenever the price drops more than ``drop_bps`` between two
consecutive ticks of the symbol::

    import numpy as np
    from pipeline.records import Side
    from pipeline.strategy.api import Strategy, limit_prices, make_intents

    class BuyTheDip(Strategy):
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
``params = {drop_bps = 30.0}``. Strategies that hold a target position can use
:func:`target_orders`, which turns a per-tick target into the orders that move to it, and
:meth:`Strategy.held` and :meth:`Strategy.working` to move from what is really held.
"""

from __future__ import annotations

import abc
from collections.abc import Callable

import numpy as np

from pipeline.records import INTENT_DTYPE, OrderType, Side, empty

_SCALAR_MAX = 16  # ticks per batch below which plain Python beats numpy's per-call overhead


class Strategy(abc.ABC):
    """Turns batches of ticks into order intents; see the module docstring."""

    _exposure: Callable[[int], float] | None = None
    _working: Callable[[int], bool] | None = None

    @abc.abstractmethod
    def on_ticks(self, ticks: np.ndarray) -> np.ndarray:
        """Return the ``INTENT_DTYPE`` records decided on this batch of ``TICK_DTYPE`` ticks."""

    def bind_exposure(self, exposure: Callable[[int], float],
                      working: Callable[[int], bool] | None = None) -> None:
        """Size orders against what is really held or in flight (filled + open orders).

        The strategy process and the backtest bind the risk engine's exposure here, so a
        target-based strategy whose order was rejected sends the difference again instead
        of believing it holds the target. Unbound (unit tests, research) a strategy trades
        against its own previous target.

        ``working`` (bound by the live strategy process) tells whether an order of the
        symbol is still open. A target strategy waits for it to end before it orders again:
        a real venue cannot sell what a buy has not delivered yet, and a fill that differs
        from the order (a swap's output) is only known when it ends. Backtests fill at the
        next tick and leave it unbound.
        """
        self._exposure = exposure
        self._working = working

    def working(self, symbol_id: int) -> bool:
        """True while an order of ``symbol_id`` is open (always False when unbound)."""
        return self._working is not None and self._working(symbol_id)

    def held(self, symbol_id: int, previous_target: float) -> float:
        """The position to move from: the bound exposure, else ``previous_target``."""
        return previous_target if self._exposure is None else self._exposure(symbol_id)


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


def target_orders(
    ticks: np.ndarray,
    index: np.ndarray,
    target: np.ndarray,
    previous_target: float,
    slippage_bps: float,
    *,
    min_quantity: float = 0.0,
) -> np.ndarray:
    """Orders that move the position to ``target`` (one per tick ``index``) as it changes.

    ``previous_target`` is the target after the last tick of the previous batch. Each change
    becomes one limit order for the difference, priced off the tick that caused it; a
    difference below ``min_quantity`` is no order (a swap rarely delivers the exact amount
    ordered: chasing the dust would be an endless stream of tiny orders).
    """
    if index.size <= _SCALAR_MAX:
        return _target_orders_scalar(ticks, index, target, previous_target, slippage_bps,
                                     min_quantity=min_quantity)
    delta = target - np.concatenate(([previous_target], target[:-1]))
    changed = np.flatnonzero((delta != 0.0) & (np.abs(delta) >= min_quantity))
    side = np.where(delta[changed] > 0.0, Side.BUY, Side.SELL).astype(np.int8)
    price = ticks["price"][index[changed]]
    return make_intents(
        ticks, index[changed], side, np.abs(delta[changed]), limit_prices(price, side, slippage_bps)
    )


def _target_orders_scalar(
    ticks: np.ndarray,
    index: np.ndarray,
    target: np.ndarray,
    previous_target: float,
    slippage_bps: float,
    *,
    min_quantity: float,
) -> np.ndarray:
    """:func:`target_orders` for live-sized batches in plain Python: the same float
    operations (difference, sign, ``price * (1 + side * slippage)``), identical records,
    without a dozen numpy calls per tick."""
    changes = []
    previous = previous_target
    for k, value in zip(index.tolist(), target.tolist(), strict=True):
        delta = value - previous
        previous = value
        if delta != 0.0 and abs(delta) >= min_quantity:
            changes.append((k, 1 if delta > 0.0 else -1, abs(delta)))
    intents = empty(INTENT_DTYPE, len(changes))
    slippage = slippage_bps / 1e4
    for j, (k, side, quantity) in enumerate(changes):
        seq, ingest_ns, _, price, _, symbol_id, _, _ = ticks[k].item()
        intents[j] = (0, seq, ingest_ns, 0, quantity, price * (1.0 + side * slippage),
                      symbol_id, side, int(OrderType.LIMIT), 0)
    return intents
