"""Kill-switch governance against a real SQLite ledger: every refusal has a code and a row."""

from __future__ import annotations

import contextlib
import json
import logging
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from solders.keypair import Keypair
from sqlalchemy import Engine, select

from pipeline.control import ControlError
from pipeline.control_config import ControlConfig
from pipeline.killswitch import KillSwitchMessage, sign
from pipeline.ledger.db import make_engine
from pipeline.ledger.governance import KillSwitch
from pipeline.ledger.models import AuditLog, ConfigEntry, KillSwitchNonce

NOW_S = 1_800_000_000.0
SIGNERS = [Keypair() for _ in range(3)]


def _message(value: bool = True, nonce: str = "nonce-0123456789abcdef", env: str = "paper",
             expires_at: int = int(NOW_S) + 300) -> KillSwitchMessage:
    return KillSwitchMessage(env=env, value=value, nonce=nonce, expires_at=expires_at)


def _args(message: KillSwitchMessage, keys: list[Keypair]) -> dict[str, Any]:
    return {**message.to_args(), "signatures": [sign(k, message) for k in keys],
            "operator": "alice", "reason": "test"}


@pytest.fixture
def published() -> list[bool]:
    return []


def _switch(engine: Engine, published: list[bool], *, local: bool = False) -> KillSwitch:
    control = ControlConfig(signers=tuple(str(k.pubkey()) for k in SIGNERS),
                            enable_threshold=2, max_message_ttl_s=600)
    return KillSwitch(engine, "paper", lambda: control, local_operator=local,
                      on_change=published.append, log=logging.getLogger("test"),
                      clock_s=lambda: NOW_S,
                      read_engine=make_engine(str(engine.url.database), read_only=True))


def _trade_enabled(engine: Engine) -> str:
    reads = make_engine(str(engine.url.database), read_only=True)  # never waits for a lock
    with reads.connect() as conn:
        value = conn.scalar(select(ConfigEntry.value).where(ConfigEntry.key == "TRADE_ENABLED"))
    assert isinstance(value, str)
    return value


def _audit(engine: Engine) -> list[tuple[str, dict[str, Any]]]:
    with engine.connect() as conn:
        rows = conn.execute(select(AuditLog.action, AuditLog.detail).order_by(AuditLog.id)).all()
    return [(action, json.loads(detail)) for action, detail in rows
            if action.startswith("kill_switch")]


def test_two_of_three_enable_commits_config_nonce_and_audit_together(
        engine: Engine, published: list[bool]) -> None:
    switch = _switch(engine, published)
    result = switch.set(_args(_message(), SIGNERS[:2]), True)
    assert result["TRADE_ENABLED"] is True
    assert result["signers"] == sorted(str(k.pubkey()) for k in SIGNERS[:2])
    assert _trade_enabled(engine) == "true"
    assert published == [True]
    with engine.connect() as conn:
        assert conn.scalars(select(KillSwitchNonce.nonce)).all() == ["nonce-0123456789abcdef"]
    action, detail = _audit(engine)[-1]
    assert action == "kill_switch.set"
    assert detail["signers"] == result["signers"]
    assert detail["nonce"] == "nonce-0123456789abcdef"
    assert detail["expires_at"] == int(NOW_S) + 300


@pytest.mark.parametrize(("code", "build"), [
    ("too_few_signatures", lambda: _args(_message(), SIGNERS[:1])),
    ("too_few_signatures", lambda: _args(_message(), [SIGNERS[0], SIGNERS[0]])),
    ("wrong_environment", lambda: _args(_message(env="mainnet"), SIGNERS[:2])),
    ("expired", lambda: _args(_message(expires_at=int(NOW_S) - 1), SIGNERS[:2])),
    ("expiry_too_far", lambda: _args(_message(expires_at=int(NOW_S) + 10_000), SIGNERS[:2])),
    ("unknown_signer", lambda: _args(_message(), [SIGNERS[0], Keypair()])),
    ("bad_signature", lambda: {**_args(_message(), SIGNERS[:2]), "nonce": "other-0123456789abc"}),
    ("bad_signature", lambda: {**_args(_message(), SIGNERS[:1]), "signatures": [
        sign(SIGNERS[0], _message()),
        {"pubkey": str(SIGNERS[1].pubkey()),
         "signature": sign(SIGNERS[0], _message())["signature"]},  # keys[0]'s, as keys[1]
    ]}),
    ("bad_signature", lambda: {**_args(_message(), SIGNERS[:1]), "signatures": [
        sign(SIGNERS[0], _message()), {"pubkey": str(SIGNERS[1].pubkey()), "signature": "x"}]}),
    ("bad_message", lambda: {**_args(_message(), SIGNERS[:2]), "value": "true"}),
    ("bad_message", lambda: {**_args(_message(), SIGNERS[:2]), "signatures": "nope"}),
    ("bad_message", lambda: _args(_message(value=False), SIGNERS[:2])),  # signed the other value
])
def test_each_refusal_has_its_code_an_audit_row_and_changes_nothing(
        engine: Engine, published: list[bool], code: str, build: Any) -> None:
    switch = _switch(engine, published)
    before = _trade_enabled(engine)
    with pytest.raises(ControlError) as caught:
        switch.set(build(), True)
    assert caught.value.code == code
    assert _trade_enabled(engine) == before
    assert published == []
    action, detail = _audit(engine)[-1]
    assert (action, detail["code"]) == ("kill_switch.rejected", code)


