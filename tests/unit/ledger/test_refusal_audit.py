"""Refused kill-switch requests are audited, but a flood cannot fill the audit log.

Real ZeroMQ sockets (the ledger's ROUTER on ipc, a DEALER client) and a real SQLite
ledger: the kill switch's own refusals, refusals of the envelope (too large, not JSON,
wrong version) and ``rate_limited`` answers, as the running ledger wires them.
"""

from __future__ import annotations

import collections
import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from solders.keypair import Keypair
from sqlalchemy import Engine, select
from testkit import eventually

from pipeline.control import ControlServer
from pipeline.control_config import ControlConfig
from pipeline.control_peers import PeerBuckets
from pipeline.killswitch import KillSwitchMessage, sign
from pipeline.ledger.db import make_engine
from pipeline.ledger.governance import KillSwitch
from pipeline.ledger.models import AuditLog, ConfigEntry

SIGNERS = [Keypair() for _ in range(3)]
PEER = f"uid:{os.getuid()}"


class Ledger:
    """The ledger's kill switch behind a real ROUTER socket, and a client to flood it."""

    def __init__(self, engine: Engine, tmp_path: Path) -> None:
        control = ControlConfig(signers=tuple(str(k.pubkey()) for k in SIGNERS),
                                enable_threshold=2, refusal_burst=10, refusal_per_s=1.0)
        self.switch = KillSwitch(engine, "paper", lambda: control, local_operator=True,
                                 on_change=lambda _value: None, log=logging.getLogger("test"),
                                 read_engine=make_engine(str(engine.url.database),
                                                         read_only=True))
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context()
        self.server = ControlServer(
            self.context, f"ipc://{tmp_path}/ledger.ctl", "ledger", self.switch.handlers(),
            on_refused=self.switch.refused,
            limiter=PeerBuckets(control.refusal_burst, control.refusal_per_s),
            unlimited=("trade.disable",))
        self.client = self.context.socket(zmq.DEALER)
        self.client.setsockopt(zmq.LINGER, 0)
        self.client.connect(f"ipc://{tmp_path}/ledger.ctl")

    def send(self, payloads: list[bytes]) -> list[dict[str, Any]]:
        """Send a batch, let the server answer it, return the replies in order."""
        for payload in payloads:
            self.client.send_multipart([b"", payload])
        replies: list[dict[str, Any]] = []

        def answered() -> bool:
            self.server.handle_pending(budget=len(payloads))
            while self.client.poll(0):
                replies.append(json.loads(self.client.recv_multipart()[-1]))
            return len(replies) == len(payloads)
        eventually(answered, timeout_s=30)
        return replies

    def close(self) -> None:
        self.client.close(0)
        self.server.close()
        self.context.destroy(linger=0)


@pytest.fixture
def ledger(engine: Engine, tmp_path: Path) -> Iterator[Ledger]:
    ledger = Ledger(engine, tmp_path)
    yield ledger
    ledger.close()


def _request(cmd: str, args: dict[str, Any], *, version: Any = 1) -> bytes:
    return json.dumps({"v": version, "id": "r", "cmd": cmd, "args": args}).encode()


def _audit(engine: Engine) -> list[tuple[str, dict[str, Any]]]:
    with engine.connect() as conn:
        rows = conn.execute(select(AuditLog.action, AuditLog.detail).order_by(AuditLog.id)).all()
    return [(action, json.loads(detail)) for action, detail in rows
            if action.startswith("kill_switch")]


def _one_signature_enable() -> bytes:
    message = KillSwitchMessage(env="paper", value=True, nonce="nonce-0123456789abcdef",
                                expires_at=int(time.time()) + 300)
    return _request("trade.enable", {**message.to_args(), "signatures": [
        sign(SIGNERS[0], message)], "operator": "mallory", "reason": "flood"})


