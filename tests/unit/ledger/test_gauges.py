"""The ledger's scrape-time gauges: WAL size from a real SQLite WAL file, free disk, and
the backup configuration (visible when backups are off)."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from prometheus_client import CollectorRegistry

from pipeline.ledger.backup.config import BackupConfig
from pipeline.ledger.gauges import export_storage


def test_wal_size_disk_free_and_backups_off(tmp_path: Path) -> None:
    database = tmp_path / "ledger.sqlite"
    registry = CollectorRegistry()
    export_storage(registry, database, tmp_path, BackupConfig())
    assert registry.get_sample_value("pipeline_ledger_wal_bytes") == 0.0  # no WAL yet
    conn = sqlite3.connect(database)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA wal_autocheckpoint=0")
        conn.execute("CREATE TABLE t (x BLOB)")
        conn.execute("INSERT INTO t VALUES (zeroblob(100000))")
        conn.commit()
        wal = (tmp_path / "ledger.sqlite-wal").stat().st_size
        assert wal > 100000
        assert registry.get_sample_value("pipeline_ledger_wal_bytes") == wal
    finally:
        conn.close()
    free = registry.get_sample_value("pipeline_disk_free_bytes", {"path": "data_dir"})
    assert free is not None
    assert abs(free - shutil.disk_usage(tmp_path).free) < 64 * 1024 * 1024
    assert registry.get_sample_value("pipeline_backup_enabled") == 0.0
    assert registry.get_sample_value("pipeline_backup_interval_seconds") == 60.0


def test_backups_on_export_their_interval(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    backup = BackupConfig(enabled=True, bucket="ledger-backups", key_env="KEYS",
                          increment_interval_s=30.0)
    export_storage(registry, tmp_path / "ledger.sqlite", tmp_path, backup)
    assert registry.get_sample_value("pipeline_backup_enabled") == 1.0
    assert registry.get_sample_value("pipeline_backup_interval_seconds") == 30.0
