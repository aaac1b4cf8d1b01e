"""The one answer to "may I send?": a set of reasons trading is halted, empty when it is on.

The ledger owns the state and publishes it in shared memory (:mod:`pipeline.killflag`);
the strategy reads it before sending intents (it withholds them while halted) and the
executor reads it before every send (it rejects what still arrives). Several reasons may
hold at once; each has its own way back:

- ``STARTING``: nothing published yet (the ledger has not read its database).
- ``CHAIN_MISMATCH``: the ledger's chain check found balances that differ from its books
  and disabled trading; cleared when the multisig enables trading again.
- ``TRADE_DISABLED``: ``TRADE_ENABLED`` is false (``pipeline admin kill``, the multisig,
  the chain check), or a disable is in force that the database has not taken yet.
- ``CLOCK_UNSAFE``: the ledger's start-up NTP check failed or has not answered yet, in an
  environment where the clock gates trading (:mod:`pipeline.clock`).
- ``LEDGER_STALLED``: the ledger's commits have failed for ``ledger.stall_threshold_s``.
- ``UNAVAILABLE``: never written; a reader's verdict on a segment it cannot trust
  (missing, foreign, replaced, stale or unreadable). Fail-closed.

The bits are ordered by what an operator must act on first: the lowest set bit is the
primary reason, used as the metric label of withheld intents.
"""

from __future__ import annotations

import enum
from typing import Final

from pipeline.records import RejectReason


class Halt(enum.IntFlag):
    """Why trading is off; ``Halt(0)``: trading is on."""

    STARTING = 1
    CHAIN_MISMATCH = 2
    TRADE_DISABLED = 4
    CLOCK_UNSAFE = 8
    LEDGER_STALLED = 16
    UNAVAILABLE = 32  # reader side only: the segment cannot be trusted


WRITTEN: Final = (Halt.STARTING, Halt.CHAIN_MISMATCH, Halt.TRADE_DISABLED, Halt.CLOCK_UNSAFE,
                  Halt.LEDGER_STALLED)  # the reasons the ledger writes
WRITTEN_MASK: Final = sum(int(h) for h in WRITTEN)
# Plain ints and a dict: looked up on the send path, where enum operations cost microseconds.
_LABELS: Final = {int(h): (h.name or "").lower() for h in Halt}
_STALLED_ONLY: Final = int(Halt.LEDGER_STALLED)
_STALLED: Final = RejectReason.LEDGER_STALLED
_DISABLED: Final = RejectReason.TRADING_DISABLED


def primary(halt: int) -> str:
    """The label of the most important reason in ``halt`` (non-zero), e.g. "trade_disabled"."""
    return _LABELS[halt & -halt]


def names(halt: int) -> list[str]:
    """Every reason in ``halt``, most important first (empty when trading is on)."""
    return [label for bit, label in _LABELS.items() if halt & bit]


def reject_reason(halt: int) -> RejectReason:
    """The reject reason of an intent refused while ``halt`` (non-zero) holds.

    ``LEDGER_STALLED`` only when the stall is the only reason: it tells the strategy's
    refusal bookkeeping and the reader of the orders table that trading resumes by itself.
    Everything else needs an operator (or the clock check) and keeps ``TRADING_DISABLED``.
    """
    return _STALLED if halt == _STALLED_ONLY else _DISABLED


def describe(halt: int) -> str:
    """One phrase: "enabled" or "HALTED (trade_disabled, ledger_stalled)"."""
    return "enabled" if not halt else f"HALTED ({', '.join(names(halt))})"
