"""Encrypted backups against a real S3 API (moto's server on 127.0.0.1), restored for real."""

from __future__ import annotations

import base64
import logging
import os
import socket
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import numpy as np
import pytest
from moto.server import ThreadedMotoServer
from prometheus_client import CollectorRegistry
from testkit import eventually

from pipeline.ledger.backup.agent import BackupAgent
from pipeline.ledger.backup.config import BackupConfig
from pipeline.ledger.backup.crypto import BackupCryptoError, Keyring
from pipeline.ledger.backup.objects import BackupStore
from pipeline.ledger.backup.restore import RestoreError, restore
from pipeline.ledger.store import LedgerStore
from pipeline.records import OrderStatus

BUCKET = "ledger-backups"  # replaced per test by the s3 fixture
TABLES = ("orders", "fills", "positions", "balances", "config", "audit_log", "ring_cursors",
          "meta", "alembic_version")


def _key(key_id: str) -> str:
    return f"{key_id}={base64.b64encode(os.urandom(32)).decode()}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[ThreadedMotoServer, Any, int]]:
    """A moto S3 server on 127.0.0.1 with a fresh bucket (moto keeps state per process)."""
    for name, value in (("AWS_ACCESS_KEY_ID", "test"), ("AWS_SECRET_ACCESS_KEY", "test"),
                        ("AWS_DEFAULT_REGION", "us-east-1")):
        monkeypatch.setenv(name, value)
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    client = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1")
    monkeypatch.setattr(sys.modules[__name__], "BUCKET", f"ledger-{uuid.uuid4().hex[:12]}")
    client.create_bucket(Bucket=BUCKET)
    yield server, client, port
    server.stop()


def _config(port: int) -> BackupConfig:
    return BackupConfig(enabled=True, bucket=BUCKET, endpoint_url=f"http://127.0.0.1:{port}",
                        sse="AES256", increment_interval_s=0.1, snapshot_interval_s=3600,
                        retry_initial_s=0.05, retry_max_s=0.2)


