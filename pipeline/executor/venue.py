"""The contract every venue behind the executor implements, and the report-building helper.

Every intent handed to :meth:`Venue.submit` ends in exactly one final report (FILLED,
REJECTED or CANCELLED), returned by ``submit`` itself, or later by ``on_ticks``, ``poll`` or
``cancel_all``; a venue may send NEW reports before it (a signature to remember). The ledger
relies on that: an order is open until its one final report arrives.

The executor calls every method directly, on its own thread, in this order of life:
``submit``/``on_ticks``/``poll`` in the loop, ``cancel_all`` while draining, ``close`` once
at the end. Nothing is optional; a venue with nothing to do in one of them says so cheaply
(the paper venue's ``poll`` and ``reconciles`` answer without work).
"""

from __future__ import annotations

import abc

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

NO_REPORTS: np.ndarray = np.empty(0, dtype=REPORT_DTYPE)
NO_REPORTS.flags.writeable = False  # shared by every "nothing to report" answer


class Venue(abc.ABC):
    """Where orders go; the executor loop drives it with intents and ticks."""

    # True when a tick can complete a pending order (``on_ticks`` reports): the executor
    # then wakes on ticks while orders are pending, instead of sleeping until a timeout.
    completes_on_ticks: bool = False

    @abc.abstractmethod
    def submit(self, intents: np.ndarray, send_ns: int) -> np.ndarray:
        """Accept INTENT_DTYPE orders sent at monotonic ``send_ns``.

        Returns the REPORT_DTYPE reports known at once (rejects); accepted orders stay
        pending until a later call reports them. An intent the venue :meth:`reconciles` is
        taken as the order it already holds from before a restart, never as a new order.
        """

    @abc.abstractmethod
    def on_ticks(self, ticks: np.ndarray) -> np.ndarray:
        """Reports for the pending orders these TICK_DTYPE ticks complete (a venue that
        only prices from ticks returns none)."""

    @abc.abstractmethod
    def poll(self, reports_flushed: bool) -> np.ndarray:
        """Reports that arrived on the venue's own time (network answers), called on every
        turn of the executor loop; ``reports_flushed`` says every report handed out so far
        is in the reports ring (a venue that holds a send until its NEW report is durable
        releases it then). A venue whose answers come only from submit/on_ticks returns
        none."""

    @abc.abstractmethod
    def reconciles(self, client_order_id: int) -> bool:
        """True for an order the venue holds from before a restart (signed, so it may still
        execute): the executor hands its intent back even while trading is off or the
        intent is stale, and only the venue may settle it. The venue learns these orders
        when it is built (the Solana venue from the ledger's read API,
        :mod:`pipeline.ledger.inflight`); a venue whose orders die with the process answers
        False. Asked only when the executor is about to refuse intents."""

    @abc.abstractmethod
    def cancel_all(self, reason: RejectReason) -> np.ndarray:
        """Withdraw every pending order the venue still can: a CANCELLED report carrying
        ``reason`` for each (with any other reports the venue had ready). An order that may
        still execute (a signed transaction) stays pending and ends through :meth:`poll`."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release what the venue holds (threads, HTTP clients); called after the executor
        has drained, on every shutdown. A second call does nothing."""


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
