"""The ledger process: the only SQLite writer, committing execution reports in groups.

Reports are peeked from the lossless reports ring, committed together with the ring cursor
in one transaction, and only then consumed. A crash at any point therefore loses nothing
and writes nothing twice: on restart the cursor stored in the database wins.
Commits are paced to stay within ``ledger.commits_per_s`` and ``ledger.wal_bytes_per_s``.
"""

from __future__ import annotations

import time
from typing import Any

from pipeline.ledger.db import init_db, make_engine
from pipeline.ledger.pacing import CommitPacer, estimate_wal_bytes
from pipeline.ledger.store import LedgerStore
from pipeline.metrics import LedgerMetrics
from pipeline.reattach import follow
from pipeline.ring import RingReader
from pipeline.runtime import Runtime, Service


class LedgerService(Service):
    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        config = runtime.config
        self._config = config.ledger
        database = config.paths.database
        database.parent.mkdir(parents=True, exist_ok=True)
        self._engine = make_engine(
            database,
            synchronous=self._config.synchronous,
            busy_timeout_ms=self._config.busy_timeout_ms,
        )
        init_db(self._engine, config.env, self._config)
        self._store = LedgerStore(self._engine, config.symbol_table(), self._config)
        self._ring_name = runtime.rings.reports.name
        self._attach(RingReader(runtime.rings.reports, "ledger", **runtime.ring_kwargs()))
        self._pacer = CommitPacer(self._config.commits_per_s, self._config.wal_bytes_per_s)
        self._metrics = LedgerMetrics(runtime.registry)
        self._symbols = config.symbol_table()
        self._trade_enabled = self._store.trade_enabled()
        self._wait_s: float | None = None
        self.reports_committed = 0
        self.commits = 0
        self.duplicates = 0
        self._fills_total = int(self._store.summary()["fills"])  # counted once, then tracked
        self._publish_trade_enabled()

    def _attach(self, reader: RingReader) -> None:
        """Start reading at the cursor committed with the rows, if it is this ring instance."""
        self._reports = reader
        self._instance = str(reader.instance_id)
        stored = self._store.cursor(self._ring_name, self._instance)
        if stored is not None and stored != reader.cursor:
            self._runtime.log.info(
                "resuming the reports ring at the committed cursor",
                extra={
                    "event": "ledger.resume",
                    "stored_cursor": stored,
                    "ring_cursor": reader.cursor,
                },
            )
            reader.seek(stored)

    def readers(self) -> list[RingReader]:
        return [self._reports]

    def step(self) -> bool:
        if self._commit_when_due():
            return True
        if self._wait_s is None and not self._reports.available():
            reader = follow(
                self._reports,
                self._runtime.rings.reports,
                "ledger",
                self._runtime.log,
                **self._runtime.ring_kwargs(),
            )
            if reader is not self._reports:
                self._attach(reader)
        return False

    def _commit_when_due(self) -> bool:
        """Commit the next group of reports unless the commit budget says wait."""
        self._wait_s = None
        delay = self._pacer.delay_s(time.monotonic())
        if delay > 0:
            self._wait_s = delay
            return False
        batch = self._reports.peek(self._config.max_batch)
        if not len(batch):
            return False
        end = self._reports.cursor + len(batch)
        result = self._store.apply(batch, {self._ring_name: (self._instance, end)})
        self._reports.advance(len(batch))
        self._pacer.record(time.monotonic(), estimate_wal_bytes(result.rows_written))
        self.reports_committed += len(batch)
        self.commits += 1
        self.duplicates += result.duplicates
        self._fills_total += result.fills
        self._metrics.reports.inc(len(batch))
        self._metrics.duplicates.inc(result.duplicates)
        self._metrics.commit_seconds.observe(result.commit_seconds)
        self._metrics.rows_per_commit.observe(len(batch))
        return True

    def idle_timeout_s(self) -> float | None:
        return self._wait_s

    def drain(self) -> bool:
        self._commit_when_due()
        return self._reports.available() == 0

    def _publish_trade_enabled(self) -> None:
        self._runtime.events.publish("config.TRADE_ENABLED", {"value": self._trade_enabled})

    def heartbeat(self) -> dict[str, Any]:
        self._trade_enabled = self._store.trade_enabled()
        self._publish_trade_enabled()
        positions = self._store.positions()
        first = positions[min(positions)] if positions else None
        return {
            "reports": self.reports_committed,
            "commits": self.commits,
            "duplicates": self.duplicates,
            "trade_enabled": self._trade_enabled,
            "fills": self._fills_total,
            "position": first.quantity if first else 0.0,
            "pnl": sum(p.realized_pnl - p.fees for p in positions.values()),
            "database": str(self._runtime.config.paths.database),
        }

    def update_metrics(self) -> None:
        self._metrics.trade_enabled.set(1.0 if self._trade_enabled else 0.0)
        for symbol, position in self._store.positions().items():
            self._metrics.position.labels(symbol).set(position.quantity)
            self._metrics.realized_pnl.labels(symbol).set(position.realized_pnl)

    def close(self) -> None:
        self._reports.close()
        self._engine.dispose()
