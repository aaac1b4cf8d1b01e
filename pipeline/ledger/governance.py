"""Kill-switch governance in the ledger: who may change TRADE_ENABLED, and the record of it.

Disabling needs one configured signer, or the local operator (a request on the ipc socket,
which only the operator's user can open). Enabling needs ``control.enable_threshold``
signatures. An accepted change writes the nonce, the config row and an audit row (signers,
nonce, expiry) in ONE transaction and is then published at once, so the executor stops
within milliseconds. Every refusal gets its specific code and an audit row of its own:
refused attempts are exactly what an investigation needs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from pipeline.control import ControlError, Handler
from pipeline.control_config import ControlConfig
from pipeline.killswitch import (
    KEY,
    KillSwitchError,
    KillSwitchMessage,
    parse_signatures,
    verify,
)
from pipeline.ledger.db import utc_now, write_audit, write_config
from pipeline.ledger.models import ConfigEntry, KillSwitchNonce

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
                 log: logging.Logger, clock_s: Callable[[], float] = time.time) -> None:
        self._engine = engine
        self._env = env
        self._control = control  # read per request: signers can be rotated by reload
        self._local_operator = local_operator
        self._on_change = on_change
        self._log = log
        self._clock_s = clock_s

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
        with self._engine.connect() as conn:
            rows = conn.execute(query).all()
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
                return self._apply(value, None, [], "local-operator", detail)
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
            return self._apply(value, message, signers, "signers", detail)
        except KillSwitchError as exc:
            self._reject(exc, detail)
            raise ControlError(exc.code, str(exc)) from None

    def _apply(self, value: bool, message: KillSwitchMessage | None, signers: list[str],
               actor: str, detail: dict[str, Any]) -> Mapping[str, Any]:
        now = utc_now()
        text = "true" if value else "false"
        try:
            with self._engine.begin() as conn:
                if message is not None:
                    expires = datetime.fromtimestamp(message.expires_at, UTC).replace(tzinfo=None)
                    conn.execute(insert(KillSwitchNonce), {"nonce": message.nonce,
                                                           "expires_at": expires, "used_at": now})
                old = write_config(conn, KEY, text, now)
                write_audit(conn, now, actor, "kill_switch.set",
                            {**detail, "old": old, "new": text, "signers": signers})
        except IntegrityError:
            raise KillSwitchError("replayed_nonce",
                                     f"nonce {message.nonce if message else ''} was already "
                                     "used") from None
        changed_ns = time.monotonic_ns()
        self._on_change(value)
        self._log.warning("trading %s by %s", "ENABLED" if value else "DISABLED",
                          ", ".join(signers) or actor,
                          extra={"event": "ledger.kill_switch", "value": value,
                                 "signers": signers, "nonce": message.nonce if message else None})
        return {KEY: value, "previous": old, "signers": signers, "committed_ns": changed_ns}

    def _reject(self, exc: KillSwitchError, detail: dict[str, Any]) -> None:
        self._log.warning("kill-switch request refused: %s: %s", exc.code, exc,
                          extra={"event": "ledger.kill_switch_refused", "code": exc.code})
        with self._engine.begin() as conn:
            write_audit(conn, utc_now(), "signers", "kill_switch.rejected",
                        {**detail, "code": exc.code, "error": str(exc)})