def test_a_replayed_nonce_is_refused_and_audited(engine: Engine, published: list[bool]) -> None:
    switch = _switch(engine, published)
    switch.set(_args(_message(), SIGNERS[:2]), True)
    disable = _message(value=False, nonce="nonce-disable-0123456")
    switch.set(_args(disable, SIGNERS[:1]), False)
    with pytest.raises(ControlError) as caught:
        switch.set(_args(_message(), SIGNERS[1:]), True)  # other signers, same nonce
    assert caught.value.code == "replayed_nonce"
    assert _trade_enabled(engine) == "false"
    assert published == [True, False]
    assert [a for a, _ in _audit(engine)][-1] == "kill_switch.rejected"


def test_disable_needs_one_signer_or_the_local_operator(
        engine: Engine, published: list[bool]) -> None:
    remote = _switch(engine, published, local=False)
    with pytest.raises(ControlError) as caught:
        remote.set({"operator": "mallory"}, False)
    assert caught.value.code == "bad_message"  # no message to verify at all
    local = _switch(engine, published, local=True)
    assert local.set({"operator": "alice", "reason": "fat finger"}, False)["signers"] == []
    assert _trade_enabled(engine) == "false"
    action, detail = _audit(engine)[-1]
    assert action == "kill_switch.set"
    assert detail["operator"] == "alice"
    with pytest.raises(ControlError):
        local.set({"operator": "alice"}, True)  # enabling is never local


def test_config_get(engine: Engine, published: list[bool]) -> None:
    switch = _switch(engine, published)
    assert switch.config_get({})["TRADE_ENABLED"]["value"] == "false"
    with pytest.raises(ControlError, match="no config key"):
        switch.config_get({"key": "NOPE"})


@contextlib.contextmanager
def _write_lock(db_path: Path) -> Iterator[None]:
    """Another connection holding SQLite's write lock, as a second writer or a backup
    tool would."""
    other = sqlite3.connect(db_path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        yield
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_a_disable_lands_at_once_while_the_database_is_locked_and_is_written_later(
        engine: Engine, db_path: Path, published: list[bool]) -> None:
    engine = make_engine(db_path, busy_timeout_ms=200)  # as ledger.busy_timeout_ms
    switch = _switch(engine, published, local=True)
    switch.set(_args(_message(), SIGNERS[:2]), True)
    with _write_lock(db_path):
        started = time.monotonic()
        result = switch.set({"operator": "alice", "reason": "lock held"}, False)
        assert time.monotonic() - started < 0.5  # did not wait out the busy timeout
        assert result["durable"] is False
        assert result["previous"] == "true"
        assert published == [True, False]  # shared memory first
        assert switch.disable_pending
        assert _trade_enabled(engine) == "true"  # not yet in the database
        assert switch.retry() is False  # still locked: nothing lost, nothing raised
    assert switch.retry() is True
    assert not switch.disable_pending
    assert _trade_enabled(engine) == "false"
    action, detail = _audit(engine)[-1]
    assert action == "kill_switch.set"
    assert (detail["operator"], detail["old"], detail["new"]) == ("alice", "true", "false")
    assert detail["written_after_s"] >= 0


def test_enabling_needs_a_durable_commit_and_writes_a_waiting_disable_first(
        engine: Engine, db_path: Path, published: list[bool]) -> None:
    engine = make_engine(db_path, busy_timeout_ms=200)  # as ledger.busy_timeout_ms
    switch = _switch(engine, published, local=True)
    with _write_lock(db_path):
        switch.set({"operator": "alice", "reason": "first"}, False)
        with pytest.raises(ControlError) as caught:
            switch.set(_args(_message(), SIGNERS[:2]), True)
        assert caught.value.code == "database_unavailable"
        assert "trading stays disabled" in str(caught.value)
    assert published == [False]
    result = switch.set(_args(_message(), SIGNERS[:2]), True)  # same message, lock gone
    assert result["TRADE_ENABLED"] is True
    assert _trade_enabled(engine) == "true"
    actions = [(a, d.get("new"), d.get("code")) for a, d in _audit(engine)]
    assert actions == [("kill_switch.set", "false", None),
                       ("kill_switch.rejected", None, "database_unavailable"),
                       ("kill_switch.set", "true", None)]


def test_a_read_only_database_never_loses_a_disable(
        engine: Engine, db_path: Path, published: list[bool]) -> None:
    _switch(engine, published).set(_args(_message(), SIGNERS[:2]), True)
    query_only = make_engine(db_path, read_only=True)  # PRAGMA query_only = ON
    switch = _switch(query_only, published, local=True)
    assert switch.set({"operator": "alice"}, False)["durable"] is False
    assert published == [True, False]
    with pytest.raises(ControlError) as caught:  # refusals never raise anything else
        switch.set(_args(_message(nonce="nonce-other-0123456789"), SIGNERS[:1]), True)
    assert caught.value.code == "too_few_signatures"
    assert switch.disable_pending
    assert _trade_enabled(engine) == "true"


def test_a_signed_disable_waiting_for_the_database_cannot_be_replayed(
        engine: Engine, db_path: Path, published: list[bool]) -> None:
    switch = _switch(engine, published)
    disable = _args(_message(value=False, nonce="nonce-disable-0123456"), SIGNERS[:1])
    with _write_lock(db_path):
        assert switch.set(disable, False)["durable"] is False
        with pytest.raises(ControlError) as caught:
            switch.set(disable, False)
        assert caught.value.code == "replayed_nonce"
    assert switch.retry()
    with engine.connect() as conn:
        assert conn.scalars(select(KillSwitchNonce.nonce)).all() == ["nonce-disable-0123456"]
