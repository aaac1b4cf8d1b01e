"""The strategy package's configs: which strategy runs, and the pre-trade risk limits.

Two tables because they change for different reasons: ``[strategy]`` says what to trade
and is fixed for a run; ``[risk]`` holds limits an operator may tighten while it runs
(:meth:`pipeline.strategy.risk.RiskEngine.reconfigure`). Defaults suit paper trading
SOL/USDT around 150 USDT with orders of 1 SOL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Final

from pipeline.configtools import require

_U32_MAX: Final = 2**32 - 1


@dataclass(frozen=True)
class StrategyConfig:
    """Which strategy to load and how the strategy process polls.

    ``name`` is a built-in (``"ema_cross"``, ``"zscore"``) or a user's class as
    ``"package.module:ClassName"``. The class is built as
    ``cls(symbol_id=symbol_id, **params)``, so ``symbol_id`` is not repeated in ``params``.
    """

    name: str = "ema_cross"
    params: dict[str, Any] = field(default_factory=dict)
    symbol_id: int = 1
    # Busy-poll this long before sleeping. The strategy is the one process allowed to spin
    # for long (e.g. 5000: it then never sleeps above ~200 ticks/s), but on 2 vCPUs a
    # permanent spinner lengthens the tail of everyone else, and with run.pin = "auto" it
    # shares its CPU with the executor, which any spin delays: 0 by default; see README.
    spin_us: int = 0

    def __post_init__(self) -> None:
        require(bool(self.name.strip()), "strategy.name", self.name, "must not be empty")
        require(
            "symbol_id" not in self.params,
            "strategy.params.symbol_id",
            self.params.get("symbol_id"),
            "set strategy.symbol_id instead; it is passed to the strategy",
        )
        require(
            0 <= self.symbol_id <= _U32_MAX, "strategy.symbol_id", self.symbol_id, "must fit u32"
        )
        require(self.spin_us >= 0, "strategy.spin_us", self.spin_us, "must be >= 0")


def _require_positive(key: str, value: float) -> None:
    require(math.isfinite(value) and value > 0, key, value, "must be a finite number > 0")


def _require_non_negative(key: str, value: float) -> None:
    require(math.isfinite(value) and value >= 0, key, value, "must be a finite number >= 0")


# The venue's answers that may count as refusals (see risk.refusal_reasons). Never: our own
# trading state, ledger, queue or shutdown, which have their own way back.
REFUSABLE: Final = ("venue_error", "no_market_price", "invalid_order", "backpressure",
                    "limit_not_marketable")


@dataclass(frozen=True)
class RiskConfig:
    """Pre-trade limits applied to every intent before it reaches the executor.

    Exposure counts filled positions (from the execution reports) plus open orders, see
    :class:`pipeline.strategy.risk.RiskEngine`.
    """

    max_position: float = 10.0  # base units (SOL), absolute, per symbol
    allow_short: bool = False  # may an order take the exposure below zero?
    max_order_notional: float = 5000.0  # quote units (USDT): quantity * limit_price
    max_orders_per_s: float = 50.0  # token bucket refill rate; the burst is the same number
    price_band_bps: float = 100.0  # limit price within this of the symbol's last tick price
    # After the n-th venue refusal in a row for a symbol, its intents are held back for
    # base * 2^(n-1) seconds (capped at max) from the refused order's decision: one venue
    # request per window, not one per tick. 0 turns the back-off off.
    refusal_backoff_base_s: float = 0.5
    refusal_backoff_max_s: float = 30.0
    # This many refusals in a row pause the symbol (0: never) until an operator resumes it
    # or the cool-down passes (0: only an operator resumes it).
    refusal_pause_after: int = 10
    refusal_pause_cooldown_s: float = 300.0
    # Which venue answers count as refusals (RejectReason names, lower case). Not by
    # default: limit_not_marketable, the market moving past the limit, which a working
    # strategy meets many times in a row; add it for a venue that bills every quote.
    refusal_reasons: tuple[str, ...] = ("venue_error", "no_market_price", "invalid_order",
                                        "backpressure")

    def __post_init__(self) -> None:
        _require_positive("risk.max_position", self.max_position)
        _require_positive("risk.max_order_notional", self.max_order_notional)
        require(
            math.isfinite(self.max_orders_per_s) and self.max_orders_per_s >= 1.0,
            "risk.max_orders_per_s",
            self.max_orders_per_s,
            "must be a finite number >= 1 (the burst is the same number: below 1 nothing passes)",
        )
        _require_positive("risk.price_band_bps", self.price_band_bps)
        _require_non_negative("risk.refusal_backoff_base_s", self.refusal_backoff_base_s)
        _require_non_negative("risk.refusal_backoff_max_s", self.refusal_backoff_max_s)
        require(
            self.refusal_backoff_max_s >= self.refusal_backoff_base_s,
            "risk.refusal_backoff_max_s",
            self.refusal_backoff_max_s,
            f"must be >= risk.refusal_backoff_base_s ({self.refusal_backoff_base_s})",
        )
        require(self.refusal_pause_after >= 0, "risk.refusal_pause_after",
                self.refusal_pause_after, "must be >= 0 (0: never pause)")
        _require_non_negative("risk.refusal_pause_cooldown_s", self.refusal_pause_cooldown_s)
        for name in self.refusal_reasons:
            require(name in REFUSABLE, "risk.refusal_reasons", self.refusal_reasons,
                    f"{name!r} is not one of {', '.join(REFUSABLE)}")
