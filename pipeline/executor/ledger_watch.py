"""The executor's view of the ledger's health: no new orders while it cannot record them.

The ledger publishes ``ledger.health`` on its event socket at once when commits have been
failing for longer than ``ledger.stall_threshold_s`` (disk full, I/O errors) and again on
every heartbeat. While it says ``commit_stalled`` the executor rejects new intents with
``LEDGER_STALLED`` (orders already at the venue still complete): every report it produces
stays in the lossless reports ring until the ledger catches up, but no new risk is taken
that the system of record could not yet book.
"""

from __future__ import annotations

import logging
from typing import Final

import zmq
from prometheus_client import CollectorRegistry, Gauge

from pipeline.control import EventSubscriber

HEALTH_TOPIC: Final = "ledger.health"  # published by pipeline.ledger.health


class LedgerWatch:
    """Follows ``ledger.health`` events; ``stalled`` is True while the ledger says so."""

    def __init__(self, subscriber: EventSubscriber, log: logging.Logger,
                 registry: CollectorRegistry) -> None:
        self._subscriber = subscriber
        self._log = log
        self.stalled = False
        self._gauge = Gauge("pipeline_executor_ledger_stalled",
                            "1 while new orders are held back because the ledger cannot commit",
                            registry=registry)

    @property
    def socket(self) -> zmq.Socket[bytes]:
        return self._subscriber.socket

    def poll(self) -> None:
        """Apply queued health events without blocking."""
        for _topic, payload in self._subscriber.receive(0):
            value = payload.get("commit_stalled")
            if not isinstance(value, bool) or value == self.stalled:
                continue
            self.stalled = value
            self._gauge.set(1.0 if value else 0.0)
            if value:
                self._log.error("ledger cannot commit (%s for %s s): rejecting new orders",
                                payload.get("error"), payload.get("failing_s"),
                                extra={"event": "executor.ledger_stalled", "stalled": True})
            else:
                self._log.warning("ledger commits again: sending new orders",
                                  extra={"event": "executor.ledger_stalled", "stalled": False})

    def close(self) -> None:
        self._subscriber.close()
