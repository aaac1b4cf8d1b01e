"""The pluggable venue interface behind the executor, and the report-building helper.

Every intent handed to :meth:`Venue.submit` ends in exactly one final report (FILLED,
REJECTED or CANCELLED), returned either at once by ``submit`` or later by ``on_ticks`` or
``cancel_all``. The ledger relies on that: an order is open until its one report arrives.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np

from pipeline.records import REPORT_DTYPE, OrderStatus, RejectReason

# Fields a report copies verbatim from the intent it answers.
COPIED_FIELDS: tuple[str, ...] = (
    "client_order_id",
    "tick_seq",
    "tick_ingest_ns",
    "decision_ns",
    "quantity",
    "limit_price",
    "symbol_id",
    "side",
)


class Venue(Protocol):
    """Where orders go; the executor loop drives it with intents and ticks."""

    def submit(self, intents: np.ndarray, send_ns: int) -> np.ndarray:
        """Accept INTENT_DTYPE orders sent at monotonic ``send_ns``.

        Returns the REPORT_DTYPE reports known at once (rejects); accepted orders become
        pending until a later call reports them.
        """
        ...

    def on_ticks(self, ticks: np.ndarray) -> np.ndarray:
        """Reports for the pending orders these TICK_DTYPE ticks complete."""
        ...

    def cancel_all(self, reason: RejectReason) -> np.ndarray:
        """CANCELLED reports, carrying ``reason``, for every pending order; none remain."""
        ...

    def pending_ids(self) -> set[int]:
        """client_order_ids accepted but not yet reported."""
        ...

    def close(self) -> None:
        """Release what the venue holds (threads, HTTP clients); called once, after the
        executor has drained, on every shutdown."""
        ...


def reports_from_intents(
    intents: np.ndarray,
    send_ns: int | np.ndarray,
    status: OrderStatus,
    reason: RejectReason = RejectReason.NONE,
) -> np.ndarray:
    """One REPORT_DTYPE row per intent, copying its identity, order and latency stamps.

    ``send_ns`` is a scalar or one value per intent. Fill fields, ``venue_ts_ns`` and
    ``venue_ref`` are left zero for the venue to set.
    """
    reports = np.zeros(len(intents), dtype=REPORT_DTYPE)
    for name in COPIED_FIELDS:
        reports[name] = intents[name]
    reports["send_ns"] = send_ns
    reports["status"] = int(status)
    reports["reject_reason"] = int(reason)
    return reports
