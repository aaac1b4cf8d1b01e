"""Kill-switch writes that wait for the database: a disable is never lost to a locked disk.

A disable takes effect in shared memory at once (:mod:`pipeline.killflag`); its durable
part (``TRADE_ENABLED = false``, the nonce, the audit row) may meet a database that cannot
write: full disk, a write lock held by another connection, a read-only file. The rows
then wait here, in order, and are written in one transaction when the database accepts
writes again (retried with back-off from the ledger's loop). Until then the disable holds:
the ledger publishes ``disable_pending`` over whatever the database still says.

Attempts never block the ledger's loop for long: the first one (inside the control
request) does not wait for a lock at all, retries wait at most ``ledger.busy_timeout_ms``,
which config keeps inside the heartbeat budget. Rows that only record a refusal are
bounded (:data:`MAX_ROWS`); beyond that they are counted and the count is written instead.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from sqlalchemy import Engine, insert
from sqlalchemy.engine import Connection

from pipeline.killswitch import KEY
from pipeline.ledger.db import utc_now, write_audit, write_config
from pipeline.ledger.models import KillSwitchNonce

MAX_ROWS: Final = 1000  # refusal audit rows kept while the database cannot write


@dataclass(frozen=True)
class PendingRow:
    """One audit row to write; ``disables`` also sets TRADE_ENABLED = false before it."""

    at: datetime
    actor: str
    action: str
    detail: dict[str, Any]
    disables: bool = False
    nonce: tuple[str, datetime] | None = None  # (nonce, expires_at) of a signed message


@contextlib.contextmanager
def write_transaction(engine: Engine, busy_timeout_ms: int | None = None) -> Iterator[Connection]:
    """A write transaction that waits at most ``busy_timeout_ms`` for the lock (None: the
    engine's own timeout). The pragma is set on the driver connection before ``BEGIN
    IMMEDIATE`` (through SQLAlchemy it would start the transaction first) and restored."""
    with engine.connect() as conn:
        raw = conn.connection.driver_connection
        assert raw is not None
        default = raw.execute("PRAGMA busy_timeout").fetchone()[0]
        if busy_timeout_ms is not None:
            raw.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        try:
            with conn.begin():
                yield conn
        finally:
            raw.execute(f"PRAGMA busy_timeout = {int(default)}")


@dataclass
class PendingWrites:
    """Rows waiting for the database, and when to try again (monotonic seconds)."""

    retry_initial_s: float
    retry_max_s: float
    rows: list[PendingRow] = field(default_factory=list)
    dropped: int = 0  # refusal rows beyond MAX_ROWS
    failures: int = 0
    retry_at: float = 0.0
    last_error: str = ""

    @property
    def disable_pending(self) -> bool:
        """A disable is in force in shared memory but not yet in the database."""
        return any(row.disables for row in self.rows)

    def __bool__(self) -> bool:
        return bool(self.rows) or self.dropped > 0

    def nonces(self) -> set[str]:
        return {row.nonce[0] for row in self.rows if row.nonce is not None}

    def add(self, row: PendingRow) -> None:
        """Queue a row; refusal rows beyond MAX_ROWS are only counted."""
        if not row.disables and len(self.rows) >= MAX_ROWS:
            self.dropped += 1
            return
        self.rows.append(row)

    def write(self, conn: Connection) -> None:
        """Write every queued row inside the caller's transaction (call :meth:`clear` after
        it commits)."""
        now = utc_now()
        for row in self.rows:
            detail = dict(row.detail)
            if row.nonce is not None:
                conn.execute(insert(KillSwitchNonce).prefix_with("OR IGNORE"),
                             {"nonce": row.nonce[0], "expires_at": row.nonce[1],
                              "used_at": row.at})
            if row.disables:
                detail.update(old=write_config(conn, KEY, "false", row.at), new="false")
            if now > row.at:
                detail["written_after_s"] = round((now - row.at).total_seconds(), 3)
            write_audit(conn, row.at, row.actor, row.action, detail)
        if self.dropped:
            write_audit(conn, now, "ledger", "kill_switch.audit_dropped",
                        {"count": self.dropped, "reason": "the database could not write; "
                                                          f"kept the first {MAX_ROWS} rows"})

    def clear(self) -> None:
        self.rows.clear()
        self.dropped = 0
        self.failures = 0
        self.retry_at = 0.0
        self.last_error = ""

    def failed(self, now_s: float, error: BaseException) -> float:
        """Schedule the next attempt with exponential back-off; returns the delay."""
        delay_s = float(min(self.retry_max_s, self.retry_initial_s * 2 ** min(self.failures, 30)))
        self.failures += 1
        self.retry_at = now_s + delay_s
        self.last_error = str(getattr(error, "orig", error))[:200]
        return delay_s
