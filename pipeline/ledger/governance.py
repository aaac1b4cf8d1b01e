"""Kill-switch governance in the ledger: who may change TRADE_ENABLED, and the record of it.

Disabling needs one configured signer, or the local operator (a request on the ipc socket,
which only the operator's user can open). Enabling needs ``control.enable_threshold``
signatures. Every refusal gets its specific code; refused attempts are exactly what an
investigation needs, so they are audited, including requests refused before they reached
this module (too large, not JSON, wrong version), but a flood must not fill the audit log:
per peer and interval the first refusal of each code gets a row of its own and the rest a
count (:mod:`pipeline.ledger.refusals`).

A kill always lands. A disable is published to shared memory first (the executor stops
within microseconds), then made durable: the nonce, ``TRADE_ENABLED = false`` and the
audit row in one transaction. If the database cannot write (disk full, a lock held by
another connection, read-only), the rows wait in :mod:`pipeline.ledger.pending` and the
ledger retries; the disable holds meanwhile and the request still succeeds, answering
``durable: false``. An enable is the opposite: it needs a durable commit (with any waiting
disable written first, in order) and is published only after it; a database that cannot
write refuses it with ``database_unavailable``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import DBAPIError, IntegrityError

from pipeline.control import ControlError, Handler, request_peer
from pipeline.control_config import ControlConfig
from pipeline.control_peers import Refusal
from pipeline.killswitch import (
    KEY,
    KillSwitchError,
    KillSwitchMessage,
    parse_signatures,
    verify,
)
from pipeline.ledger.db import utc_now, write_audit, write_config
from pipeline.ledger.models import ConfigEntry, KillSwitchNonce
from pipeline.ledger.pending import PendingRow, PendingWrites, write_transaction
from pipeline.ledger.refusals import KILL_SWITCH_COMMANDS, RefusalAudit

_MAX_TEXT = 200  # operator names and reasons in the audit log


def _text(args: Mapping[str, Any], key: str, default: str) -> str:
    value = args.get(key, default)
    if not isinstance(value, str):
        raise KillSwitchError("bad_message", f"{key} must be a string")
    return value[:_MAX_TEXT]


class KillSwitch:
    """The ledger's ``trade.enable``, ``trade.disable`` and ``config.get`` commands."""

    def __init__(self, engine: Engine, env: str, control: Callable[[], ControlConfig], *,
                 local_operator: bool, on_change: Callable[[bool], None],
                 log: logging.Logger, clock_s: Callable[[], float] = time.time,
                 on_durable: Callable[[], None] = lambda: None,
                 read_engine: Engine | None = None,
                 retry_initial_s: float = 0.05, retry_max_s: float = 2.0) -> None:
        self._engine = engine
        # Reads go through a read-only engine: its plain BEGIN never waits for another
        # connection's write lock (the writer's BEGIN IMMEDIATE would).
        self._reads = read_engine or engine
        self._env = env
        self._control = control  # read per request: signers can be rotated by reload
        self._local_operator = local_operator
        self._on_change = on_change  # publishes the value (shared memory first)
        self._on_durable = on_durable  # the waiting rows reached the database
        self._log = log
        self._clock_s = clock_s
        self._pending = PendingWrites(retry_initial_s, retry_max_s)
        self._refusals = RefusalAudit(control().refusal_audit_interval_s)

    @property
    def disable_pending(self) -> bool:
        """A disable holds in shared memory that the database does not show yet."""
        return self._pending.disable_pending

    def retry_due(self, now_s: float) -> bool:
        """Whether waiting rows should be tried again now (monotonic seconds)."""
        return bool(self._pending) and now_s >= self._pending.retry_at

    def retry(self) -> bool:
        """Try to write the waiting rows, waiting at most the engine's busy timeout."""
        return self._flush(None)

    def handlers(self) -> dict[str, Handler]:
        return {"trade.enable": lambda args: self.set(args, True),
                "trade.disable": lambda args: self.set(args, False),
                "config.get": self.config_get}

    def config_get(self, args: Mapping[str, Any]) -> Mapping[str, Any]:
        key = args.get("key")
        if key is not None and not isinstance(key, str):
            raise ControlError("bad_args", "key must be a string")
        query = select(ConfigEntry.key, ConfigEntry.value, ConfigEntry.updated_at)
        if key is not None:
            query = query.where(ConfigEntry.key == key)
        try:
            with self._reads.connect() as conn:
                rows = conn.execute(query).all()
        except DBAPIError as exc:
            raise ControlError("database_unavailable",
                               f"cannot read the database: {str(exc.orig)[:120]}") from None
        if key is not None and not rows:
            raise ControlError("unknown_key", f"no config key {key!r}")
        return {row.key: {"value": row.value, "updated_at": row.updated_at.isoformat()}
                for row in rows}

    def set(self, args: Mapping[str, Any], value: bool) -> Mapping[str, Any]:
        """Verify and apply one request; raises ControlError with the rejection code."""
        detail: dict[str, Any] = {"value": value}
        try:
            operator = _text(args, "operator", "")
            detail.update(operator=operator, reason=_text(args, "reason", ""))
            signatures = parse_signatures(args.get("signatures"))
            detail["claimed_signers"] = sorted({pubkey[:64] for pubkey, _ in signatures})
            if not value and not signatures and self._local_operator:
                return self._disable(None, [], "local-operator", detail)
            message = KillSwitchMessage.from_args(args)
            detail.update(message.to_args())
            if message.value != value:
                raise KillSwitchError("bad_message", f"the message sets {KEY} to "
                                                        f"{message.value}, not {value}")
            control = self._control()
            signers = verify(message, signatures, signers=frozenset(control.signers),
                             required=control.enable_threshold if value else 1,
                             env=self._env, now_s=self._clock_s(),
                             max_ttl_s=control.max_message_ttl_s)
            self._refuse_replay(message.nonce)
            if value:
                return self._enable(message, signers, detail)
            return self._disable(message, signers, "signers", detail)
        except KillSwitchError as exc:
            self._reject(exc, "trade.enable" if value else "trade.disable", detail)
            raise ControlError(exc.code, str(exc)) from None

    def disable(self, actor: str, action: str, detail: Mapping[str, Any]) -> bool:
        """A disable decided inside the ledger (a chain mismatch, a recovered pending
        disable): shared memory now, the database as soon as it writes. Returns whether
        it is durable already."""
        self._pending.add(PendingRow(utc_now(), actor, action, {"key": KEY, **detail},
                                     disables=True))
        self._on_change(False)
        return self._flush(0)

    def audit(self, actor: str, action: str, detail: Mapping[str, Any]) -> None:
        """An audit row from inside the ledger, written now or when the database can."""
        self._pending.add(PendingRow(utc_now(), actor, action, dict(detail)))
        self._flush(0)

    def _refuse_replay(self, nonce: str) -> None:
        if nonce in self._pending.nonces():
            raise KillSwitchError("replayed_nonce", f"nonce {nonce} was already used")
        try:
            with self._reads.connect() as conn:
                used = conn.scalar(select(KillSwitchNonce.nonce)
                                   .where(KillSwitchNonce.nonce == nonce))
        except DBAPIError:
            return  # unreadable: an enable's insert still refuses it; a disable is harmless
        if used is not None:
            raise KillSwitchError("replayed_nonce", f"nonce {nonce} was already used")

    def _stored_value(self) -> str | None:
        if self._pending.disable_pending:
            return "false"
        try:
            with self._reads.connect() as conn:
                return conn.scalar(select(ConfigEntry.value).where(ConfigEntry.key == KEY))
        except DBAPIError:
            return None

    def _disable(self, message: KillSwitchMessage | None, signers: list[str], actor: str,
                 detail: dict[str, Any]) -> Mapping[str, Any]:
        previous = self._stored_value()
        nonce = None
        if message is not None:
            nonce = (message.nonce, datetime.fromtimestamp(message.expires_at, UTC)
                     .replace(tzinfo=None))
        self._pending.add(PendingRow(utc_now(), actor, "kill_switch.set",
                                     {**detail, "signers": signers}, disables=True,
                                     nonce=nonce))
        changed_ns = time.monotonic_ns()
        self._on_change(False)  # shared memory first: the executor stops sending now
        durable = self._flush(0)  # one attempt that never waits for a lock
        self._log.warning("trading DISABLED by %s%s", ", ".join(signers) or actor,
                          "" if durable else "; not yet in the database (retrying)",
                          extra={"event": "ledger.kill_switch", "value": False,
                                 "signers": signers, "durable": durable,
                                 "nonce": message.nonce if message else None})
        return {KEY: False, "previous": previous, "signers": signers,
                "committed_ns": changed_ns, "durable": durable}

    def _enable(self, message: KillSwitchMessage, signers: list[str],
                detail: dict[str, Any]) -> Mapping[str, Any]:
        now = utc_now()
        expires = datetime.fromtimestamp(message.expires_at, UTC).replace(tzinfo=None)
        try:
            with write_transaction(self._engine) as conn:
                self._pending.write(conn)  # a disable still waiting is recorded first
                conn.execute(insert(KillSwitchNonce), {"nonce": message.nonce,
                                                       "expires_at": expires, "used_at": now})
                old = write_config(conn, KEY, "true", now)
                write_audit(conn, now, "signers", "kill_switch.set",
                            {**detail, "old": old, "new": "true", "signers": signers})
        except IntegrityError:
            raise KillSwitchError("replayed_nonce",
                                  f"nonce {message.nonce} was already used") from None
        except DBAPIError as exc:
            raise KillSwitchError(
                "database_unavailable",
                f"trading stays disabled: the database cannot write "
                f"({str(exc.orig)[:120]}); enabling needs a durable commit, "
                "send the request again when it can") from None
        self._pending.clear()
        changed_ns = time.monotonic_ns()
        self._on_change(True)
        self._log.warning("trading ENABLED by %s", ", ".join(signers),
                          extra={"event": "ledger.kill_switch", "value": True,
                                 "signers": signers, "nonce": message.nonce})
        return {KEY: True, "previous": old, "signers": signers, "committed_ns": changed_ns,
                "durable": True}

    def _reject(self, exc: KillSwitchError, command: str, detail: dict[str, Any]) -> None:
        peer = request_peer() or "in-process"
        if not self._refusals.record(peer, command, exc.code):
            return  # counted: the peer's count row says how many
        self._log.warning("kill-switch request refused: %s: %s", exc.code, exc,
                          extra={"event": "ledger.kill_switch_refused", "code": exc.code,
                                 "peer": peer})
        self._pending.add(PendingRow(utc_now(), "signers", "kill_switch.rejected",
                                     {**detail, "code": exc.code, "error": str(exc),
                                      "peer": peer}))
        self._flush(0)

    def refused(self, refusal: Refusal) -> bool:
        """A refusal seen by the control server: audit those of kill-switch requests that
        never reached :meth:`set` (envelope, handler crash) and count ``rate_limited``.
        True when it cost an audit row, or could have: charged to the peer's budget."""
        if refusal.command not in KILL_SWITCH_COMMANDS:
            return False
        if refusal.stage == "limit":
            self._refusals.count(refusal.peer, refusal.command, refusal.code)
            return False
        if refusal.stage == "handler":
            return True  # set() refused it and recorded it
        if self._refusals.record(refusal.peer, refusal.command, refusal.code):
            self._log.warning("kill-switch request refused before it was read: %s: %s",
                              refusal.code, refusal.message,
                              extra={"event": "ledger.kill_switch_refused",
                                     "code": refusal.code, "peer": refusal.peer})
            self._pending.add(PendingRow(utc_now(), "control", "kill_switch.rejected", {
                "command": refusal.command, "code": refusal.code, "stage": refusal.stage,
                "error": refusal.message[:_MAX_TEXT], "peer": refusal.peer}))
            self._flush(0)
        return True

    def audit_refusals(self, now_s: float, *, every: bool = False) -> None:
        """Write the count rows of refusal intervals that ended (``every``: all, at stop)."""
        rows = self._refusals.due(now_s, every=every)
        if rows:
            for row in rows:
                self._pending.add(row)
            self._flush(0)

    def _flush(self, busy_timeout_ms: int | None) -> bool:
        """Write every waiting row in one transaction; False (and a retry scheduled) if
        the database refused. Never raises: a kill must not crash the ledger."""
        if not self._pending:
            return True
        failures = self._pending.failures
        try:
            with write_transaction(self._engine, busy_timeout_ms) as conn:
                self._pending.write(conn)
        except DBAPIError as exc:
            delay_s = self._pending.failed(time.monotonic(), exc)
            if failures == 0 or self._pending.failures % 20 == 0:
                self._log.error(
                    "kill-switch rows not yet in the database (%s): %d waiting, trading "
                    "disabled=%s holds; retrying in %.2f s", self._pending.last_error,
                    len(self._pending.rows), self._pending.disable_pending, delay_s,
                    extra={"event": "ledger.kill_switch_not_durable",
                           "failures": self._pending.failures})
            return False
        rows = len(self._pending.rows)
        self._pending.clear()
        if failures:
            self._log.warning("kill-switch rows written after %d failed attempts (%d rows)",
                              failures, rows, extra={"event": "ledger.kill_switch_durable"})
        self._on_durable()
        return True
