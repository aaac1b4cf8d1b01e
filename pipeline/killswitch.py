"""The kill switch's signed messages: what a signer signs and how the ledger checks it.

A signer signs the canonical text of a :class:`KillSwitchMessage` with an ed25519 key (a
Solana keypair). The text names the environment, the key and new value, a nonce and an
expiry, so a signature cannot be replayed in another environment, for the other value,
twice, or late. Verification is pure (no database): the ledger adds the nonce check and the
write in one transaction (``pipeline.ledger.governance``). Every refusal carries a specific
code, listed in ``REJECTIONS``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from solders.keypair import Keypair
from solders.pubkey import Pubkey
from solders.signature import Signature

DOMAIN: Final = "solana-pipeline kill switch v1"
KEY: Final = "TRADE_ENABLED"
MAX_SIGNATURES: Final = 32
_NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")

REJECTIONS: Final = {
    "wrong_environment": "the message names another environment",
    "expired": "the message's expiry has passed",
    "expiry_too_far": "the message expires later than control.max_message_ttl_s allows",
    "replayed_nonce": "this nonce was already used",
    "unknown_signer": "a signature is by a key that is not a configured signer",
    "bad_signature": "a signature does not verify (forged, or over another message)",
    "too_few_signatures": "fewer valid signatures than the change requires",
    "bad_message": "the request is not a well-formed kill-switch message",
    "database_unavailable": "the database cannot write now; enabling needs a durable commit",
}


class KillSwitchError(Exception):
    """A refused kill-switch request; ``code`` is one of ``REJECTIONS``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class KillSwitchMessage:
    """What gets signed: TRADE_ENABLED := value in env, once (nonce), before expires_at."""

    env: str
    value: bool
    nonce: str
    expires_at: int  # unix seconds

    def canonical(self) -> bytes:
        """The exact bytes signed; one line per field, fixed order, no whitespace games."""
        return (f"{DOMAIN}\nenv={self.env}\nkey={KEY}\nvalue={str(self.value).lower()}\n"
                f"nonce={self.nonce}\nexpires_at={self.expires_at}\n").encode()

    def to_args(self) -> dict[str, Any]:
        return {"env": self.env, "value": self.value, "nonce": self.nonce,
                "expires_at": self.expires_at}

    @classmethod
    def from_args(cls, args: Mapping[str, Any]) -> KillSwitchMessage:
        """Parse request arguments, refusing wrong types with ``bad_message``."""
        env, value = args.get("env"), args.get("value")
        nonce, expires_at = args.get("nonce"), args.get("expires_at")
        if not isinstance(env, str) or not isinstance(value, bool):
            raise KillSwitchError("bad_message", "env must be a string, value a boolean")
        if not isinstance(nonce, str) or not _NONCE.fullmatch(nonce):
            raise KillSwitchError("bad_message",
                                     "nonce must be 16-64 characters of [A-Za-z0-9_-]")
        if isinstance(expires_at, bool) or not isinstance(expires_at, int) \
                or not 0 < expires_at < 2**40:
            raise KillSwitchError("bad_message", "expires_at must be unix seconds")
        return cls(env=env, value=value, nonce=nonce, expires_at=expires_at)


def sign(keypair: Keypair, message: KillSwitchMessage) -> dict[str, str]:
    """One signature entry as the ledger expects it: base58 pubkey and signature."""
    return {"pubkey": str(keypair.pubkey()),
            "signature": str(keypair.sign_message(message.canonical()))}


def parse_signatures(raw: Any) -> list[tuple[str, str]]:
    """``[{"pubkey": ..., "signature": ...}, ...]`` -> pairs; refuses anything else."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_SIGNATURES:
        raise KillSwitchError("bad_message",
                                 f"signatures must be a list of at most {MAX_SIGNATURES}")
    pairs = []
    for entry in raw:
        if not isinstance(entry, dict) or not isinstance(entry.get("pubkey"), str) \
                or not isinstance(entry.get("signature"), str):
            raise KillSwitchError("bad_message",
                                     "each signature must be {pubkey: str, signature: str}")
        pairs.append((entry["pubkey"], entry["signature"]))
    return pairs


def verify(message: KillSwitchMessage, signatures: Sequence[tuple[str, str]], *,
           signers: Collection[str], required: int, env: str, now_s: float,
           max_ttl_s: float) -> list[str]:
    """Check a request against policy; returns the distinct valid signers, sorted.

    Any unknown key or invalid signature refuses the whole request: a request is either
    entirely genuine or it is evidence of an attack, never "good enough".
    """
    if message.env != env:
        raise KillSwitchError("wrong_environment",
                                 f"message is for {message.env!r}, this ledger is {env!r}")
    if message.expires_at <= now_s:
        raise KillSwitchError("expired", f"message expired at {message.expires_at}, "
                                            f"now is {int(now_s)}")
    if message.expires_at > now_s + max_ttl_s:
        raise KillSwitchError("expiry_too_far", f"expires_at {message.expires_at} is more "
                                                   f"than {max_ttl_s:.0f} s ahead")
    payload = message.canonical()
    valid: set[str] = set()
    for pubkey_text, signature_text in signatures:
        if pubkey_text not in signers:
            raise KillSwitchError("unknown_signer", f"{pubkey_text} is not a signer")
        try:
            ok = Signature.from_string(signature_text).verify(
                Pubkey.from_string(pubkey_text), payload)
        except ValueError:
            ok = False
        if not ok:
            raise KillSwitchError("bad_signature",
                                     f"signature by {pubkey_text} does not verify")
        valid.add(pubkey_text)
    if len(valid) < required:
        raise KillSwitchError("too_few_signatures",
                                 f"{len(valid)} valid signature(s), {required} required")
    return sorted(valid)
