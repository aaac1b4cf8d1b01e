"""The backup thread inside the ledger process: snapshots, increments, retries, metrics.

It runs beside the commit loop, never in it: it reads the database through its own
read-only connection (WAL readers never block the writer) and talks to S3 from its own
thread, so a slow or failing bucket costs trading nothing. A chain starts with a snapshot
(at start-up, then every ``snapshot_interval_s``); an increment follows every
``increment_interval_s``. A failed upload is retried with back-off under the SAME object
name, from the same watermarks: a retry rebuilds a superset of what may already have
landed, so the chain never has holes or overlaps. Watermarks advance only after an upload
succeeded. On an orderly stop it ships one last increment.
"""

from __future__ import annotations

import json
import logging
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from pipeline.ledger.backup import capture
from pipeline.ledger.backup.config import BackupConfig
from pipeline.ledger.backup.objects import BackupStore, chain_id


class BackupMetrics:
    def __init__(self, registry: CollectorRegistry, last_good: Callable[[], float]) -> None:
        self.uploads = Counter("pipeline_backup_uploads_total", "Backup objects uploaded",
                               ["kind"], registry=registry)
        self.failures = Counter("pipeline_backup_failures_total",
                                "Backup attempts that failed (retried)", ["kind"],
                                registry=registry)
        self.bytes = Counter("pipeline_backup_uploaded_bytes_total",
                             "Encrypted bytes uploaded", ["kind"], registry=registry)
        self.age = Gauge("pipeline_backup_last_good_age_seconds",
                         "Seconds since the newest state that a restore can recover "
                         "(+Inf before the first backup)", registry=registry)
        self.age.set_function(lambda: time.time() - last_good())
        self.last_success = Gauge("pipeline_backup_last_success_timestamp_seconds",
                                  "Unix time of the newest state a restore can recover "
                                  "(0 until this process's first backup)", registry=registry)
        self.last_success.set_function(lambda: max(last_good(), 0.0))


class BackupAgent:
    """Owns the backup thread; ``start``, ``request_snapshot``, ``stop``."""

    def __init__(self, config: BackupConfig, database: Path, environment: str, *,
                 store: BackupStore, registry: CollectorRegistry, log: logging.Logger,
                 work_dir: Path) -> None:
        self._config = config
        self._database = database
        self._environment = environment
        self._store = store
        self._log = log
        self._work_dir = work_dir
        self.last_good_unix = float("-inf")
        self._metrics = BackupMetrics(registry, lambda: self.last_good_unix)
        self._wake = threading.Event()
        self._stopping = False
        self._snapshot_requested = True  # every start begins a new chain
        self._chain = ""
        self._seq = 0
        self._since: dict[str, Any] = {}
        self._next_snapshot = 0.0
        self._next_increment = 0.0
        self._failures = 0
        self._retry_at = 0.0
        self._thread = threading.Thread(target=self._run, name="ledger-backup", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def snapshot_now(self) -> None:
        """Take and upload a snapshot in the caller's thread (``pipeline backup --now``)."""
        self._take_snapshot()

    def request_snapshot(self) -> None:
        self._snapshot_requested = True
        self._wake.set()

    def stop(self, timeout_s: float) -> None:
        """Ship a last increment (bounded by ``timeout_s``) and stop the thread."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            self._log.error("backup thread did not finish its last increment in %.1f s",
                            timeout_s, extra={"event": "backup.stop_timeout"})

    def _run(self) -> None:
        while True:
            now = time.monotonic()
            wait_s = self._next_due(now) - now
            if wait_s > 0 and not self._stopping:
                self._wake.wait(wait_s)
                self._wake.clear()
                continue
            final = self._stopping
            self._attempt()
            if final:
                return

    def _next_due(self, now: float) -> float:
        if self._retry_at > now:
            return self._retry_at
        if self._snapshot_requested or not self._chain:
            return now
        return min(self._next_snapshot, self._next_increment)

    def _attempt(self) -> None:
        snapshot = self._snapshot_requested or not self._chain or \
            time.monotonic() >= self._next_snapshot
        kind = "snapshot" if snapshot else "increment"
        try:
            if snapshot:
                self._take_snapshot()
            else:
                self._ship_increment()
        except Exception as exc:  # S3, network, SQLite busy: all retried the same way
            self._failures += 1
            delay_s = min(self._config.retry_max_s,
                          self._config.retry_initial_s * 2 ** min(self._failures - 1, 20))
            self._retry_at = time.monotonic() + delay_s
            self._metrics.failures.labels(kind).inc()
            self._log.error("backup %s failed (%s: %s); retry %d in %.1f s", kind,
                            type(exc).__name__, str(exc)[:200], self._failures, delay_s,
                            extra={"event": "backup.failed", "kind": kind,
                                   "failures": self._failures})
            return
        if self._failures:
            self._log.warning("backups succeed again after %d failures", self._failures,
                              extra={"event": "backup.recovered"})
        self._failures = 0
        self._retry_at = 0.0

    def _manifest(self, kind: str, chain: str, seq: int, taken: datetime,
                  info: dict[str, Any]) -> dict[str, Any]:
        return {"kind": kind, "chain": chain, "seq": seq,
                "taken_at": taken.isoformat(), "environment": self._environment,
                **info}

    def _take_snapshot(self) -> None:
        taken = datetime.now(UTC)
        chain = chain_id(taken)
        with tempfile.TemporaryDirectory(dir=self._work_dir, prefix="backup-") as tmp:
            copy = Path(tmp) / "snapshot.sqlite"
            info = capture.snapshot(self._database, copy)
            body = copy.read_bytes()
        # Until this upload succeeds the old chain (if any) stays the one we extend.
        size = self._store.put(self._store.snapshot_key(chain),
                               self._manifest("snapshot", chain, 0, taken, info), body)
        self._chain, self._seq = chain, 0
        self._snapshot_requested = False
        self._since = info["watermarks"]
        self._next_snapshot = time.monotonic() + self._config.snapshot_interval_s
        self._next_increment = time.monotonic() + self._config.increment_interval_s
        self._succeeded("snapshot", size, taken, info)

    def _ship_increment(self) -> None:
        taken = datetime.now(UTC)
        conn = capture.open_read_only(self._database)
        try:
            tables, info = capture.increment(conn, self._since)
        finally:
            conn.close()
        body = json.dumps({"tables": tables}).encode()
        seq = self._seq + 1
        manifest = {**self._manifest("increment", self._chain, seq, taken, info),
                    "since": self._since}
        size = self._store.put(self._store.increment_key(self._chain, seq), manifest, body)
        self._seq = seq
        self._since = info["watermarks"]
        self._next_increment = time.monotonic() + self._config.increment_interval_s
        self._succeeded("increment", size, taken, info)

    def _succeeded(self, kind: str, size: int, taken: datetime, info: dict[str, Any]) -> None:
        self.last_good_unix = taken.timestamp()
        self._metrics.uploads.labels(kind).inc()
        self._metrics.bytes.labels(kind).inc(size)
        self._log.info("backup %s %s/%d uploaded (%d bytes)", kind, self._chain, self._seq,
                       size, extra={"event": "backup.uploaded", "kind": kind,
                                    "chain": self._chain, "seq": self._seq, "bytes": size,
                                    "rows": info["row_counts"]})

    def status(self) -> dict[str, Any]:
        """For the ledger's heartbeat."""
        return {"chain": self._chain, "seq": self._seq, "failures": self._failures,
                "last_good_age_s": round(time.time() - self.last_good_unix, 1)
                if self.last_good_unix > 0 else None}
