"""Kill-switch signatures from Solana keypair files, and the files that carry them.

A keypair file is the Solana CLI's JSON array of 64 bytes. It holds a secret key, so a file
that its group or others can read is refused rather than used: a leaked signer key defeats
the multisig. A signature file is the JSON printed by ``pipeline admin sign``: the message
fields plus one ``pubkey`` and ``signature``; ``trade-enable`` combines several.
"""

from __future__ import annotations

import json
import secrets
import stat
from pathlib import Path
from typing import Any

from solders.keypair import Keypair

from pipeline.errors import BadInputError
from pipeline.killswitch import KillSwitchError, KillSwitchMessage, sign


def load_keypair(path: Path) -> Keypair:
    """Read a Solana CLI keypair file, refusing one readable by group or others."""
    try:
        info = path.stat()
    except OSError as exc:
        raise BadInputError(f"{path}: {exc.strerror}") from exc
    if not stat.S_ISREG(info.st_mode):
        raise BadInputError(f"{path}: not a regular file")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise BadInputError(f"{path}: keypair file is accessible by group/others (mode "
                            f"{stat.S_IMODE(info.st_mode):o}); run chmod 600 {path}")
    try:
        raw = json.loads(path.read_text())
        if not (isinstance(raw, list) and len(raw) == 64
                and all(isinstance(b, int) and 0 <= b < 256 for b in raw)):
            raise ValueError("expected a JSON array of 64 bytes")
        return Keypair.from_bytes(bytes(raw))
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadInputError(f"{path}: not a Solana keypair file: {exc}") from exc


def new_message(env: str, value: bool, expires_at: int) -> KillSwitchMessage:
    """A message with a fresh random nonce."""
    return KillSwitchMessage(env=env, value=value, nonce=secrets.token_urlsafe(18),
                             expires_at=expires_at)


def signature_document(keypair: Keypair, message: KillSwitchMessage) -> dict[str, Any]:
    return {**message.to_args(), **sign(keypair, message)}


def read_signature_files(paths: list[Path]) -> tuple[KillSwitchMessage, list[dict[str, str]]]:
    """The one message all files sign, and their signatures; refuses mixed messages."""
    message: KillSwitchMessage | None = None
    signatures = []
    for path in paths:
        try:
            doc = json.loads(path.read_text())
            if not isinstance(doc, dict):
                raise ValueError("expected a JSON object")
            this = KillSwitchMessage.from_args(doc)
        except (OSError, ValueError, KillSwitchError) as exc:
            raise BadInputError(f"{path}: not a signature file: {exc}") from exc
        if message is not None and this != message:
            raise BadInputError(f"{path}: signs a different message than the other files "
                                f"({this} vs {message})")
        message = this
        signatures.append({"pubkey": str(doc.get("pubkey")),
                           "signature": str(doc.get("signature"))})
    if message is None:
        raise BadInputError("no signature files given")
    return message, signatures
