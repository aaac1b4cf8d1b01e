"""Rebuild a ledger database from a snapshot and its increments, verifying every step.

Choosing what to restore: for each of the newest chains (a snapshot and its increments)
the reach is the time of its last object at or before ``--at``; the chain reaching
furthest wins (a manual ``pipeline backup --now`` starts its own chain while the ledger
keeps extending its own; the restore takes whichever holds more). Verification: each
object's stored SHA-256 and GCM tag, its body checksum, each increment's starting
watermarks against the database built so far (no gap, no overlap), row counts against
every manifest, and ``PRAGMA integrity_check`` / ``foreign_key_check`` at the end. The
result is written beside ``PATH`` and renamed into place only when all of that passed.
"""

from __future__ import annotations

import json
import os
import sqlite3
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from pipeline.errors import OperationalError
from pipeline.ledger.backup import capture
from pipeline.ledger.backup.objects import BackupStore, ObjectRef, parse_time

CANDIDATE_CHAINS = 3


class RestoreError(OperationalError):
    """The backup cannot be restored as asked; the message says why."""


@dataclass
class RestoreResult:
    path: Path
    chain: str
    increments: int
    point_in_time: str
    row_counts: dict[str, int] = field(default_factory=dict)


def _taken_at(store: BackupStore, ref: ObjectRef) -> datetime:
    return parse_time(store.head_taken_at(ref.key)) if ref.kind == "increment" else \
        parse_time(ref.chain)


def plan(store: BackupStore, at: datetime | None) -> tuple[ObjectRef, list[ObjectRef],
                                                            datetime]:
    """The snapshot, increments and point in time to restore."""
    refs = store.list()
    snapshots = [r for r in refs if r.kind == "snapshot"
                 and (at is None or parse_time(r.chain) <= at)]
    if not snapshots:
        raise RestoreError(f"no snapshot under s3://{store.bucket}/{store.root}"
                           + (f" taken at or before {at.isoformat()}" if at else ""))
    best: tuple[datetime, ObjectRef, list[ObjectRef]] | None = None
    for snap in snapshots[-CANDIDATE_CHAINS:]:
        chain = [r for r in refs if r.kind == "increment" and r.chain == snap.chain]
        reach, taken = parse_time(snap.chain), []
        for expected_seq, ref in enumerate(chain, start=1):
            if ref.seq != expected_seq:
                break  # a hole: what follows cannot be applied
            moment = _taken_at(store, ref)
            if at is not None and moment > at:
                break
            reach = moment
            taken.append(ref)
        if best is None or reach >= best[0]:
            best = (reach, snap, taken)
    assert best is not None
    return best[1], best[2], best[0]


def _check_counts(conn: sqlite3.Connection, manifest: dict[str, Any], what: str) -> None:
    counts = capture.row_counts(conn)
    expected = manifest.get("row_counts", {})
    if counts != expected:
        wrong = {t: (counts.get(t), expected.get(t)) for t in set(counts) | set(expected)
                 if counts.get(t) != expected.get(t)}
        raise RestoreError(f"{what}: row counts differ from the manifest "
                           f"(table: (restored, expected)) {wrong}")


def _check_integrity(conn: sqlite3.Connection, what: str) -> None:
    result = [row[0] for row in conn.execute("PRAGMA integrity_check")]
    if result != ["ok"]:
        raise RestoreError(f"{what}: integrity_check failed: {result[:5]}")
    if conn.execute("PRAGMA foreign_key_check").fetchall():
        raise RestoreError(f"{what}: foreign_key_check found fills without orders")


def restore(store: BackupStore, target: Path, *, at: datetime | None = None,
            force: bool = False) -> RestoreResult:
    """Download, decrypt, verify and assemble; ``target`` is replaced only on success."""
    if target.exists() and not force:
        raise RestoreError(f"{target} exists; pass --force to replace it")
    snap, increments, reach = plan(store, at)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.",
                                    suffix=".restoring")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        manifest, body = store.get(snap.key)
        tmp.write_bytes(body)
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            _check_integrity(conn, snap.key)
            _check_counts(conn, manifest, snap.key)
            for ref in increments:
                inc_manifest, inc_body = store.get(ref.key)
                since = capture.watermarks(conn)
                if inc_manifest.get("since") != since:
                    raise RestoreError(f"{ref.key}: starts at {inc_manifest.get('since')} "
                                       f"but the database so far ends at {since}")
                capture.apply_increment(conn, json.loads(inc_body)["tables"])
                _check_counts(conn, inc_manifest, ref.key)
                manifest = inc_manifest
            _check_integrity(conn, str(target))
            counts = capture.row_counts(conn)
        finally:
            conn.close()
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        for suffix in ("-wal", "-shm"):
            Path(f"{target}{suffix}").unlink(missing_ok=True)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return RestoreResult(target, snap.chain, len(increments), reach.isoformat(), counts)