def _dump(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return {t: conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in TABLES}
    finally:
        conn.close()


def _agent(port: int, keyring: Keyring, db_path: Path, registry: CollectorRegistry,
           client: Any) -> BackupAgent:
    config = _config(port)
    store = BackupStore(config, "paper", keyring, client)
    return BackupAgent(config, db_path, "paper", store=store, registry=registry,
                       log=logging.getLogger("test.backup"), work_dir=db_path.parent)


def _metric(registry: CollectorRegistry, name: str, **labels: str) -> float:
    return registry.get_sample_value(name, labels) or 0.0


def test_snapshot_increments_restore_equal_live(
        s3: tuple[ThreadedMotoServer, Any, int], db_path: Path, store: LedgerStore,
        make_reports: Callable[..., np.ndarray], tmp_path: Path) -> None:
    _server, client, port = s3
    old, new = _key("k1"), _key("k2")
    registry = CollectorRegistry()
    agent = _agent(port, Keyring.parse(old, "test"), db_path, registry, client)
    store.apply(make_reports([1, 2], status=[OrderStatus.FILLED, OrderStatus.NEW]), {})
    agent.start()
    eventually(lambda: _metric(registry, "pipeline_backup_uploads_total", kind="snapshot") == 1,
               timeout_s=20, message="snapshot uploaded")
    for batch in range(3):  # changes after the snapshot: new rows and an open order closing
        ids = [10 + 2 * batch, 11 + 2 * batch]
        store.apply(make_reports(ids, side=[1, -1], price=100.0 + batch), {})
        shipped = _metric(registry, "pipeline_backup_uploads_total", kind="increment")
        eventually(lambda: _metric(registry, "pipeline_backup_uploads_total",
                                   kind="increment") > shipped,  # noqa: B023
                   timeout_s=20)
    store.apply(make_reports([2], status=OrderStatus.FILLED), {})  # the open order fills
    store.set_config("TRADE_ENABLED", "false", actor="test")
    agent.stop(timeout_s=20)  # ships a last increment
    assert _metric(registry, "pipeline_backup_failures_total", kind="increment") == 0
    assert registry.get_sample_value("pipeline_backup_last_good_age_seconds") < 60
    assert time.time() - _metric(registry, "pipeline_backup_last_success_timestamp_seconds") < 60

    # Key rotation: the restoring keyring has a new current key and still holds the old one.
    target = tmp_path / "restored.sqlite"
    both = BackupStore(_config(port), "paper", Keyring.parse(f"{old}\n{new}", "test"), client)
    result = restore(both, target)
    assert result.increments >= 4
    assert _dump(target) == _dump(db_path)

    with pytest.raises(RestoreError, match="exists; pass --force"):
        restore(both, target)
    wrong = BackupStore(_config(port), "paper", Keyring.parse(_key("k1"), "test"), client)
    with pytest.raises(BackupCryptoError, match="wrong key"):
        restore(wrong, target, force=True)
    missing = BackupStore(_config(port), "paper", Keyring.parse(new, "test"), client)
    with pytest.raises(BackupCryptoError, match="not in the keyring"):
        restore(missing, target, force=True)
    assert _dump(target) == _dump(db_path)  # failed restores left the file alone


@pytest.mark.parametrize("damage", ["stored_bytes", "ciphertext"])
def test_corrupted_object_is_detected(s3: tuple[ThreadedMotoServer, Any, int], db_path: Path,
                                      store: LedgerStore, tmp_path: Path, damage: str) -> None:
    _server, client, port = s3
    keyring = Keyring.parse(_key("k1"), "test")
    agent = _agent(port, keyring, db_path, CollectorRegistry(), client)
    agent.snapshot_now()
    key = next(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET)["Contents"])
    head = client.get_object(Bucket=BUCKET, Key=key)
    body = bytearray(head["Body"].read())
    body[len(body) // 2] ^= 0x01
    metadata = dict(head["Metadata"])
    if damage == "ciphertext":  # a forger who also fixes the checksum still fails the tag
        import hashlib
        metadata["sha256"] = hashlib.sha256(bytes(body)).hexdigest()
    client.put_object(Bucket=BUCKET, Key=key, Body=bytes(body), Metadata=metadata)
    backups = BackupStore(_config(port), "paper", keyring, client)
    message = "do not match their SHA-256" if damage == "stored_bytes" else "tampered"
    with pytest.raises(BackupCryptoError, match=message):
        restore(backups, tmp_path / "restored.sqlite")
    assert not (tmp_path / "restored.sqlite").exists()


def test_upload_outage_is_retried_and_recovers(
        s3: tuple[ThreadedMotoServer, Any, int], db_path: Path, store: LedgerStore,
        make_reports: Callable[..., np.ndarray], tmp_path: Path) -> None:
    server, client, port = s3
    registry = CollectorRegistry()
    keyring = Keyring.parse(_key("k1"), "test")
    agent = _agent(port, keyring, db_path, registry, client)
    agent.start()
    eventually(lambda: _metric(registry, "pipeline_backup_uploads_total", kind="snapshot") == 1,
               timeout_s=20, message="snapshot uploaded")
    server.stop()  # the endpoint goes away: uploads fail, trading is not involved
    store.apply(make_reports([1, 2]), {})  # commits go on during the outage
    eventually(lambda: _metric(registry, "pipeline_backup_failures_total", kind="increment") >= 2,
               timeout_s=30, message="failures counted")
    restarted = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    restarted.start()  # moto keeps its buckets in process: the same bucket is back
    try:
        uploaded = _metric(registry, "pipeline_backup_uploads_total", kind="increment")
        eventually(lambda: _metric(registry, "pipeline_backup_uploads_total",
                                   kind="increment") > uploaded, timeout_s=30,
                   message="increments resume")
        agent.stop(timeout_s=20)
        restore(BackupStore(_config(port), "paper", keyring, client), tmp_path / "r.sqlite")
        assert _dump(tmp_path / "r.sqlite") == _dump(db_path)
    finally:
        restarted.stop()
