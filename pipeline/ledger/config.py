"""The ledger's one config dataclass, validated once at load."""

from __future__ import annotations

import dataclasses
import math

from pipeline.configtools import require
from pipeline.ledger.backup.config import BackupConfig

SYNCHRONOUS_MODES = ("FULL", "NORMAL")


def _default_balances() -> dict[str, float]:
    return {"USDT": 100000.0}


@dataclasses.dataclass(frozen=True)
class LedgerConfig:
    """How fast and how durably the ledger commits, and how a new database is seeded.

    ``initial_balances`` (paper starting cash) and ``trade_enabled_default`` apply only the
    first time a database is initialised; afterwards the database is the source of truth.
    """

    commits_per_s: float = 500.0  # budget: fsyncs are the cost that matters
    wal_bytes_per_s: float = 50e6  # cap on the estimated WAL write rate
    max_batch: int = 8192  # reports per transaction at most
    synchronous: str = "FULL"  # FULL: a commit survives power loss; NORMAL: only a crash
    # The longest a write waits for another connection's lock. The ledger's loop answers
    # control requests (a kill) and heartbeats only between waits, so this stays short and
    # well inside run.heartbeat_timeout_s (checked); a failed commit is simply retried.
    busy_timeout_ms: int = 100
    initial_balances: dict[str, float] = dataclasses.field(default_factory=_default_balances)
    trade_enabled_default: bool = False
    # A failed commit (disk full, read-only or failing disk) leaves the reports in the ring
    # and is retried with back-off; after stall_threshold_s of failures the ledger tells
    # the executor (event ledger.health) to stop sending new orders.
    commit_retry_initial_s: float = 0.05
    commit_retry_max_s: float = 2.0
    stall_threshold_s: float = 3.0
    backup: BackupConfig = dataclasses.field(default_factory=BackupConfig)

    def __post_init__(self) -> None:
        require(
            math.isfinite(self.commits_per_s) and self.commits_per_s > 0,
            "commits_per_s", self.commits_per_s, "must be a positive number",
        )
        require(
            math.isfinite(self.wal_bytes_per_s) and self.wal_bytes_per_s > 0,
            "wal_bytes_per_s", self.wal_bytes_per_s, "must be a positive number",
        )
        require(1 <= self.max_batch <= 1 << 20, "max_batch", self.max_batch,
                "must be between 1 and 1048576")
        require(self.synchronous in SYNCHRONOUS_MODES, "synchronous", self.synchronous,
                f"must be one of {', '.join(SYNCHRONOUS_MODES)}")
        require(0 <= self.busy_timeout_ms <= 600_000, "busy_timeout_ms", self.busy_timeout_ms,
                "must be between 0 and 600000")
        for name in ("commit_retry_initial_s", "commit_retry_max_s", "stall_threshold_s"):
            value = getattr(self, name)
            require(math.isfinite(value) and value > 0, name, value,
                    "must be a positive number of seconds")
        require(self.commit_retry_initial_s <= self.commit_retry_max_s,
                "commit_retry_initial_s", self.commit_retry_initial_s,
                "must not exceed commit_retry_max_s")
        for asset, amount in self.initial_balances.items():
            require(bool(asset) and asset.isalnum(), f"initial_balances.{asset}", asset,
                    "asset names must be non-empty and alphanumeric")
            require(math.isfinite(amount) and amount >= 0, f"initial_balances.{asset}", amount,
                    "must be a finite, non-negative amount")
