"""Ledger figures read when Prometheus scrapes: the WAL file's size, the free disk under the
data directory, and whether (and how often) backups run.

They are read at scrape time (``Gauge.set_function``), not on the commit path: a ``stat``
costs little, but the commit loop owes the monitoring nothing. Backups show here even when
they are off (``pipeline_backup_enabled`` 0), so "no backups" is a visible state rather than
missing series.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from prometheus_client import CollectorRegistry, Gauge

from pipeline.ledger.backup.config import BackupConfig


def wal_bytes(database: Path) -> float:
    """Size of SQLite's ``-wal`` file beside ``database`` (0 when there is none yet)."""
    try:
        return float(os.stat(f"{database}-wal").st_size)
    except FileNotFoundError:
        return 0.0


def free_bytes(path: Path) -> float:
    """Free bytes for an unprivileged writer on ``path``'s filesystem (NaN if unreadable)."""
    try:
        return float(shutil.disk_usage(path).free)
    except OSError:
        return math.nan


def export_storage(registry: CollectorRegistry, database: Path, data_dir: Path,
                   backup: BackupConfig) -> None:
    """Register the ledger's storage and backup-config gauges on ``registry``."""
    Gauge("pipeline_ledger_wal_bytes", "Current size of the ledger's SQLite WAL file",
          registry=registry).set_function(lambda: wal_bytes(database))
    Gauge("pipeline_disk_free_bytes", "Free bytes on the filesystem of a ledger path",
          ["path"], registry=registry).labels("data_dir").set_function(
        lambda: free_bytes(data_dir))
    Gauge("pipeline_backup_enabled", "1 if the ledger ships backups (ledger.backup.enabled)",
          registry=registry).set(1 if backup.enabled else 0)
    Gauge("pipeline_backup_interval_seconds",
          "Configured seconds between backups (ledger.backup.increment_interval_s, the "
          "recovery point objective)", registry=registry).set(backup.increment_interval_s)
