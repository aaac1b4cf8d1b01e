"""Client-side encryption of backup objects: AES-256-GCM with a rotating keyring.

A keyring is a list of ``key_id=base64(32 random bytes)`` entries (a file, one per line, or
an environment variable, comma-separated); the LAST entry encrypts, every entry decrypts,
so rotating is "append a new key, keep the old ones until their backups expire".

An object is ``MAGIC | nonce (12) | ciphertext+tag``. The associated data binds the
object's S3 key and key id, so a ciphertext moved to another name, or relabelled with
another key id, fails authentication. The key id and a key check value (the first 8 bytes
of HMAC-SHA256(key, "pipeline-backup-kcv"), which reveals nothing usable about the key)
travel in the object metadata: a restore can then say "wrong key" rather than "corrupt".
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from pipeline.errors import OperationalError

MAGIC: Final = b"PLBK1\0"
_NONCE_BYTES: Final = 12
_KEY_ID: Final = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class BackupCryptoError(OperationalError):
    """A backup object cannot be decrypted: wrong or missing key, or corrupted bytes."""


def key_check(key: bytes) -> str:
    """A short public fingerprint of ``key`` to tell a wrong key from a corrupt object."""
    return hmac.new(key, b"pipeline-backup-kcv", hashlib.sha256).hexdigest()[:16]


@dataclass(frozen=True)
class Sealed:
    """Ciphertext plus the metadata that must travel with it."""

    body: bytes
    key_id: str
    key_check: str


class Keyring:
    """Named 256-bit keys; the last one added is the current (encrypting) key."""

    def __init__(self, keys: list[tuple[str, bytes]]) -> None:
        if not keys:
            raise OperationalError("backup keyring is empty: add a key_id=base64 entry")
        self._keys: dict[str, bytes] = {}
        for key_id, key in keys:
            if not _KEY_ID.match(key_id):
                raise OperationalError(f"backup key id {key_id!r} must be 1-64 characters "
                                       "of letters, digits, . _ -")
            if len(key) != 32:
                raise OperationalError(f"backup key {key_id!r} is {len(key)} bytes; AES-256 "
                                       "needs 32 (generate with: head -c32 /dev/urandom | base64)")
            self._keys[key_id] = key
        self.current_id = keys[-1][0]

    @classmethod
    def parse(cls, text: str, source: str) -> Keyring:
        """Entries separated by newlines or commas; '#' starts a comment line."""
        keys = []
        for raw in re.split(r"[\n,]", text):
            entry = raw.strip()
            if not entry or entry.startswith("#"):
                continue
            key_id, sep, encoded = entry.partition("=")
            if not sep:
                raise OperationalError(f"{source}: keyring entries look like key_id=base64, "
                                       f"got one without '=' (key id {key_id[:8]!r}...)")
            try:
                keys.append((key_id.strip(), base64.b64decode(encoded.strip(), validate=True)))
            except binascii.Error:
                raise OperationalError(f"{source}: key {key_id.strip()!r} is not valid "
                                       "base64") from None
        return cls(keys)

    @classmethod
    def load(cls, key_file: str, key_env: str) -> Keyring:
        """From ``key_file`` if set, else from the environment variable ``key_env``."""
        if key_file:
            path = Path(key_file)
            try:
                return cls.parse(path.read_text(), str(path))
            except OSError as exc:
                raise OperationalError(f"cannot read backup key file {path}: "
                                       f"{exc.strerror}") from None
        text = os.environ.get(key_env, "")
        if not text:
            raise OperationalError(f"no backup keys: set ledger.backup.key_file or the "
                                   f"{key_env} environment variable")
        return cls.parse(text, f"${key_env}")

    def seal(self, plaintext: bytes, object_key: str) -> Sealed:
        """Encrypt with the current key, bound to ``object_key``."""
        key = self._keys[self.current_id]
        nonce = os.urandom(_NONCE_BYTES)  # random 96-bit nonces: fine for < 2**32 objects/key
        aad = f"{object_key}\0{self.current_id}".encode()
        body = MAGIC + nonce + AESGCM(key).encrypt(nonce, plaintext, aad)
        return Sealed(body, self.current_id, key_check(key))

    def open(self, body: bytes, object_key: str, key_id: str, check: str) -> bytes:
        """Decrypt an object; every failure says which of key or bytes is at fault."""
        key = self._keys.get(key_id)
        if key is None:
            raise BackupCryptoError(f"{object_key}: encrypted with key {key_id!r}, which is not "
                                    f"in the keyring (have {sorted(self._keys)}); add the old "
                                    "key back to decrypt it")
        if check and not hmac.compare_digest(check, key_check(key)):
            raise BackupCryptoError(f"{object_key}: wrong key: the keyring's {key_id!r} is not "
                                    "the key this object was encrypted with")
        if not body.startswith(MAGIC) or len(body) < len(MAGIC) + _NONCE_BYTES + 16:
            raise BackupCryptoError(f"{object_key}: not a pipeline backup object (bad header)")
        nonce = body[len(MAGIC):len(MAGIC) + _NONCE_BYTES]
        aad = f"{object_key}\0{key_id}".encode()
        try:
            return AESGCM(key).decrypt(nonce, body[len(MAGIC) + _NONCE_BYTES:], aad)
        except InvalidTag:
            raise BackupCryptoError(f"{object_key}: corrupted or tampered with (authentication "
                                    "tag mismatch); use another backup") from None
