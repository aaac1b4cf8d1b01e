"""The executor package's one config: which venue, its paper-trading costs, and loop tuning."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Final

from pipeline.configtools import require
from pipeline.executor.solana.config import SolanaConfig

VENUES: Final = ("paper", "solana")


@dataclass(frozen=True)
class ExecutorConfig:
    """Venue selection and paper-fill model.

    The paper venue fills at the next tick's price moved against the order by
    ``slippage_bps`` and charges ``fee_bps`` of the fill's notional, in quote units.
    """

    venue: str = "paper"
    slippage_bps: float = 2.0
    fee_bps: float = 5.0
    # Busy-poll this long before sleeping on the doorbell. 0 by default: with run.pin =
    # "auto" on two CPUs the executor shares its CPU with the strategy, whose decision a
    # spinning executor would only delay (10k ticks/s p50 212-221 us instead of 251-330).
    spin_us: int = 0
    # Wake on every tick too, so the executor is already spinning when the strategy's
    # intent lands. Measured at 1,000 ticks/s on 2 vCPUs (with strategy.spin_us = 5000):
    # tick-to-order p50 ~210 us instead of ~400 us, but p99.9 4.4-7 ms instead of
    # 3.2-4 ms, because two busy processes leave one core for ingest and the ledger.
    # Off by default: the operations budget is on the tail.
    wake_on_ticks: bool = False
    max_pending: int = 1024  # orders awaiting a fill; more are rejected as back-pressure
    # Intents decided longer ago than this are refused (STALE_INTENT): after a restart or a
    # long stall the market they were decided on has moved. Above the few milliseconds an
    # intent normally waits, and any back-pressure wait (rings.intents_backpressure_ms).
    max_intent_age_ms: float = 500.0
    solana: SolanaConfig = field(default_factory=SolanaConfig)  # venue = "solana"

    def __post_init__(self) -> None:
        require(self.venue in VENUES, "executor.venue", self.venue, f"must be one of {VENUES}")
        require(
            math.isfinite(self.slippage_bps) and 0.0 <= self.slippage_bps < 10_000.0,
            "executor.slippage_bps",
            self.slippage_bps,
            "must be >= 0 and below 10000 (a sell must still get a positive price)",
        )
        require(
            math.isfinite(self.fee_bps) and self.fee_bps >= 0.0,
            "executor.fee_bps",
            self.fee_bps,
            "must be a finite number >= 0",
        )
        require(self.spin_us >= 0, "executor.spin_us", self.spin_us, "must be >= 0")
        require(self.max_pending >= 1, "executor.max_pending", self.max_pending, "must be >= 1")
        require(math.isfinite(self.max_intent_age_ms) and self.max_intent_age_ms > 0,
                "executor.max_intent_age_ms", self.max_intent_age_ms,
                "must be a finite number > 0")
