"""How refused kill-switch requests are audited without letting a flood write the audit log.

Audit rows cannot be deleted and each costs a durable commit outside the commit budget, so
a peer sending 20,000 refused ``trade.enable`` requests must not write 20,000 of them. Per
peer and per interval (``control.refusal_audit_interval_s``): the first refusal of each
code is audited in full (what an investigation needs: who, which signers, which nonce);
the others, and every ``rate_limited`` answer, are only counted, and the counts by code
become one ``kill_switch.refusals`` row when the interval ends (or the ledger stops).
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

from pipeline.ledger.db import utc_now
from pipeline.ledger.pending import PendingRow

KILL_SWITCH_COMMANDS: Final = frozenset({"trade.enable", "trade.disable"})
OVERFLOW_PEER: Final = "overflow"  # peers beyond max_peers share one window


@dataclass
class _Window:
    """One peer's refusals since ``started_s`` (monotonic)."""

    started_s: float
    started_at: datetime
    audited: set[str] = field(default_factory=set)  # codes audited in full this window
    counts: collections.Counter[str] = field(default_factory=collections.Counter)
    commands: collections.Counter[str] = field(default_factory=collections.Counter)
    only_counted: int = 0


class RefusalAudit:
    """Decides which refusals get a row of their own; aggregates the rest per peer."""

    def __init__(self, interval_s: float, *, max_peers: int = 1024,
                 clock_s: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_s
        self._max_peers = max_peers
        self._clock_s = clock_s
        self._windows: dict[str, _Window] = {}

    def _window(self, peer: str) -> tuple[str, _Window]:
        if peer not in self._windows and len(self._windows) >= self._max_peers:
            peer = OVERFLOW_PEER
        window = self._windows.get(peer)
        if window is None:
            window = self._windows[peer] = _Window(self._clock_s(), utc_now())
        return peer, window

    def record(self, peer: str, command: str, code: str) -> bool:
        """Count a refusal; True if it is the peer's first of this code in its interval
        (audit it in full now), False if it is only counted."""
        _key, window = self._window(peer)
        window.counts[code] += 1
        window.commands[command] += 1
        if code in window.audited:
            window.only_counted += 1
            return False
        window.audited.add(code)
        return True

    def count(self, peer: str, command: str, code: str) -> None:
        """Count a refusal that never gets a row of its own (``rate_limited``)."""
        _key, window = self._window(peer)
        window.counts[code] += 1
        window.commands[command] += 1
        window.only_counted += 1

    def due(self, now_s: float, *, every: bool = False) -> list[PendingRow]:
        """The count rows of intervals that ended by ``now_s`` (``every``: all of them,
        when the ledger stops); their peers start a new interval at their next refusal."""
        rows = []
        for peer in [p for p, w in self._windows.items()
                     if every or now_s >= w.started_s + self._interval_s]:
            window = self._windows.pop(peer)
            if window.only_counted:  # else every refusal already has its own row
                rows.append(PendingRow(utc_now(), "control", "kill_switch.refusals", {
                    "peer": peer, "since": window.started_at.isoformat(),
                    "counts": dict(window.counts), "commands": dict(window.commands),
                    "audited_individually": len(window.audited)}))
        return rows