def test_20000_refused_enables_write_two_audit_rows_with_exact_counts(
        ledger: Ledger, engine: Engine) -> None:
    codes: collections.Counter[str] = collections.Counter()
    for _batch in range(40):
        codes.update(r["error"]["code"] for r in ledger.send([_one_signature_enable()] * 500))
    assert sum(codes.values()) == 20_000
    assert set(codes) == {"too_few_signatures", "rate_limited"}
    assert codes["too_few_signatures"] < 100  # the burst, then about one a second
    rows = _audit(engine)
    assert [action for action, _ in rows] == ["kill_switch.rejected"]  # the first, in full
    assert rows[0][1]["code"] == "too_few_signatures"
    assert rows[0][1]["operator"] == "mallory"
    assert rows[0][1]["peer"] == PEER

    # A kill from the same, rate-limited peer is never turned away.
    disable = ledger.send([_request("trade.disable", {"operator": "ops", "reason": "flood"})])
    assert disable[0]["ok"] is True
    with engine.connect() as conn:
        assert conn.scalar(select(ConfigEntry.value)
                           .where(ConfigEntry.key == "TRADE_ENABLED")) == "false"

    ledger.switch.audit_refusals(time.monotonic(), every=True)  # the interval ends
    rows = _audit(engine)
    assert [action for action, _ in rows] == [
        "kill_switch.rejected", "kill_switch.set", "kill_switch.refusals"]
    counted = rows[-1][1]
    assert counted["peer"] == PEER
    assert counted["counts"] == dict(codes)
    assert counted["commands"] == {"trade.enable": 20_000}


def test_the_next_interval_audits_the_first_refusal_again(ledger: Ledger,
                                                          engine: Engine) -> None:
    ledger.send([_one_signature_enable()] * 3)
    ledger.switch.audit_refusals(time.monotonic() + 3600)  # the 60 s interval is over
    ledger.send([_one_signature_enable()])
    assert [action for action, _ in _audit(engine)] == [
        "kill_switch.rejected", "kill_switch.refusals", "kill_switch.rejected"]
    assert _audit(engine)[1][1]["counts"] == {"too_few_signatures": 3}


def test_envelope_refusals_of_kill_switch_commands_are_audited(ledger: Ledger,
                                                               engine: Engine) -> None:
    padding = "x" * (70 * 1024)
    replies = ledger.send([
        _request("trade.disable", {}, version=2),  # bad_version
        b'{"v": 1, "id": "r", "cmd": "ledger.trade.disable", "args": {',  # bad_json
        _request("trade.enable", {"pad": padding}),  # too_large
        b'{"v": 1, "cmd": "trade.disable", "args": []}',  # bad_request
        _request("config.get", {}, version=2),  # not a kill-switch command: no row
        b"\xff\xfe not json at all",  # no command to read: no row
    ])
    assert [r["error"]["code"] for r in replies] == [
        "bad_version", "bad_json", "too_large", "bad_request", "bad_version", "bad_json"]
    rows = _audit(engine)
    assert [(d["command"], d["code"], d["stage"]) for _, d in rows] == [
        ("trade.disable", "bad_version", "envelope"),
        ("trade.disable", "bad_json", "envelope"),
        ("trade.enable", "too_large", "envelope"),
        ("trade.disable", "bad_request", "envelope")]
    assert all(action == "kill_switch.rejected" and d["peer"] == PEER for action, d in rows)


def test_refusals_wait_for_a_database_that_cannot_write(ledger: Ledger, engine: Engine,
                                                        db_path: Path) -> None:
    locker = sqlite3.connect(db_path, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
    try:
        replies = ledger.send([_request("trade.disable", {}, version=2)])
        assert replies[0]["error"]["code"] == "bad_version"
    finally:
        locker.execute("ROLLBACK")
        locker.close()
    assert _audit(engine) == []
    eventually(lambda: ledger.switch.retry_due(time.monotonic()), timeout_s=5)
    assert ledger.switch.retry()
    assert [d["code"] for _, d in _audit(engine)] == ["bad_version"]
