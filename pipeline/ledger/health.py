"""What the ledger does when a commit fails: keep the reports, back off, tell the executor.

A failed commit (``SQLITE_FULL``, ``SQLITE_IOERR``, a read-only file system) rolls back
and the reports stay in the lossless reports ring, because the ring cursor only moves after
a commit succeeds. This module decides when to retry (exponential back-off), counts and
logs the failures, and turns "failing for longer than ``stall_threshold_s``" into the
``ledger.health`` event the executor obeys: it stops sending new orders while the system
of record cannot record them. Why an event rather than ring back-pressure: the reports
ring holds 16k reports, minutes of trading, so back-pressure would only stop the executor
long after the ledger stopped recording; the event stops it within the threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from prometheus_client import CollectorRegistry, Counter, Gauge

HEALTH_TOPIC: Final = "ledger.health"


class CommitHealth:
    """Failure bookkeeping for the ledger's commits; the clock is passed in (monotonic s)."""

    def __init__(self, *, threshold_s: float, retry_initial_s: float, retry_max_s: float,
                 registry: CollectorRegistry, log: logging.Logger,
                 publish: Callable[[str, dict[str, Any]], None]) -> None:
        self._threshold_s = threshold_s
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._log = log
        self._publish = publish
        self.failing_since: float | None = None
        self.failures = 0  # consecutive
        self.retry_at = 0.0
        self.stalled = False
        self.last_error = ""
        self._errors = Counter("pipeline_ledger_commit_failures_total",
                               "Commits that failed and were rolled back (reports kept)",
                               ["kind"], registry=registry)
        self._stalled_gauge = Gauge("pipeline_ledger_commit_stalled",
                                    "1 while commits have failed for longer than the threshold",
                                    registry=registry)
        self._failing_gauge = Gauge("pipeline_ledger_commit_failing_seconds",
                                    "How long commits have been failing (0 when healthy)",
                                    registry=registry)

    def failed(self, now_s: float, error: BaseException, pending_reports: int) -> None:
        """Record a rolled-back commit and schedule the retry."""
        kind = classify(error)
        self._errors.labels(kind).inc()
        self.last_error = kind
        if self.failing_since is None:
            self.failing_since = now_s
        delay_s = min(self._retry_max_s, self._retry_initial_s * 2 ** min(self.failures, 30))
        self.failures += 1
        self.retry_at = now_s + delay_s
        if self.failures == 1 or (delay_s >= self._retry_max_s and self.failures % 10 == 0):
            self._log.error(
                "commit failed (%s): %d reports stay in the ring; retrying in %.2f s",
                kind, pending_reports, delay_s,
                extra={"event": "ledger.commit_failed", "kind": kind, "error": str(error)[:200],
                       "failures": self.failures, "pending_reports": pending_reports,
                       "retry_in_s": round(delay_s, 3)})
        self.check(now_s)

    def succeeded(self, now_s: float) -> None:
        """A commit went through: if we were failing, say so and clear the stall."""
        if self.failing_since is None:
            return
        outage_s = now_s - self.failing_since
        self._log.warning("commits succeed again after %.1f s and %d failures", outage_s,
                          self.failures, extra={"event": "ledger.commit_recovered",
                                                "outage_s": round(outage_s, 3),
                                                "failures": self.failures})
        self.failing_since = None
        self.failures = 0
        self.retry_at = 0.0
        self.check(now_s)

    def check(self, now_s: float) -> None:
        """Raise or clear the stall; publishes at once on a change."""
        failing_s = 0.0 if self.failing_since is None else now_s - self.failing_since
        stalled = failing_s >= self._threshold_s
        self._failing_gauge.set(failing_s)
        if stalled != self.stalled:
            self.stalled = stalled
            self._stalled_gauge.set(1.0 if stalled else 0.0)
            if stalled:
                self._log.error("ledger cannot commit for %.1f s: executor told to stop new "
                                "orders", failing_s, extra={"event": "ledger.commit_stalled",
                                                            "kind": self.last_error})
            self.publish(now_s)

    def publish(self, now_s: float) -> None:
        """Send ``ledger.health`` (also on every heartbeat, for late subscribers)."""
        failing_s = 0.0 if self.failing_since is None else now_s - self.failing_since
        self._publish(HEALTH_TOPIC, {"commit_stalled": self.stalled,
                                     "failing_s": round(failing_s, 3),
                                     "error": self.last_error if self.failing_since else ""})


def classify(error: BaseException) -> str:
    """A low-cardinality label for a SQLite failure (the message is SQLite's own text)."""
    text = str(error).lower()
    if "full" in text:
        return "disk_full"
    if "readonly" in text or "read-only" in text:
        return "read_only"
    if "i/o" in text:
        return "io_error"
    if "locked" in text or "busy" in text:
        return "locked"
    return "other"
