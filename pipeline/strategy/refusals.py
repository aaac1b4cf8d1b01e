"""Venue refusals back off: exponential hold-back per symbol, then a pause.

Without this a refused order is re-decided on the next tick and re-sent at the tick rate,
which against a rate-limited swap API gets the key throttled. After the n-th refusal in a
row for a symbol, its intents are held back until ``anchor + base * 2^(n-1)`` (capped);
``risk.refusal_pause_after`` refusals in a row pause the symbol until an operator resumes
it or ``risk.refusal_pause_cooldown_s`` passes. A fill resets the streak.

Every time here is the intent-time clock the :class:`~pipeline.strategy.risk.RiskEngine`
is given (``now_ns`` of its checks and the ``decision_ns`` of our own orders), never a
wall clock read here, so backtests stay deterministic and independent of batching.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from pipeline.records import RejectReason
from pipeline.strategy.config import RiskConfig


def refusal_reasons(config: RiskConfig) -> frozenset[RejectReason]:
    """The venue answers that count as refusals (``risk.refusal_reasons``): re-sending soon
    after them costs a venue request and most likely gets the same answer."""
    return frozenset(RejectReason[name.upper()] for name in config.refusal_reasons)


_MAX_DOUBLINGS: Final = 62  # 2^62 x any base is past every cap; keeps the ints small

PAUSED_TOPIC: Final = "strategy.symbol_paused"
RESUMED_TOPIC: Final = "strategy.symbol_resumed"


@dataclass(frozen=True)
class SymbolEvent:
    """A symbol was paused or resumed: published on the events socket and logged."""

    topic: str  # PAUSED_TOPIC or RESUMED_TOPIC
    symbol_id: int
    streak: int  # refusals in a row when it happened
    reason: str  # the last refusal's reason, lower case
    by: str  # "refusals", "operator" or "cooldown"

    def body(self) -> dict[str, object]:
        return {"symbol": self.symbol_id, "streak": self.streak, "reason": self.reason,
                "by": self.by}


class RefusalBackoff:
    """Per-symbol refusal streaks, hold-back deadlines and pauses.

    ``held_until`` and ``paused`` are read directly by the risk engine's per-intent loop
    (a method call per intent would cost more than the check itself).
    """

    def __init__(self, config: RiskConfig) -> None:
        self._config = config
        self.held_until: dict[int, int] = {}  # symbol -> intents held back while now < this
        # symbol -> end of its cool-down; None: paused until an operator resumes it
        self.paused: dict[int, int | None] = {}
        self._streak: dict[int, int] = {}
        self._last_reason: dict[int, RejectReason] = {}
        self._counts: dict[RejectReason, int] = dict.fromkeys(
            sorted(refusal_reasons(config)), 0)
        self._events: list[SymbolEvent] = []

    def reconfigure(self, config: RiskConfig) -> None:
        """New delays apply from the next refusal; streaks and pauses carry over."""
        self._config = config
        for reason in refusal_reasons(config):
            self._counts.setdefault(reason, 0)

    def on_refusal(self, symbol_id: int, reason: RejectReason, anchor_ns: int) -> None:
        """One venue refusal: extend the hold-back from ``anchor_ns``; maybe pause."""
        self._counts[reason] += 1
        streak = self._streak.get(symbol_id, 0) + 1
        self._streak[symbol_id] = streak
        self._last_reason[symbol_id] = reason
        config = self._config
        base_ns = round(config.refusal_backoff_base_s * 1e9)
        if base_ns:
            delay_ns = min(base_ns << min(streak - 1, _MAX_DOUBLINGS),
                           round(config.refusal_backoff_max_s * 1e9))
            until = anchor_ns + delay_ns
            self.held_until[symbol_id] = max(until, self.held_until.get(symbol_id, until))
        pause_after = config.refusal_pause_after
        if pause_after and streak >= pause_after and symbol_id not in self.paused:
            cooldown_ns = round(config.refusal_pause_cooldown_s * 1e9)
            self.paused[symbol_id] = anchor_ns + cooldown_ns if cooldown_ns else None
            self._events.append(SymbolEvent(PAUSED_TOPIC, symbol_id, streak,
                                            reason.name.lower(), "refusals"))

    def on_fill(self, symbol_id: int) -> None:
        """The venue traded: the streak and its hold-back end (a pause stays: see resume)."""
        self._streak.pop(symbol_id, None)
        self.held_until.pop(symbol_id, None)

    def expire(self, now_ns: int) -> None:
        """Resume the symbols whose cool-down has passed by ``now_ns``.

        The streak is kept (half-open, as a circuit breaker): the next refusal pauses the
        symbol again at once, so a venue still refusing gets one request per cool-down.
        """
        for symbol_id, until_ns in list(self.paused.items()):
            if until_ns is not None and now_ns >= until_ns:
                del self.paused[symbol_id]
                self._events.append(self._resumed(symbol_id, "cooldown"))

    def resume(self, symbol_id: int | None = None) -> list[int]:
        """An operator resumes one paused symbol, or all: their streaks start again."""
        symbols = list(self.paused) if symbol_id is None else \
            [symbol_id] if symbol_id in self.paused else []
        for symbol in symbols:
            del self.paused[symbol]
            self._events.append(self._resumed(symbol, "operator"))
            self._streak.pop(symbol, None)
            self.held_until.pop(symbol, None)
        return symbols

    def _resumed(self, symbol_id: int, by: str) -> SymbolEvent:
        reason = self._last_reason.get(symbol_id)
        return SymbolEvent(RESUMED_TOPIC, symbol_id, self._streak.get(symbol_id, 0),
                           reason.name.lower() if reason is not None else "", by)

    def take_events(self) -> Sequence[SymbolEvent]:
        """Pauses and resumes since the last call, oldest first."""
        if not self._events:  # nearly always: called once per tick batch
            return ()
        events, self._events = self._events, []
        return events

    def refusal_counts(self) -> dict[RejectReason, int]:
        """Venue refusals seen since start, by reason."""
        return dict(self._counts)

    def paused_symbols(self, now_ns: int) -> list[dict[str, object]]:
        """The paused symbols for status: streak, last reason, seconds to the cool-down."""
        return [{"symbol": symbol_id, "streak": self._streak.get(symbol_id, 0),
                 "reason": self._last_reason[symbol_id].name.lower(),
                 "resumes_in_s": None if until_ns is None
                 else round(max(0, until_ns - now_ns) / 1e9, 3)}
                for symbol_id, until_ns in sorted(self.paused.items())]
